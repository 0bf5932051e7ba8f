"""What real checkpoints need from the trainer: an exact theta_0, the backbone's own noise
schedule and prediction type, deterministic references, one export rule, cycle-mean logging,
and clear refusals of what cannot work (sharded parameters, a wrong timestep count)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from seppo_video.config import ConfigError, load_config
from seppo_video.train import train

FAST = [
    "data.num_frames=4", "data.resolution=32", "data.batch_size=2", "seppo.ref_sample_steps=2",
    "seppo.ref_every=1", "train.log_with=none", "train.checkpoint_every=1000", "sample.prompts=[]",
]


def _config(tmp_path: Path, *extra: str):
    return load_config(None, [*FAST, f"output_dir={tmp_path}", *extra])


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _tiny_variant(tmp_path: Path, kind: str, **scheduler: object) -> Path:
    """A copy of the tiny ``kind`` model whose scheduler_config.json says ``scheduler``."""
    from seppo_video.models.tiny import ensure_tiny

    root = tmp_path / f"{kind}-variant"
    shutil.copytree(ensure_tiny(kind), root)
    config_file = root / ("sd" if kind == "animatediff" else ".") / "scheduler" / "scheduler_config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), **scheduler}))
    return root


# ------------------------------------------------------------------ 1. theta_0 is exact


@pytest.mark.parametrize("storage", ["cpu", "disk"])
@pytest.mark.parametrize("pool_dtype", ["float32", "float16", "bfloat16"])
def test_step_one_against_theta0_is_log2_for_every_pool_dtype(pool_dtype, storage, tmp_path):
    """At step 1 the policy is theta_0, so both error differences are 0 and the loss is log 2."""
    train(_config(tmp_path, "train.max_steps=1", f"seppo.pool_dtype={pool_dtype}", f"seppo.pool_device={storage}"))
    (first,) = _metrics(tmp_path)
    assert first["ref_index"] == 0
    assert first["d_w"] == 0.0 and first["d_ref"] == 0.0
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-7)


@pytest.fixture
def fresh_accelerator_state():
    """accelerate keeps one process-wide state; a different mixed precision needs it reset (and reset back)."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_step_one_is_log2_under_bf16_autocast_too(tmp_path, fresh_accelerator_state):
    train(_config(tmp_path, "train.max_steps=1", "seppo.pool_dtype=bfloat16", "train.mixed_precision=bf16"))
    (first,) = _metrics(tmp_path)
    assert first["d_w"] == 0.0 and first["d_ref"] == 0.0
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-7)


# ------------------------------------------------------------------ 2. the backbone's noise schedule


def _betas(schedule: str) -> torch.Tensor:
    # Recomputed from the definitions, independently of diffusers.
    if schedule == "linear":
        return torch.linspace(0.00085, 0.012, 1000, dtype=torch.float32)
    return torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float32) ** 2


def test_animatediff_trains_samples_and_exports_with_its_linear_schedule(tmp_path):
    from diffusers import DDIMScheduler

    from seppo_video.export import load_pipeline

    run = train(_config(tmp_path, "train.max_steps=1", "seppo.method=sft"))
    torch.testing.assert_close(run.noise.scheduler.betas, _betas("linear"))
    exported = DDIMScheduler.from_pretrained(tmp_path / "export" / "scheduler")
    torch.testing.assert_close(exported.betas, _betas("linear"))
    assert exported.config.clip_sample is False
    assert "noise schedule: linear betas, prediction type epsilon" in (tmp_path / "export" / "README.md").read_text()
    torch.testing.assert_close(load_pipeline(tmp_path / "export").scheduler.betas, _betas("linear"))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["prediction_type"] == "epsilon" and summary["noise_schedule"]["beta_schedule"] == "linear"


@pytest.mark.parametrize("kind,expected", [("modelscope", "scaled_linear"), ("sd", "scaled_linear")])
def test_other_backbones_keep_their_folder_schedule(kind, expected, tmp_path):
    frames = "data.num_frames=1" if kind == "sd" else "data.num_frames=4"
    trainable = "model.trainable=lora" if kind == "sd" else "model.trainable=motion"
    run = train(_config(tmp_path, f"model.kind={kind}", trainable, frames, "train.max_steps=1", "seppo.method=sft"))
    torch.testing.assert_close(run.noise.scheduler.betas, _betas(expected))


def test_the_schedule_can_be_set_in_the_config(tmp_path):
    run = train(_config(tmp_path, "train.max_steps=1", "seppo.method=sft",
                        "model.noise_scheduler.beta_schedule=scaled_linear"))
    torch.testing.assert_close(run.noise.scheduler.betas, _betas("scaled_linear"))


# ------------------------------------------------------------------ 3. prediction type


