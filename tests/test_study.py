"""The alignment study: its config, the world base builder, the statistics, and a tiny end-to-end study."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from seppo_video.config import ConfigError
from seppo_video.study.base import world_base_config
from seppo_video.study.evaluate import good_share
from seppo_video.study.report import markdown, summarise_study
from seppo_video.study.runner import MethodVariant, grid_points, load_study_config

# ---------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("methods=[{name: sft}]", "named 'seppo'"),
        ("methods=[{name: seppo}, {name: seppo}]", "unique"),
        ("eval_every=7", "must divide align_steps"),
        ("seeds=[0]", "at least 2"),
        ("parallel_runs=0", "must be >= 1"),
        ("tuning.seed=0", "also a comparison seed"),
        ("eval.precision_methods=[dpo_typo]", "not among methods"),
        ("methods=[{name: seppo, grid: {train.learning_rate: [0.1, 0.2]}}, {name: sft}]", "same number of tuning runs"),
        ("methods=[{name: seppo}, {name: x, tuned_as: nobody}]", "tuned_as must name another method"),
        ("methods=[{name: seppo, grid: {seppo.beta: []}}]", "at least one value"),
        ("tuning.sed=3", "did you mean 'tuning.seed'"),
        ("base_config=configs/world_base.yaml", "'world' is the shipped one"),
        ("kind=ltx", "the world bases are"),
    ],
)
def test_bad_study_config_names_the_key(repo_root, override, message):
    with pytest.raises(ConfigError, match=message):
        load_study_config(repo_root / "configs" / "study_cpu.yaml", [override])


def test_shipped_study_configs_load_with_equal_tuning_budgets(repo_root):
    for name in ("study_cpu.yaml", "study_gpu.yaml", "study_wan_cpu.yaml"):
        study = load_study_config(repo_root / "configs" / name)
        assert {m.name for m in study.methods} >= {"seppo", "sft", "spin", "ditto", "dpo"}
        assert len(study.seeds) >= 5
        budgets = {len(grid_points(m)) for m in study.methods if m.tuned_as is None}
        assert len(budgets) == 1 and budgets.pop() >= 4


def test_a_study_of_one_kind_refuses_a_base_of_another(repo_root):
    from seppo_video.models.tiny import WORLD_BASE_DIRS
    from seppo_video.study.runner import world_of

    study = load_study_config(repo_root / "configs" / "study_wan_cpu.yaml", [f"base={WORLD_BASE_DIRS['modelscope']}"])
    with pytest.raises(ConfigError, match="is a 'modelscope' model"):
        world_of(study)


def test_a_study_worker_exits_when_the_study_is_killed(repo_root):
    """The middle process stands for a study killed by a signal: its worker (here the grandchild,
    sharing its stdout) must notice and exit, which closes the pipe's last write end."""
    worker = "import sys; from seppo_video.study.runner import _exit_when_orphaned; _exit_when_orphaned(int(sys.argv[1]), 0.05)"
    study = (f"import subprocess, sys, os; subprocess.Popen([sys.executable, '-c', {worker!r}, str(os.getpid())]); "
             "os._exit(0)")
    with subprocess.Popen([sys.executable, "-c", study], stdout=subprocess.PIPE, cwd=repo_root) as process:
        process.communicate(timeout=120)  # returns at EOF: once the orphaned worker has exited


def test_grid_points_are_every_combination():
    method = MethodVariant("m", grid={"a": [1, 2], "b": ["x", "y", "z"]})
    points = grid_points(method)
    assert len(points) == 6 and {"a": 2, "b": "y"} in points
    assert grid_points(MethodVariant("plain")) == [{}]


# ---------------------------------------------------------------- statistics


COLLAPSED = {("spin", 1), ("spin", 3)}  # (method, seed) runs whose collapse alarm fired, at step 3
PROMPTS, SAMPLES = 6, 4


def _rewards(rng: np.random.Generator, level: float, noise: float) -> list[list[float]]:
    return (level + rng.normal(0, noise, (PROMPTS, SAMPLES))).clip(0, 1).tolist()


def _fake_scores(rng: np.random.Generator, shift: dict[str, float]) -> dict:
    runs = {}
    for name, delta in shift.items():
        runs[name] = {
            str(seed): {
                "steps": [2, 4],
                "validation": [_rewards(rng, 0.5, 0.05), _rewards(rng, 0.5 + delta, 0.01)],
                "held_out": _rewards(rng, 0.6 + delta, 0.01),
                "precision": [],
                "flip_rate": [[1, 0.5], [2, 0.25]] if name != "sft" else [],
                "collapse_step": 3 if (name, seed) in COLLAPSED else None,
            }
            for seed in range(4)
        }
    tuning = {name: [{"point": {"train.learning_rate": lr}, "validation": _rewards(rng, 0.5 + lr, 0.01)}
                     for lr in (0.1, 0.3)] for name in shift}
    return {
        "prompts": {"validation": [f"v{i}" for i in range(PROMPTS)], "held_out": [f"h{i}" for i in range(PROMPTS)]},
        "base": {"validation": _rewards(rng, 0.5, 0.01), "held_out": _rewards(rng, 0.6, 0.01),
                 "validation_tuning": _rewards(rng, 0.5, 0.01)},
        "tuning": tuning, "chosen": {name: {"train.learning_rate": 0.3} for name in shift},
        "runs": runs,
    }


