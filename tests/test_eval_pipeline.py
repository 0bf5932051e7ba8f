"""generate -> score -> report on the tiny AnimateDiff through the CLI, as a real run goes.

Every metric network is a tiny random-init stand-in written as TorchScript /
a CLIP folder and named in an eval config, exactly where real weights go.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from seppo_video.cli import main as cli_main
from seppo_video.evaluation.bench import main
from seppo_video.evaluation.config import StatsConfig, load_eval_config
from seppo_video.evaluation.errors import EvalError
from seppo_video.evaluation.generate import generate_videos
from seppo_video.evaluation.pipeline import run_pipeline
from seppo_video.evaluation.prompts import read_prompts
from seppo_video.evaluation.report import ModelScores, summarize_run
from seppo_video.evaluation.tiny_extractors import ensure_tiny_extractors
from seppo_video.sample import SampleSettings, write_video

SAMPLE_CSV = Path(__file__).resolve().parents[1] / "data" / "chronomagic_bench_sample.csv"
MODEL = "tiny-animatediff"
BENCH_COLUMNS = ["Model", "Backbone", "UMT-FVD", "UMTScore", "MTScore", "CHScore", "GPT4o-MTScore"]
EXPECTED_METRICS = {"umt_fvd", "umtscore", "mtscore", "chscore", "fid", "fvd", "lpips", "ssim", "psnr",
                    "clip_score", "pickscore"}


OWN_DESCRIPTIONS = [f"test text {i}" for i in range(10)]  # not the official wording: marked as such


def reference_clips(folder: Path, videoids: list[str], frames: int = 12, size: int = 80) -> Path:
    """Real-looking stand-ins for the benchmark's clips: longer and larger than the generated ones."""
    y, x = np.mgrid[0:size, 0:size] / size
    for k, videoid in enumerate(videoids):
        clip = [np.stack([x * t / frames, y, np.full_like(x, (k + 1) / 4)], -1) for t in range(frames)]
        write_video((np.stack(clip) * 255).astype(np.uint8), folder / f"{videoid}.mp4", fps=8)
    return folder


def weights_section(tiny: dict[str, Path]) -> dict:
    text = {"tokenizer": str(tiny["tokenizer"])}
    return {
        "umt": {"path": str(tiny["umt"]), **text},
        "internvideo2": {"path": str(tiny["internvideo2"]), **text},
        "cotracker": {"path": str(tiny["cotracker"])},
        "i3d": {"path": str(tiny["i3d"])},
        "inception": {"path": str(tiny["inception"])},
        "lpips": {"path": str(tiny["lpips"])},
        "clip": {"path": str(tiny["clip"])},
        "pickscore": {"path": str(tiny["pickscore"])},
    }


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """One full run: 2 prompts x 2 seeds, 8 frames at 64x64, 2 denoising steps."""
    root = tmp_path_factory.mktemp("bench")
    prompts = read_prompts(SAMPLE_CSV, limit=2)
    config = {
        "out": str(root / "out"),
        "prompts": str(SAMPLE_CSV),
        "max_prompts": 2,
        "seeds": [0, 1],
        "models": [{"name": MODEL, "model": "tiny:animatediff"}],
        "mtscore_descriptions": OWN_DESCRIPTIONS,
        "generation": {"num_frames": 8, "height": 64, "width": 64, "num_inference_steps": 2, "device": "cpu"},
        "reference": {"videos": str(reference_clips(root / "reference", [p.videoid for p in prompts]))},
        "weights": weights_section(ensure_tiny_extractors()),
        "scoring": {"device": "cpu", "fid_frames": 8, "fvd_frames": 8, "fvd_size": 64},
        "stats": {"bootstrap": 200, "distribution_bootstrap": 10},
    }
    path = root / "eval.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", "--config", str(path)]) == 0
    return {"root": root, "config": path, "out": root / "out", "prompts": prompts}


def test_videos_are_written_in_the_benchmark_layout(bench):
    videos = bench["out"] / "videos" / MODEL
    for set_name in ("1", "2"):
        assert sorted(p.name for p in (videos / set_name).iterdir()) == sorted(
            f"{p.videoid}.mp4" for p in bench["prompts"]
        )
    info = json.loads((videos / "generation.json").read_text())
    assert info["seeds"] == {"1": 0, "2": 1} and info["backbone"] == "AnimateDiff"