def test_v_prediction_model_trains_toward_v_and_says_so(tmp_path):
    """SFT on a v-prediction SD model: the loss is the error against v = sqrt(abar) eps - sqrt(1 - abar) x0,
    recomputed here from the betas with the trainer's own (t, eps) draw."""
    import seppo_video.train as recipe

    model = _tiny_variant(tmp_path, "sd", prediction_type="v_prediction")
    config = _config(tmp_path / "run", "model.kind=sd", "model.trainable=lora", "data.num_frames=1",
                     f"model.pretrained={model}", "seppo.method=sft", "train.max_steps=1")
    run = recipe.setup(config)
    batch = _first_batch(run)
    state = recipe.TrainerState()
    with torch.no_grad():
        loss, _, _ = recipe.compute_loss(run, batch, state)
        x0 = run.adapter.encode_video(batch["pixels"]).float()
        embeds = run.adapter.encode_prompt(batch["prompt"]).float()
        generator = recipe._batch_generator(config.seed, 0, 0)
        t = torch.randint(0, 1000, (x0.shape[0],), generator=generator)
        eps = torch.randn(x0.shape, generator=generator)
        abar = torch.cumprod(1 - _betas("scaled_linear").double(), 0)[t].view(-1, 1, 1, 1, 1)
        noisy = (abar.sqrt() * x0 + (1 - abar).sqrt() * eps).float()
        v = (abar.sqrt() * eps - (1 - abar).sqrt() * x0).float()
        output = run.unet(noisy[:, :, 0], t, encoder_hidden_states=embeds).sample
        by_hand_v = (output - v[:, :, 0]).pow(2).mean()
        by_hand_eps = (output - eps[:, :, 0]).pow(2).mean()
    torch.testing.assert_close(loss, by_hand_v, rtol=1e-4, atol=1e-6)
    assert not torch.isclose(loss, by_hand_eps, rtol=1e-3)


def _first_batch(run):
    from seppo_video.data import collate

    return collate([run.dataset[0], run.dataset[1]])


def test_summary_names_the_prediction_type(tmp_path):
    model = _tiny_variant(tmp_path, "sd", prediction_type="v_prediction")
    train(_config(tmp_path / "run", "model.kind=sd", "model.trainable=lora", "data.num_frames=1",
                  f"model.pretrained={model}", "train.max_steps=1"))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["prediction_type"] == "v_prediction"
    assert json.loads((tmp_path / "run" / "export" / "scheduler" / "scheduler_config.json").read_text())[
        "prediction_type"] == "v_prediction"


@pytest.mark.parametrize("case", ["unknown prediction type", "timestep count"])
def test_schedule_mismatches_are_refused_before_the_model_loads(case, tmp_path, monkeypatch):
    import seppo_video.train as recipe

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the setup was checked")

    monkeypatch.setattr(recipe, "load_adapter", refuse)
    if case == "unknown prediction type":
        model = _tiny_variant(tmp_path, "sd", prediction_type="flow_prediction")
        overrides, match = [f"model.pretrained={model}"], "prediction_type: .*'flow_prediction'"
    else:
        model = _tiny_variant(tmp_path, "sd")
        overrides, match = [f"model.pretrained={model}", "seppo.num_train_timesteps=500"], \
            "seppo.num_train_timesteps: 500, but the model's scheduler was trained with 1000"
    config = _config(tmp_path / "run", "model.kind=sd", "model.trainable=lora", "data.num_frames=1", *overrides)
    with pytest.raises(ConfigError, match=match):
        recipe.setup(config)


def test_unknown_prediction_type_in_the_config_names_the_key():
    with pytest.raises(ConfigError, match="model.noise_scheduler.prediction_type: 'flow' is not allowed"):
        load_config(None, ["model.noise_scheduler.prediction_type=flow"])


# ------------------------------------------------------------------ 4. ModelScope gradient checkpointing


def test_modelscope_gradient_checkpointing_gives_the_same_gradients_and_recomputes():
    from seppo_video.config import ModelConfig
    from seppo_video.models.adapters import load_adapter

    def gradients(checkpointing: bool) -> tuple[dict[str, torch.Tensor], int]:
        torch.manual_seed(0)
        adapter = load_adapter(ModelConfig(kind="modelscope", trainable="motion", gradient_checkpointing=checkpointing))
        adapter.unet.train()
        calls = {"n": 0}
        inner = adapter.unet.down_blocks[0].resnets[0]  # the recomputation calls the block's own forward
        inner.register_forward_pre_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
        latents, embeds = torch.randn(2, 4, 3, 8, 8), adapter.encode_prompt(["a", "b"])
        torch.manual_seed(1)  # the same dropout masks in both runs
        adapter.predict(latents, torch.tensor([10, 900]), embeds).square().mean().backward()
        return {n: p.grad.clone() for n, p in adapter.named_trainable_parameters()}, calls["n"]

    plain, plain_calls = gradients(False)
    checkpointed, checkpointed_calls = gradients(True)
    assert plain_calls == 1 and checkpointed_calls == 2  # forward, then the recomputation in backward
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-5, atol=1e-7, msg=name)


