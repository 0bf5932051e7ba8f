"""The benchmarks keep working: each runs at its smallest size and writes well-formed results.

Only the structure is checked (JSON keys, finite positive ratios), never a timing.
"""

from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))  # the scripts import each other as top-level modules

SCRIPTS = ["bench_step", "bench_memory", "bench_sampler", "bench_data", "bench_scaling", "bench_reference"]


@pytest.fixture(autouse=True)
def _restore_process_settings(monkeypatch):
    """The scripts set torch's thread count and accelerate's CPU flag for their process; undo both."""
    monkeypatch.setenv("ACCELERATE_USE_CPU", "true")
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def check_ratios(ratios: list[dict]) -> None:
    assert ratios
    for ratio in ratios:
        assert set(ratio) == {"name", "value", "target", "note", "met"}
        assert math.isfinite(ratio["value"]) and ratio["value"] > 0, ratio
        assert (ratio["met"] is None) == (ratio["target"] is None)


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_smoke(script, tmp_path):
    out = tmp_path / "result.json"
    result = importlib.import_module(script).main(["--smoke", "--out", str(out)])
    assert json.loads(out.read_text()) == result
    assert set(result) == {"benchmark", "machine", "args", "ratios", "details"}
    assert {"cpu", "cores", "torch", "load_average_1m"} <= set(result["machine"])
    check_ratios(result["ratios"])


@pytest.mark.parametrize("script,kind", [
    ("bench_step", "wan"),
    ("bench_step", "cogvideox"),
    pytest.param("bench_memory", "cogvideox", marks=pytest.mark.slow),  # four child processes: ~40 s
])
def test_video_transformer_benchmarks_smoke(script, kind, tmp_path):
    option = "--trainable" if script == "bench_step" else "--trainables"
    argv = ["--smoke", "--kind", kind, option, "lora", "--out", str(tmp_path / "r.json")]
    result = importlib.import_module(script).main(argv)
    assert all(f"tiny {kind} lora" in ratio["name"] for ratio in result["ratios"])
    check_ratios(result["ratios"])


def test_run_all_collects_every_ratio(tmp_path):
    run_all = importlib.import_module("run_all")
    run_all.main(["--smoke", "--only", "reference_animatediff", "--results", str(tmp_path)])
    summary = json.loads((tmp_path / "run_all.json").read_text())
    assert set(summary["benchmark_wall_s"]) == {"reference_animatediff"}
    assert summary["wall_s"] > 0
    check_ratios(summary["ratios"])