def test_report_has_every_configured_metric_with_intervals(bench):
    report = json.loads((bench["out"] / "report.json").read_text())
    (run,) = report["runs"]
    assert set(run["metrics"]) == EXPECTED_METRICS
    assert set(run["skipped"]) == {"hpsv2", "gpt4o_mtscore"} and "HPS" in run["skipped"]["hpsv2"]
    assert run["seeds"] == {"1": 0, "2": 1} and run["n_prompts"] == 2
    for name, entry in run["metrics"].items():
        assert math.isfinite(entry["mean"]), name
        assert entry["ci_low"] <= entry["ci_high"], name
        assert len(entry["per_set"]) == 2, name
    assert run["metrics"]["chscore"]["median"] is not None
    assert run["metrics"]["umt_fvd"]["details"][0]["distinct_subsets"] == 1  # 2 videos: every subset is the set
    assert {"torch", "diffusers", "transformers"} <= set(report["versions"])
    assert report["config"]["seeds"] == [0, 1]
    rows = {row["metric"]: row for row in report["rows"]}  # the flat table the run viewer reads
    assert set(rows) == {entry["title"] for entry in run["metrics"].values()}
    assert all(row["run"] == MODEL and math.isfinite(row["mean"]) for row in rows.values())


def test_leaderboard_csv_and_markdown(bench):
    with (bench["out"] / "leaderboard.csv").open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == BENCH_COLUMNS
    assert rows[1][:2] == [MODEL, "AnimateDiff"] and rows[1][-1] == ""  # GPT4o-MTScore not run
    assert all(math.isfinite(float(v)) for v in rows[1][2:6])
    markdown = (bench["out"] / "report.md").read_text()
    assert "AnimateDiff-V3 | 197.89 | 2.944 | 0.467 | 70.85 | 2.62" in markdown
    assert "11.09" in markdown and "formula change" in markdown
    assert "median" in markdown and "HPSv2" in markdown
    assert "† tiny-animatediff MTScore: not leaderboard-comparable" in markdown and "mtscore_descriptions" in markdown
    report = json.loads((bench["out"] / "report.json").read_text())
    flagged = {n for n, e in report["runs"][0]["metrics"].items() if e.get("not_leaderboard_comparable")}
    assert flagged == {"mtscore"}


