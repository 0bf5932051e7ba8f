"""The alignment study: the world's reward, the config, the statistics, and one tiny end-to-end study."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from seppo_video.config import ConfigError
from seppo_video.data import LatentCacheDataset, StaleCacheError, write_latent_cache
from seppo_video.study.report import markdown, summarise_study
from seppo_video.study.runner import load_study_config
from seppo_video.study.world import (
    AMPLITUDE,
    COLOURS,
    DEFECTS,
    POSITIONS,
    Prompt,
    WorldShape,
    all_prompts,
    bad_clip,
    good_clip,
    reward,
    reward_terms,
    split_prompts,
)

# ---------------------------------------------------------------- the reward


def _hand_clip(pixels_per_frame: list[int], channel: int = 0) -> torch.Tensor:
    """Frame f lights the first ``pixels_per_frame[f]`` pixels (row-major) of ``channel`` at full amplitude."""
    clip = torch.zeros(4, len(pixels_per_frame), 8, 8)
    for frame, count in enumerate(pixels_per_frame):
        clip[channel, frame].view(-1)[:count] = AMPLITUDE
    return clip


def test_reward_terms_on_hand_made_clips():
    growing = Prompt("red", "centre", "growing")
    full = math.pi * (0.34**2 - 0.075**2)  # the reward's full change, as a fraction of the 64 pixels
    counts = [round(64 * (0.02 + full * f / 7)) for f in range(8)]  # linear, monotone, a full change
    terms = reward_terms(_hand_clip(counts), growing)
    assert terms["monotonic"] == 1.0
    assert terms["progress"] == pytest.approx(min(1.0, (counts[-1] - counts[0]) / 64 / full))
    assert terms["colour"] == 1.0
    # Mass in the first rows: centroid at (mean row + 0.5) / 8 of the lit pixels, summed over frames.
    rows = np.concatenate([np.arange(c) // 8 for c in counts])
    cols = np.concatenate([np.arange(c) % 8 for c in counts])
    cy, cx = (rows.mean() + 0.5) / 8, (cols.mean() + 0.5) / 8
    assert terms["position"] == pytest.approx(math.exp(-((cy - 0.5) ** 2 + (cx - 0.5) ** 2) / (2 * 0.1**2)))

    backwards = reward_terms(_hand_clip(counts[::-1]), growing)
    assert backwards["progress"] == 0.0 and backwards["monotonic"] == 0.0
    other_channel = reward_terms(_hand_clip(counts, channel=2), growing)
    assert other_channel["colour"] == 0.0
    shrinking = Prompt("red", "centre", "shrinking")
    assert reward_terms(_hand_clip(counts[::-1]), shrinking)["monotonic"] == 1.0


def test_good_clips_outscore_every_defect():
    shape, generator = WorldShape(), torch.Generator().manual_seed(0)
    prompts = all_prompts()
    good = np.mean([reward(good_clip(shape, p, generator), p) for p in prompts])
    assert good > 0.85
    for defect in DEFECTS:
        bad = np.mean([reward(bad_clip(shape, p, defect, generator), p) for p in prompts])
        assert bad < good - 0.2, defect
    noise = np.mean([reward(torch.randn(4, 8, 8, 8, generator=generator), p) for p in prompts])
    assert noise < 0.4


def test_prompt_split_keeps_every_attribute_in_training():
    train, held = split_prompts(10, seed=0)
    assert len(held) == 10 and len(train) == len(COLOURS) * len(POSITIONS) * 2 - 10
    assert not set(train) & set(held)
    with pytest.raises(ValueError, match="hold out fewer"):
        split_prompts(38, seed=0)


def test_world_latents_load_through_the_latent_cache(tmp_path):
    latents, embeds = torch.randn(3, 4, 8, 8, 8), torch.randn(3, 77, 32)
    ids, prompts = ["a", "b", "c"], ["p0", "p1", "p2"]
    root = write_latent_cache(tmp_path / "cache", {"latents": latents, "prompt_embeds": embeds}, ids, prompts,
                              model_id="tiny:modelscope", resolution=32, num_frames=8, source="test")
    dataset = LatentCacheDataset(root, model_id="tiny:modelscope", resolution=32, num_frames=8)
    assert len(dataset) == 3 and not dataset.pairs
    torch.testing.assert_close(dataset[2]["latents"], latents[2], rtol=0, atol=0)
    assert dataset[1]["prompt"] == "p1"
    with pytest.raises(StaleCacheError, match="model_id"):
        LatentCacheDataset(root, model_id="tiny:animatediff", resolution=32, num_frames=8)


# ---------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("methods=[{name: sft}]", "named 'seppo'"),
        ("methods=[{name: seppo}, {name: seppo}]", "unique"),
        ("eval_every=7", "must divide align_steps"),
        ("seeds=[0]", "at least 2"),
        ("parallel_runs=0", "must be >= 1"),
        ("eval.precision_methods=[dpo_typo]", "not among methods"),
        ("world.frame=8", "did you mean 'world.frames'"),
    ],
)
def test_bad_study_config_names_the_key(repo_root, override, message):
    with pytest.raises(ConfigError, match=message):
        load_study_config(repo_root / "configs" / "study_cpu.yaml", [override])


def test_shipped_study_configs_load(repo_root):
    for name in ("study_cpu.yaml", "study_gpu.yaml"):
        study = load_study_config(repo_root / "configs" / name)
        assert {m.name for m in study.methods} >= {"seppo", "sft", "spin", "ditto", "dpo"}
        assert len(study.seeds) >= 5


# ---------------------------------------------------------------- statistics


COLLAPSED = {("spin", 1), ("spin", 3)}  # (method, seed) runs whose collapse alarm fired, at step 3


def _fake_scores(rng: np.random.Generator, shift: dict[str, float]) -> dict:
    runs = {}
    for name, delta in shift.items():
        runs[name] = {
            str(seed): {
                "steps": [2, 4],
                "rewards": [(0.5 + rng.normal(0, 0.05, 6)).tolist(), (0.5 + delta + rng.normal(0, 0.01, 6)).tolist()],
                "precision": [],
                "flip_rate": [[1, 0.5], [2, 0.25]] if name != "sft" else [],
                "collapse_step": 3 if (name, seed) in COLLAPSED else None,
            }
            for seed in range(4)
        }
    return {"base": [0.4] * 6, "held_out": [f"p{i}" for i in range(6)], "runs": runs}


def test_summary_means_and_paired_differences_match_a_direct_computation():
    scores = _fake_scores(np.random.default_rng(0), {"seppo": 0.1, "sft": 0.0, "spin": 0.1})
    summary = summarise_study(scores, confidence=0.95, n_boot=500)
    final = {name: np.array([run["rewards"][-1] for run in runs.values()]) for name, runs in scores["runs"].items()}
    assert summary["final"]["sft"]["mean"] == pytest.approx(final["sft"].mean())
    diff = summary["seppo_minus"]["sft"]
    assert diff["mean"] == pytest.approx((final["seppo"] - final["sft"]).mean())
    assert diff["ci_low"] > 0  # a 0.1 shift with 0.01 noise is resolved
    spin = summary["seppo_minus"]["spin"]
    assert spin["ci_low"] < 0 < spin["ci_high"]  # equal methods are not
    assert summary["curves"]["seppo"]["steps"] == [0, 2, 4]
    assert summary["curves"]["seppo"]["mean"][0] == pytest.approx(0.4)  # step 0 is the base model
    assert set(summary["flip_rate"]) == {"seppo", "spin"}
    assert summary["collapse_alarms"]["spin"] == {"fired": 2, "seeds": 4, "steps": [3, 3]}
    assert summary["collapse_alarms"]["seppo"] == {"fired": 0, "seeds": 4, "steps": []}
    table = markdown(summary, "# t")
    assert "| sft |" in table and "SePPO better" in table and "not resolved" in table
    assert "collapse alarm (seeds)" in table and "| 2/4 (steps 3, 3) |" in table and "| 0/4 |" in table


# ---------------------------------------------------------------- end to end


@pytest.mark.slow
def _tiny_study_command(repo_root, out, *extra: str) -> list[str]:
    overrides = [
        f"output_dir={out / 'runs'}", f"report_dir={out / 'report'}", "seeds=[0,1]",
        "base_steps=4", "align_steps=4", "eval_every=2", "world.clips_per_prompt=1",
        "eval.num_inference_steps=2", "eval.precision_draws=3", "eval.precision_winners=2", "eval.n_boot=100",
        ("methods=[{name: seppo, overrides: [seppo.method=seppo, seppo.ref_every=2]}, "
         "{name: sft, overrides: [seppo.method=sft]}]"),
    ]
    return [sys.executable, str(repo_root / "bench" / "alignment_study.py"),
            "--config", str(repo_root / "configs" / "study_cpu.yaml"), *overrides, *extra]


def test_tiny_study_end_to_end_parallel_and_resume(repo_root, tmp_path):
    """Two methods x two seeds, a few steps each, two runs at a time: every artifact, the same scores as one
    run at a time, and a resumed call that trains nothing."""
    parallel = _tiny_study_command(repo_root, tmp_path / "parallel", "parallel_runs=2")
    subprocess.run(parallel, check=True, cwd=repo_root, capture_output=True, timeout=600)
    report = tmp_path / "parallel" / "report"
    for name in ("results.md", "results.json", "reward_vs_step.png", "flip_rate.png", "sign_precision.png"):
        assert (report / name).stat().st_size > 0, name
    results = json.loads((report / "results.json").read_text())
    seppo_runs = results["scores"]["runs"]["seppo"]
    assert set(seppo_runs) == {"0", "1"} and seppo_runs["0"]["steps"] == [2, 4]
    assert all("collapse_step" in run for run in seppo_runs.values())
    # Precision rows exclude the snapshot equal to the policy; θ0 is always there.
    assert all(rows and rows[0]["ref_step"] == 0 for rows in seppo_runs["0"]["precision"])
    assert all(row["ref_step"] != 4 for row in seppo_runs["0"]["precision"][-1])
    assert "| seppo |" in (report / "results.md").read_text()
    assert "done:" in (tmp_path / "parallel" / "runs" / "runs" / "sft" / "seed1.log").read_text()

    # One run at a time from the same base: the same scores (up to thread-count rounding).
    shutil.copytree(tmp_path / "parallel" / "runs" / "base_model", tmp_path / "serial" / "runs" / "base_model")
    subprocess.run(_tiny_study_command(repo_root, tmp_path / "serial"), check=True, cwd=repo_root,
                   capture_output=True, timeout=600)
    serial = json.loads((tmp_path / "serial" / "report" / "results.json").read_text())["scores"]
    for method, runs in results["scores"]["runs"].items():
        for seed, run in runs.items():
            twin = serial["runs"][method][seed]
            assert run["steps"] == twin["steps"]
            np.testing.assert_allclose(run["rewards"], twin["rewards"], atol=1e-5)
            for rows, twin_rows in zip(run["precision"], twin["precision"], strict=True):
                assert [row["ref_step"] for row in rows] == [row["ref_step"] for row in twin_rows]
                np.testing.assert_allclose([row["mean_anchor"] for row in rows],
                                           [row["mean_anchor"] for row in twin_rows], rtol=1e-3)

    done = tmp_path / "parallel" / "runs" / "runs" / "sft" / "seed1" / "study_scores.json"
    before = done.stat().st_mtime_ns
    rerun = subprocess.run(parallel, check=True, cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert done.stat().st_mtime_ns == before  # finished runs are reused, not retrained
    assert "done:" not in rerun.stdout  # no training run finished in the second call