def test_summary_means_and_paired_differences_match_a_direct_computation():
    scores = _fake_scores(np.random.default_rng(0), {"seppo": 0.2, "sft": 0.0, "spin": 0.2})
    summary = summarise_study(scores, confidence=0.95, n_boot=500)
    held = {name: np.array([run["held_out"] for run in runs.values()]) for name, runs in scores["runs"].items()}
    base = np.array(scores["base"]["held_out"])
    final = summary["final"]
    assert final["sft"]["reward"]["mean"] == pytest.approx(held["sft"].mean())
    assert final["base"]["reward"]["mean"] == pytest.approx(base.mean())
    # good-clip share: the fraction of samples at reward >= 0.8 (0.8 is reached by seppo's 0.8 level, not sft's 0.6)
    assert final["seppo"]["good_share"]["mean"] == pytest.approx((held["seppo"] >= 0.8).mean())
    assert final["sft"]["good_share"]["mean"] == pytest.approx((held["sft"] >= 0.8).mean())
    diff = final["sft"]["seppo_minus_reward"]
    assert diff["mean"] == pytest.approx((held["seppo"] - held["sft"]).mean())
    assert diff["ci_low"] > 0  # a 0.2 shift with 0.01 noise is resolved
    assert final["seppo"]["reward_minus_base"]["mean"] == pytest.approx((held["seppo"] - base[None]).mean())
    assert final["seppo"]["reward_minus_base"]["ci_low"] > 0
    spin = final["spin"]["seppo_minus_reward"]
    assert spin["ci_low"] < 0 < spin["ci_high"]  # equal methods are not
    curve = summary["curves"]["seppo"]
    assert curve["steps"] == [0, 2, 4]
    assert curve["reward"]["mean"][0] == pytest.approx(np.mean(scores["base"]["validation"]))  # step 0: the base
    assert curve["good_share"]["mean"][2] == pytest.approx(
        np.mean([good_share(np.array(run["validation"][1])).mean() for run in scores["runs"]["seppo"].values()]))
    assert set(summary["flip_rate"]) == {"seppo", "spin"}
    assert summary["collapse_alarms"]["spin"] == {"fired": 2, "seeds": 4, "steps": [3, 3]}
    table = summary["tuning"]["sft"]
    assert [row["chosen"] for row in table] == [False, True]
    assert table[1]["reward"] == pytest.approx(np.mean(scores["tuning"]["sft"][1]["validation"]))
    text = markdown(summary, "# t")
    assert "| sft |" in text and "SePPO better" in text and "not resolved" in text
    assert "**Positive controls**" in text and "sft − base" in text
    assert "| **learning_rate=0.3** |" in text and "| 2/4 (steps 3, 3) |" in text


# ---------------------------------------------------------------- the world base and one tiny study


def _tiny_base(repo_root, out, config="world_base.yaml"):
    """A world base trained for 4 steps (the shipped config otherwise)."""
    subprocess.run([sys.executable, "-m", "seppo_video", "make-world-base", "--config",
                    str(repo_root / "configs" / config), "--out", str(out / "base"), "--threads", "1",
                    "train.max_steps=4"], check=True, cwd=repo_root, capture_output=True, timeout=600)
    return out / "base"