def test_umt_fvd_reads_the_shipped_feature_file(bench, tmp_path, monkeypatch):
    """The benchmark's gt*_feats.pt (fp16 [N, 768]) as the reference side, through scoring and the report."""
    (tmp_path / "wide_umt.py").write_text(  # the tiny UMT, widened to UMT's 768 feature columns
        "import torch\n"
        "class Wide:\n"
        "    def __init__(self, path):\n"
        "        self.inner = torch.jit.load(path)\n"
        "    def encode_video(self, video):\n"
        "        return self.inner.encode_video(video).repeat(1, 24)\n"
        "def load(spec):\n"
        "    return Wide(spec.path)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    features = tmp_path / "gt150_feats.pt"
    torch.save(torch.randn(20, 768).half(), features)
    scores = tmp_path / "scores"
    args = ["score", "--videos", str(bench["out"] / "videos" / MODEL), "--prompts", str(SAMPLE_CSV), "--max-prompts",
            "2", "--out", str(scores), "--config", str(bench["config"]), "--metrics", "umt_fvd",
            "--reference-umt-features", str(features), "--set", "weights.umt.factory=wide_umt:load"]
    assert main(args) == 0
    run = summarize_run(ModelScores(scores / MODEL), StatsConfig(bootstrap=10, distribution_bootstrap=2))
    entry = run["metrics"]["umt_fvd"]
    assert math.isfinite(entry["mean"]) and entry["n_reference"] == 20
    assert entry["details"][0]["rows"] == [2, 20]


def test_a_wrong_umt_feature_file_fails_before_any_generation(bench, tmp_path, monkeypatch):
    wrong = tmp_path / "gt150_feats.pt"
    torch.save(torch.zeros(150, 512).half(), wrong)
    config = load_eval_config(bench["config"], [f"reference.umt_features={wrong}", f"out={tmp_path / 'out'}"])

    def no_generation(*args, **kwargs):
        raise AssertionError("generation started before the reference features were checked")

    monkeypatch.setattr("seppo_video.evaluation.pipeline.generate_videos", no_generation)
    with pytest.raises(EvalError, match=r"gt150_feats\.pt holds \(150, 512\)"):
        run_pipeline(config)


def test_per_video_metric_merges_over_videos_then_sets(bench):
    scores = bench["out"] / "scores" / MODEL / "sets"
    set_means = []
    for set_name in ("1", "2"):
        records = json.loads((scores / set_name / "mtscore.json").read_text())["records"]
        set_means.append(np.mean([r["score"] for r in records.values()]))
    run = json.loads((bench["out"] / "report.json").read_text())["runs"][0]
    assert run["metrics"]["mtscore"]["mean"] == pytest.approx(np.mean(set_means))


def test_generation_resumes_without_touching_existing_videos(bench):
    videos = bench["out"] / "videos"
    files = sorted((videos / MODEL).rglob("*.mp4"))
    removed = files[0]
    before = {f: f.stat().st_mtime_ns for f in files[1:]}
    removed.unlink()
    settings = SampleSettings(num_frames=8, height=64, width=64, num_inference_steps=2)
    result = generate_videos("tiny:animatediff", bench["prompts"], [0, 1], settings, videos, MODEL, "cpu")
    assert (result.written, result.skipped) == (1, 3) and removed.exists()
    assert {f: f.stat().st_mtime_ns for f in files[1:]} == before
    with pytest.raises(EvalError, match="settings"):
        generate_videos("tiny:animatediff", bench["prompts"], [0, 1], SampleSettings(num_frames=4), videos, MODEL)


def score_args(bench, *extra: str) -> list[str]:
    return ["score", "--videos", str(bench["out"] / "videos" / MODEL), "--prompts", str(SAMPLE_CSV),
            "--max-prompts", "2", "--out", str(bench["out"] / "scores"), "--config", str(bench["config"]), *extra]


def test_scoring_resumes_from_per_video_records(bench):
    set_dir = bench["out"] / "scores" / MODEL / "sets" / "1"
    store = set_dir / "chscore.json"
    data = json.loads(store.read_text())
    dropped = min(data["records"])
    kept = {k: v for k, v in data["records"].items() if k != dropped}
    store.write_text(json.dumps({**data, "records": kept}))
    features = sorted((set_dir / "features" / "fvd").glob("*.npy"))
    before = {f: f.stat().st_mtime_ns for f in features}
    assert main(score_args(bench, "--metrics", "chscore", "fvd")) == 0
    restored = json.loads(store.read_text())["records"]
    assert restored[dropped] == data["records"][dropped]
    assert {f: f.stat().st_mtime_ns for f in features} == before  # existing features not recomputed


def test_scoring_refuses_to_mix_records_from_other_weights(bench, tmp_path, capsys):
    other = tmp_path / "cotracker-copy.pt"
    shutil.copy(ensure_tiny_extractors()["cotracker"], other)
    assert main(score_args(bench, "--metrics", "chscore", "--set", f"weights.cotracker.path={other}")) == 2
    assert "different settings" in capsys.readouterr().err


def test_compare_of_a_run_with_itself_is_exactly_zero(bench, tmp_path):
    scores = str(bench["out"] / "scores" / MODEL)
    assert main(["compare", "--a", scores, "--b", scores, "--out", str(tmp_path),
                 "--config", str(bench["config"])]) == 0
    comparison = json.loads((tmp_path / "compare.json").read_text())
    assert set(comparison["metrics"]) == EXPECTED_METRICS
    for name, entry in comparison["metrics"].items():
        assert entry["mean"] == 0.0 and entry["ci_low"] == 0.0 and entry["ci_high"] == 0.0, name


# ---------------------------------------------------------------- missing weights, prompt files


@pytest.fixture()
def plain_videos(tmp_path):
    """Two videos per set, no generation needed, and the matching references."""
    rng = np.random.default_rng(0)
    ids = [p.videoid for p in read_prompts(SAMPLE_CSV, limit=2)]
    for set_name in ("1", "2"):
        for videoid in ids:
            write_video(rng.integers(0, 255, (6, 32, 32, 3), dtype=np.uint8), tmp_path / "videos" / "m" / set_name /
                        f"{videoid}.mp4")
    return tmp_path, reference_clips(tmp_path / "reference", ids, size=32)


def test_metrics_without_weights_are_skipped_with_what_they_need(plain_videos):
    root, reference = plain_videos
    args = ["eval", "score", "--videos", str(root / "videos" / "m"), "--prompts", str(SAMPLE_CSV), "--max-prompts",
            "2", "--out", str(root / "scores"), "--reference-videos", str(reference), "--device", "cpu"]
    assert cli_main(args) == 0
    meta = json.loads((root / "scores" / "m" / "meta.json").read_text())
    assert set(meta["metrics"]) == {"ssim", "psnr"}  # need only reference videos
    assert "CoTracker2" in meta["skipped"]["chscore"] and "weights.cotracker.path" in meta["skipped"]["chscore"]
    assert "UMT-msrvtt-7k" in meta["skipped"]["umtscore"] and "InternVideo2" in meta["skipped"]["mtscore"]
    assert "gpt4o_mtscore" in meta["skipped"]


def test_a_requested_metric_without_weights_fails_clearly(plain_videos, capsys):
    root, _ = plain_videos
    args = ["eval", "score", "--videos", str(root / "videos" / "m"), "--prompts", str(SAMPLE_CSV),
            "--out", str(root / "scores"), "--metrics", "chscore"]
    assert cli_main(args) == 2
    error = capsys.readouterr().err
    assert "chscore" in error and "CoTracker2" in error and "weights.cotracker.path" in error
    assert cli_main(args[:-1] + ["gpt4o_mtscore"]) == 2
    assert "off by default" in capsys.readouterr().err


def test_a_network_without_the_interface_is_rejected(plain_videos, capsys):
    root, _ = plain_videos
    tiny = ensure_tiny_extractors()
    args = ["score", "--videos", str(root / "videos" / "m"), "--prompts", str(SAMPLE_CSV), "--out",
            str(root / "scores"), "--metrics", "umtscore", "--set", f"weights.umt.path={tiny['i3d']}",
            "--set", f"weights.umt.tokenizer={tiny['tokenizer']}"]
    assert main(args) == 2
    assert "match_logit" in capsys.readouterr().err


def test_a_factory_backend_is_loaded_through_the_same_interface(plain_videos, monkeypatch):
    root, _ = plain_videos
    (root / "my_tracker.py").write_text(
        "import torch\n"
        "def load(spec):\n"
        "    return torch.jit.load(spec.path)\n"
    )
    monkeypatch.syspath_prepend(str(root))
    args = ["score", "--videos", str(root / "videos" / "m"), "--prompts", str(SAMPLE_CSV), "--max-prompts", "2",
            "--out", str(root / "scores"), "--metrics", "chscore", "--set", "weights.cotracker.factory=my_tracker:load",
            "--set", f"weights.cotracker.path={ensure_tiny_extractors()['cotracker']}"]
    assert main(args) == 0
    records = json.loads((root / "scores" / "m" / "sets" / "1" / "chscore.json").read_text())["records"]
    assert len(records) == 2 and all(r["score"] >= 0 for r in records.values())


def test_prompt_file_format(tmp_path):
    prompts = read_prompts(SAMPLE_CSV)
    assert len(prompts) == 8 and sum(p.main_category is None for p in prompts) == 1
    bad = tmp_path / "bad.csv"
    bad.write_text("videoid,name,sub_category,main_category\na,x,s,m\na,y,s,m\n")
    with pytest.raises(EvalError, match="appears twice"):
        read_prompts(bad)
    bad.write_text("videoid,name\na,x\n")
    with pytest.raises(EvalError, match="main_category"):
        read_prompts(bad)
