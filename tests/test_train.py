"""The training loop: every method on every backbone, learning, resume, export, distribution."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from seppo_video.config import load_config
from seppo_video.export import load_pipeline
from seppo_video.models.adapters import load_adapter
from seppo_video.train import train

# Small and fast: 4 frames at 32x32 pixels (8x8 latents), 2 DDIM steps for reference samples.
FAST = [
    "data.num_frames=4", "data.resolution=32", "data.batch_size=2", "seppo.ref_sample_steps=2",
    "seppo.ref_every=1", "train.log_with=none", "train.checkpoint_every=1000", "sample.prompts=[]",
]
BACKBONES = {
    "animatediff": ["model.kind=animatediff", "model.trainable=motion"],
    "modelscope": ["model.kind=modelscope", "model.trainable=motion"],
    "sd": ["model.kind=sd", "model.trainable=lora", "data.num_frames=1"],
}


def _config(tmp_path: Path, *extra: str):
    return load_config(None, [*FAST, f"output_dir={tmp_path}", *extra])


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("backbone", list(BACKBONES))
@pytest.mark.parametrize("method", ["seppo", "sft", "dpo", "spin", "ditto"])
def test_each_method_trains_only_the_trainable_weights(backbone, method, tmp_path):
    config = _config(tmp_path, *BACKBONES[backbone], f"seppo.method={method}", "train.max_steps=2")
    run = train(config)
    records = _metrics(tmp_path)
    assert [r["step"] for r in records] == [1, 2]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records)
    fresh = load_adapter(config.model)  # the same initial model, built independently
    before = dict(fresh.unet.named_parameters())
    trainable = {n for n, _ in run.adapter.named_trainable_parameters()}
    changed = {n for n, p in run.adapter.unet.named_parameters() if not torch.equal(p.detach(), before[n].detach())}
    assert changed and changed <= trainable
    assert len(changed) > 0.5 * len(trainable)
    for part in ("vae", "text_encoder"):
        for (name, p), q in zip(getattr(run.adapter, part).named_parameters(), getattr(fresh, part).parameters()):
            assert torch.equal(p, q), f"{part}.{name} changed"


def test_sft_lowers_its_loss_on_a_repeated_batch(tmp_path):
    config = _config(tmp_path, "seppo.method=sft", "model.trainable=full", "train.max_steps=30",
                     "train.learning_rate=0.001", "data.shuffle=false", "train.lr_warmup_steps=0")
    fixed, videos = _two_clip_annotations(tmp_path)
    config.data.kind, config.data.annotations, config.data.video_dir = "video", str(fixed), str(videos)
    before = load_adapter(config.model)
    run = train(config)
    batch = _first_batch(run)
    assert _fixed_draw_error(before, batch) > 1.2 * _fixed_draw_error(run.adapter, batch)


def _two_clip_annotations(tmp_path: Path) -> tuple[Path, Path]:
    from seppo_video.data.demo import ensure_demo_data

    root = ensure_demo_data()
    rows = (root / "annotations.csv").read_text().splitlines()
    path = tmp_path / "two.csv"
    path.write_text("\n".join(rows[:3]) + "\n")  # the header and two clips: one batch
    return path, root / "videos"


def _first_batch(run):
    from seppo_video.data import collate

    return collate([run.dataset[0], run.dataset[1]])


def _fixed_draw_error(adapter, batch) -> float:
    """Mean denoising error over 16 fixed (t, eps) draws: a measurement independent of training RNG."""
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler.from_config(adapter.scheduler_config)
    generator = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        x = adapter.encode_video(batch["pixels"])
        embeds = adapter.encode_prompt(batch["prompt"])
        total = 0.0
        for _ in range(16):
            t = torch.randint(0, 1000, (x.shape[0],), generator=generator)
            eps = torch.randn(x.shape, generator=generator)
            pred = adapter.predict(scheduler.add_noise(x, eps, t), t, embeds)
            total += (pred - eps).square().mean().item()
    return total / 16


def test_resume_reproduces_the_uninterrupted_trajectory(tmp_path):
    common = ["seppo.ref_every=2", "train.checkpoint_every=2", "train.lr_scheduler=constant"]
    train(_config(tmp_path / "straight", *common, "train.max_steps=6"))
    train(_config(tmp_path / "split", *common, "train.max_steps=3"))  # stops (and checkpoints) at step 3
    train(_config(tmp_path / "split", *common, "train.max_steps=6"), resume="latest")
    straight, split = _metrics(tmp_path / "straight"), _metrics(tmp_path / "split")
    assert [r["step"] for r in split] == list(range(1, 7))
    for a, b in zip(straight, split):
        for key in ("loss", "d_w", "d_ref", "flip_rate", "ref_index"):
            assert a[key] == b[key], (a["step"], key, a[key], b[key])


def test_sigkill_during_training_resumes_from_last_complete_checkpoint(tmp_path):
    overrides = [*FAST, f"output_dir={tmp_path}", "train.max_steps=40", "train.checkpoint_every=2",
                 "seppo.ref_every=2", "train.lr_scheduler=constant"]
    process = subprocess.Popen([sys.executable, "-m", "seppo_video.cli", "train", *overrides],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not _has_checkpoint(tmp_path, 4):
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert _has_checkpoint(tmp_path, 4), "the run never reached its second checkpoint"
    from seppo_video.checkpoint import complete_checkpoints, find_checkpoint

    resumed_from = find_checkpoint(tmp_path, "latest")
    assert resumed_from in complete_checkpoints(tmp_path)
    start = json.loads((resumed_from / "trainer_state.json").read_text())["step"]
    run = train(load_config(None, [*overrides[:-4], "train.max_steps=" + str(start + 2), "train.checkpoint_every=2",
                                   "seppo.ref_every=2", "train.lr_scheduler=constant"]), resume="latest")
    steps = [r["step"] for r in _metrics(tmp_path)]
    assert steps == list(range(1, start + 3)), steps
    assert run.adapter is not None


def _has_checkpoint(run_dir: Path, step: int) -> bool:
    root = run_dir / "checkpoints"
    return root.is_dir() and any(
        p.name.startswith("step-") and int(p.name[5:]) >= step and (p / "trainer_state.json").exists()
        for p in root.iterdir()
    )


@pytest.mark.parametrize("backbone,trainable", [
    ("animatediff", "motion"), ("animatediff", "lora"), ("animatediff", "full"),
    ("modelscope", "motion"), ("modelscope", "lora"), ("sd", "lora"), ("sd", "full"),
])
def test_export_loads_in_the_diffusers_pipeline_with_the_same_prediction(backbone, trainable, tmp_path):
    extra = [o for o in BACKBONES[backbone] if not o.startswith("model.trainable")]
    run = train(_config(tmp_path, *extra, f"model.trainable={trainable}", "seppo.method=sft", "train.max_steps=2",
                        "train.learning_rate=0.01"))
    pipe = load_pipeline(tmp_path / "export")
    expected = {"animatediff": "AnimateDiffPipeline", "modelscope": "TextToVideoSDPipeline",
                "sd": "StableDiffusionPipeline"}[backbone]
    assert type(pipe).__name__ == expected
    frames = 1 if backbone == "sd" else 4
    latents = torch.randn(1, 4, frames, 8, 8)
    embeds = run.adapter.encode_prompt(["a candle melting"])
    timestep = torch.tensor([321])
    run.adapter.unet.eval()  # the policy trained with dropout (ModelScope's temporal convs); compare deterministically
    with torch.no_grad():
        trained = run.adapter.predict(latents, timestep, embeds)
        if backbone == "sd":
            exported = pipe.unet(latents[:, :, 0], timestep, encoder_hidden_states=embeds).sample.unsqueeze(2)
        elif backbone == "animatediff":
            per_frame = embeds.repeat_interleave(frames, dim=0)
            exported = pipe.unet(latents, timestep, encoder_hidden_states=per_frame).sample
        else:
            exported = pipe.unet(latents, timestep, encoder_hidden_states=embeds).sample
        base = load_adapter(run.config.model).predict(latents, timestep, embeds)
    torch.testing.assert_close(exported, trained, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(base, trained, atol=1e-4)  # training moved it, so the match means something
    card = (tmp_path / "export" / "README.md").read_text()
    assert "method: sft" in card and "optimizer steps: 2" in card


def test_export_command_writes_from_a_checkpoint(tmp_path):
    from seppo_video.cli import main

    train(_config(tmp_path / "run", "train.max_steps=2", "train.checkpoint_every=1", "seppo.method=sft"))
    assert main(["export", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "exp")]) == 0
    assert json.loads((tmp_path / "exp" / "seppo_export.json").read_text())["steps"] == 2
    a = (tmp_path / "exp" / "motion_adapter" / "diffusion_pytorch_model.safetensors").read_bytes()
    b = (tmp_path / "run" / "export" / "motion_adapter" / "diffusion_pytorch_model.safetensors").read_bytes()
    assert a == b


def test_nonfinite_losses_are_skipped_then_stop_the_run(tmp_path, monkeypatch):
    import seppo_video.train as recipe

    real = recipe.compute_loss
    calls = {"n": 0}

    def flaky(run, batch, state):
        loss, stats, ref = real(run, batch, state)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] >= 2 else loss), stats, ref

    monkeypatch.setattr(recipe, "compute_loss", flaky)
    with pytest.raises(recipe.NonFiniteLossError, match="3 optimizer steps in a row"):
        train(_config(tmp_path, "seppo.method=sft", "train.max_steps=10", "train.max_nonfinite_in_row=3"))
    records = _metrics(tmp_path)
    assert [r["skipped"] for r in records] == [False, True, True, True]


@pytest.mark.slow
def test_two_process_run_agrees_on_references_and_weights(tmp_path, repo_root):
    overrides = [*FAST, f"output_dir={tmp_path}", "train.max_steps=4", "seppo.ref_every=1", "data.batch_size=1"]
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(repo_root / "configs" / "accelerate" / "cpu_2proc.yaml"), "-m", "seppo_video", "train", *overrides]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=os.environ.copy())
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / "ranks" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert len(ranks[0]["ref_indices"]) == 4
    assert ranks[0]["ref_indices"] == ranks[1]["ref_indices"]
    assert len(set(ranks[0]["ref_indices"])) > 1 or max(ranks[0]["ref_indices"]) > 0  # uniform over a growing pool
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]


def test_ema_weights_are_exported_and_checkpointed(tmp_path):
    from safetensors.torch import load_file

    config = _config(tmp_path, "seppo.method=sft", "train.max_steps=3", "train.learning_rate=0.01",
                     "train.ema.enabled=true", "train.ema.decay=0.5", "train.checkpoint_every=3")
    run = train(config)
    exported = load_file(str(tmp_path / "export" / "motion_adapter" / "diffusion_pytorch_model.safetensors"))
    live = dict(run.adapter.named_trainable_parameters())
    shadow = dict(zip([n for n, _ in run.adapter.named_trainable_parameters()], run.ema.shadow_params))
    name = next(n for n in live if n.endswith("proj_in.weight"))
    key = name  # MotionAdapter keys keep the UNetMotionModel names of motion modules
    assert key in exported
    torch.testing.assert_close(exported[key], shadow[name].detach())
    assert not torch.allclose(exported[key], live[name].detach())
    assert (tmp_path / "checkpoints" / "step-000003" / "ema.safetensors").is_file()


def test_a_corrupt_video_is_skipped_counted_and_summarised(tmp_path):
    fixed, videos = _two_clip_annotations(tmp_path)
    clips = tmp_path / "clips"
    clips.mkdir()
    for video in sorted(videos.glob("*.mp4")):
        (clips / video.name).symlink_to(video)
    lines = fixed.read_text().splitlines()
    (clips / "broken.mp4").write_bytes(b"\x00not a video" * 100)
    fixed.write_text("\n".join([*lines, "broken,a corrupt clip,0"]) + "\n")
    config = _config(tmp_path / "run", "seppo.method=sft", "train.max_steps=2", "data.max_bad_fraction=0.5",
                     "data.batch_size=1")
    config.data.kind, config.data.annotations, config.data.video_dir = "video", str(fixed), str(clips)
    train(config)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 2
    assert summary["data_skips"]["total"] == 3 and summary["data_skips"]["skipped"] == 1


# ------------------------------------------------------------------ training health (docs/training_health.md)

# A collapse forced on the tiny model: plain DPO against theta_0 with beta*T = 1e5 and a learning
# rate 1000x the default. Every pair saturates within a step while the policy gets worse on the winners.
COLLAPSE = ["seppo.method=ditto", "seppo.beta=100", "train.learning_rate=0.1", "train.lr_scheduler=constant"]


def _documented_rule(records: list[dict]) -> list[int]:
    """The steps where the alarm's documented condition holds, recomputed from metrics.jsonl: over the
    last COLLAPSE_WINDOW steps, mean saturated share >= COLLAPSE_SATURATED and d_w_rel > 0 at every step."""
    from seppo_video.seppo.health import COLLAPSE_SATURATED, COLLAPSE_WINDOW

    steps = []
    for end in range(COLLAPSE_WINDOW, len(records) + 1):
        window = records[end - COLLAPSE_WINDOW:end]
        if (sum(r["saturated"] for r in window) / COLLAPSE_WINDOW >= COLLAPSE_SATURATED
                and all(r["d_w_rel"] > 0 for r in window)):
            steps.append(window[-1]["step"])
    return steps


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_a_forced_collapse_warns_once_and_the_run_goes_on(tmp_path, capsys):
    train(_config(tmp_path, *COLLAPSE, "train.max_steps=12"))
    records, summary = _metrics(tmp_path), _summary(tmp_path)
    rule = _documented_rule(records)
    assert rule, "the forced setting no longer collapses; the test needs a harsher one"
    assert summary["collapse_alarm"]["step"] == rule[0] and summary["steps"] == 12
    assert not summary["stopped_on_collapse"]
    assert capsys.readouterr().out.count("collapse alarm at step") == 1
    fired = records[rule[0] - 1]
    assert fired["saturated"] > 0 and fired["d_w_rel"] > 0


def test_stop_on_collapse_ends_with_a_checkpoint_and_the_run_resumes(tmp_path, capsys):
    settings = [*COLLAPSE, "train.max_steps=12", "train.stop_on_collapse=true"]
    train(_config(tmp_path, *settings))
    records, summary = _metrics(tmp_path), _summary(tmp_path)
    stop = summary["collapse_alarm"]["step"]
    assert summary["stopped_on_collapse"] and summary["steps"] == stop < 12
    assert records[-1]["step"] == stop and _documented_rule(records) == [stop]
    assert _has_checkpoint(tmp_path, stop)
    assert json.loads((tmp_path / "export" / "seppo_export.json").read_text())["steps"] == stop
    assert capsys.readouterr().out.count("collapse alarm at step") == 1
    train(_config(tmp_path, *settings), resume="latest")  # the alarm fired once for this run: it goes on
    resumed = _summary(tmp_path)
    assert resumed["steps"] == 12 and resumed["collapse_alarm"]["step"] == stop
    assert not resumed["stopped_on_collapse"]
    assert "collapse alarm at step" not in capsys.readouterr().out


def test_the_tiny_default_saturates_without_collapse(tmp_path, capsys):
    """SePPO at the default beta*T = 2500 saturates pairs on the tiny model, but the policy fits the
    winners better than the reference (d_w < 0): learning, so the alarm stays quiet."""
    train(_config(tmp_path, "train.max_steps=10"))
    records, summary = _metrics(tmp_path), _summary(tmp_path)
    assert max(r["saturated"] for r in records) > 0
    assert sum(r["d_w_rel"] < 0 for r in records) > len(records) / 2
    assert _documented_rule(records) == [] and summary["collapse_alarm"] is None
    assert "collapse alarm" not in capsys.readouterr().out


@pytest.mark.parametrize("method", ["seppo", "dpo", "spin", "ditto"])
def test_sft_weight_adds_to_every_preference_method(method, tmp_path):
    import seppo_video.train as recipe
    from seppo_video.checkpoint import TrainerState
    from seppo_video.data import collate

    run = recipe.setup(_config(tmp_path, f"seppo.method={method}", "train.policy_dropout=false",
                               "seppo.sft_weight=0.25"))
    run.pool.add(0, run.adapter.trainable_state())
    batch = collate([run.dataset[0], run.dataset[1]])
    regularised, stats, _ = recipe.compute_loss(run, batch, TrainerState())
    run.config.seppo.sft_weight = 0.0
    plain, _, _ = recipe.compute_loss(run, batch, TrainerState())  # the same draws: keyed by the state
    assert stats["err_w"] > 0
    assert (regularised - plain).item() == pytest.approx(0.25 * stats["err_w"], rel=1e-5)


def test_health_figures_reach_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(_config(tmp_path, "train.max_steps=2", "train.log_with=tensorboard"))
    events = EventAccumulator(str(next((tmp_path / "logs").rglob("events.out.tfevents.*")).parent))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"d_w_rel", "d_ref_rel", "inside_abs", "inside_std", "saturated", "err_w"} <= tags
    logged = [event.value for event in events.Scalars("err_w")]
    assert logged == pytest.approx([record["err_w"] for record in _metrics(tmp_path)], rel=1e-6)


def test_a_resumed_run_watches_the_same_window(tmp_path):
    """The alarm's window is checkpointed: interrupted before the alarm, the resumed run fires it at the
    step the uninterrupted one does."""
    settings = [*COLLAPSE, "train.checkpoint_every=4"]
    train(_config(tmp_path / "straight", *settings, "train.max_steps=8"))
    train(_config(tmp_path / "split", *settings, "train.max_steps=4"))
    assert _summary(tmp_path / "split")["collapse_alarm"] is None
    train(_config(tmp_path / "split", *settings, "train.max_steps=8"), resume="latest")
    straight = _summary(tmp_path / "straight")["collapse_alarm"]
    assert straight is not None and straight["step"] > 4  # the window spans the interruption
    assert _summary(tmp_path / "split")["collapse_alarm"] == pytest.approx(straight)