@pytest.mark.slow
@pytest.mark.parametrize(("config", "pipeline", "tokens"), [
    ("world_base.yaml", "TextToVideoSDPipeline", ["red</w>", "growing</w>", "left</w>"]),
    ("world_base_wan.yaml", "WanPipeline", ["\u2581red", "\u2581growing", "\u2581left"]),
])
def test_make_world_base_writes_a_pipeline_with_its_recipe(repo_root, tmp_path, config, pipeline, tokens):
    import diffusers

    from seppo_video.atomic import file_sha256

    base = _tiny_base(repo_root, tmp_path, config)
    info = json.loads((base / "world_base.json").read_text())
    assert info["threads"] == 1 and info["config"]["data"]["kind"] == "world" and len(info["weights_sha256"]) == 64
    assert info["overrides"] == ["train.max_steps=4"] and f"configs/{config} " in info["command"]
    recipe = world_base_config(base)  # the recipe with its overrides applied
    assert recipe.train.max_steps == 4 and recipe.data.world.bad_fraction == 0.3
    pipe = getattr(diffusers, pipeline).from_pretrained(base)
    denoiser = pipe.unet if recipe.model.kind == "modelscope" else pipe.transformer
    assert file_sha256(base / info["weights"]) == info["weights_sha256"]
    assert info["weights"].split("/")[0] == ("unet" if recipe.model.kind == "modelscope" else "transformer")
    assert next(denoiser.parameters()).dtype.is_floating_point
    assert pipe.tokenizer.tokenize("red growing left") == tokens
    if recipe.model.kind == "modelscope":
        assert pipe.scheduler.config.prediction_type == "v_prediction"  # the schedule it was trained with
    else:
        assert type(pipe.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"
        assert denoiser.config.num_layers == 4  # the widened world transformer, not the tiny one
    # The same command again gives the same weights, bit for bit.
    again = _tiny_base(repo_root, tmp_path / "again", config)
    assert json.loads((again / "world_base.json").read_text())["weights_sha256"] == info["weights_sha256"]


def _tiny_study_command(repo_root, out, base, *extra: str) -> list[str]:
    overrides = [
        f"output_dir={out / 'runs'}", f"report_dir={out / 'report'}", f"base={base}", "seeds=[0,1]",
        "align_steps=4", "eval_every=2", "eval.samples_per_prompt=2", "tuning.samples_per_prompt=1",
        "eval.num_inference_steps=2", "eval.precision_draws=3", "eval.precision_winners=2", "eval.n_boot=100",
        ("methods=[{name: seppo, overrides: [seppo.method=seppo, seppo.ref_every=2], "
         "grid: {train.learning_rate: [1.0e-5, 1.0e-4]}}, "
         "{name: seppo_no_aaf, overrides: [seppo.method=seppo, seppo.aaf=none, seppo.ref_every=2], tuned_as: seppo}, "
         "{name: sft, overrides: [seppo.method=sft], grid: {train.learning_rate: [1.0e-5, 1.0e-4]}}]"),
    ]
    return [sys.executable, str(repo_root / "bench" / "alignment_study.py"),
            "--config", str(repo_root / "configs" / "study_cpu.yaml"), *overrides, *extra]


@pytest.mark.slow
def test_tiny_study_end_to_end_parallel_and_resume(repo_root, tmp_path):
    """Tuning then comparison, two runs at a time: every artifact, the choice, the same scores as one run at
    a time, and a resumed call that trains nothing."""
    base = _tiny_base(repo_root, tmp_path)
    parallel = _tiny_study_command(repo_root, tmp_path / "parallel", base, "parallel_runs=2")
    subprocess.run(parallel, check=True, cwd=repo_root, capture_output=True, timeout=900)
    report = tmp_path / "parallel" / "report"
    for name in ("results.md", "results.json", "reward_vs_step.png", "good_share_vs_step.png", "flip_rate.png",
                 "sign_precision.png"):
        assert (report / name).stat().st_size > 0, name
    results = json.loads((report / "results.json").read_text())
    scores = results["scores"]
    assert len(scores["tuning"]["seppo"]) == 2 and len(scores["tuning"]["sft"]) == 2 and "seppo_no_aaf" not in scores["tuning"]
    best = max(scores["tuning"]["seppo"], key=lambda row: np.mean(row["validation"]))["point"]
    assert scores["chosen"]["seppo"] == best and scores["chosen"]["seppo_no_aaf"] == best  # the ablation inherits it
    seppo_runs = scores["runs"]["seppo"]
    assert set(seppo_runs) == {"0", "1"} and seppo_runs["0"]["steps"] == [2, 4]
    assert np.asarray(seppo_runs["0"]["held_out"]).shape == (len(scores["prompts"]["held_out"]), 2)
    assert all("collapse_step" in run for run in seppo_runs.values())
    # Precision rows exclude the snapshot equal to the policy; θ0 is always there.
    assert all(rows and rows[0]["ref_step"] == 0 for rows in seppo_runs["0"]["precision"])
    assert all(row["ref_step"] != 4 for row in seppo_runs["0"]["precision"][-1])
    text = (report / "results.md").read_text()
    assert "| seppo |" in text and "Positive controls" in text and "Tuning on the validation prompts" in text
    assert "done:" in (tmp_path / "parallel" / "runs" / "runs" / "final" / "sft" / "seed1.log").read_text()

    # One run at a time: the same scores (up to thread-count rounding).
    subprocess.run(_tiny_study_command(repo_root, tmp_path / "serial", base), check=True, cwd=repo_root,
                   capture_output=True, timeout=900)
    serial = json.loads((tmp_path / "serial" / "report" / "results.json").read_text())["scores"]
    assert serial["chosen"] == scores["chosen"]
    for method, runs in scores["runs"].items():
        for seed, run in runs.items():
            twin = serial["runs"][method][seed]
            np.testing.assert_allclose(run["validation"], twin["validation"], atol=1e-5)
            np.testing.assert_allclose(run["held_out"], twin["held_out"], atol=1e-5)

    done = tmp_path / "parallel" / "runs" / "runs" / "final" / "sft" / "seed1" / "study_scores.json"
    before = done.stat().st_mtime_ns
    rerun = subprocess.run(parallel, check=True, cwd=repo_root, capture_output=True, text=True, timeout=900)
    assert done.stat().st_mtime_ns == before  # finished runs are reused, not retrained
    assert "done:" not in rerun.stdout  # no training run finished in the second call
    shutil.rmtree(tmp_path / "serial")