def test_shipped_modelscope_config_settings_train_on_the_tiny_model(tmp_path):
    run = train(_config(tmp_path, "model.kind=modelscope", "model.gradient_checkpointing=true",
                        "seppo.pool_dtype=bfloat16", "train.max_steps=2"))
    assert [r["step"] for r in _metrics(tmp_path)] == [1, 2]
    assert run.adapter.unet.down_blocks[0].seppo_checkpointed


# ------------------------------------------------------------------ 5. train / eval mode


@pytest.mark.parametrize("dropout", [True, False])
def test_the_policy_trains_in_the_configured_mode(dropout, tmp_path):
    run = train(_config(tmp_path, "model.kind=modelscope", f"train.policy_dropout={str(dropout).lower()}",
                        "train.max_steps=1"))
    assert {module.training for module in run.adapter.unet.modules()} == {dropout}


def test_modelscope_step_one_is_log2_with_a_deterministic_policy(tmp_path):
    train(_config(tmp_path, "model.kind=modelscope", "train.policy_dropout=false", "train.max_steps=1"))
    (first,) = _metrics(tmp_path)
    assert first["d_w"] == 0.0 and first["loss"] == pytest.approx(math.log(2), abs=1e-7)


# ------------------------------------------------------------------ 6. one export rule


def test_export_command_and_end_of_run_export_hold_the_same_ema_weights(tmp_path):
    from seppo_video.cli import main

    train(_config(tmp_path / "run", "train.max_steps=3", "train.checkpoint_every=3", "seppo.method=sft",
                  "train.ema.enabled=true", "train.ema.decay=0.5", "train.learning_rate=0.01"))
    assert main(["export", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "exp")]) == 0
    weights = "motion_adapter/diffusion_pytorch_model.safetensors"
    assert (tmp_path / "exp" / weights).read_bytes() == (tmp_path / "run" / "export" / weights).read_bytes()
    for folder in (tmp_path / "exp", tmp_path / "run" / "export"):
        assert "weights: the EMA of the policy" in (folder / "README.md").read_text()
        assert json.loads((folder / "seppo_export.json").read_text())["weights"] == "ema"


# ------------------------------------------------------------------ 7. sharded parameters


@pytest.mark.parametrize("case", ["fsdp", "zero3"])
def test_sharded_parameter_modes_are_refused(case):
    from accelerate.utils import DistributedType

    from seppo_video.train import refuse_sharded_parameters

    state = {
        "fsdp": SimpleNamespace(distributed_type=DistributedType.FSDP, deepspeed_plugin=None),
        "zero3": SimpleNamespace(distributed_type=DistributedType.DEEPSPEED,
                                 deepspeed_plugin=SimpleNamespace(zero_stage=3)),
    }[case]
    with pytest.raises(ConfigError, match="FSDP" if case == "fsdp" else "ZeRO stage 3"):
        refuse_sharded_parameters(state)
    refuse_sharded_parameters(SimpleNamespace(distributed_type=DistributedType.DEEPSPEED,
                                              deepspeed_plugin=SimpleNamespace(zero_stage=2)))
    refuse_sharded_parameters(SimpleNamespace(distributed_type=DistributedType.MULTI_GPU, deepspeed_plugin=None))


# ------------------------------------------------------------------ 8. what a step's record means


def test_logged_loss_and_statistics_are_the_mean_over_the_accumulation_cycle(tmp_path, monkeypatch):
    import seppo_video.train as recipe

    real, seen = recipe.compute_loss, []

    def recording(run, batch, state):
        loss, stats, ref = real(run, batch, state)
        seen.append((loss.item(), dict(stats)))
        return loss, stats, ref

    monkeypatch.setattr(recipe, "compute_loss", recording)
    train(_config(tmp_path, "train.max_steps=2", "train.gradient_accumulation_steps=3", "data.batch_size=1"))
    records = _metrics(tmp_path)
    assert len(seen) == 6 and [r["step"] for r in records] == [1, 2]
    for record, cycle in zip(records, (seen[:3], seen[3:])):
        assert record["loss"] == pytest.approx(sum(loss for loss, _ in cycle) / 3, rel=1e-6)
        assert set(seen[0][1]) >= {"d_w_rel", "d_ref_rel", "inside_abs", "inside_std", "saturated", "err_w"}
        for key in seen[0][1]:  # every statistic, the training-health figures included
            assert record[key] == pytest.approx(sum(stats[key] for _, stats in cycle) / 3, rel=1e-6, abs=1e-12)
