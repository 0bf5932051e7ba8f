"""Each shipped real config, run on random-init models with the published shapes.

The real configs (`configs/animatediff_chronomagic.yaml`, `modelscope_chronomagic.yaml`,
`sd15_pickapic.yaml`, `wan_chronomagic.yaml`, `cogvideox_chronomagic.yaml`, `ltx_chronomagic.yaml`)
with only their paths pointed at the real-shape models
(`seppo-video make-tiny --shape real`) and the demo clips, at a small resolution and frame
count, each run a `seppo-video train` process: setup, one step and a checkpoint, a resume for
the second step, the export, and the export loaded with the diffusers pipeline itself, whose
UNet (or transformer) gives the output of the policy rebuilt from the last checkpoint.
Everything else (trainable part, LoRA rank, pool dtype, gradient checkpointing, reference
sampler and guidance, learning rate) is the shipped config's.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seppo_video.config import load_config

pytestmark = [pytest.mark.slow, pytest.mark.real_shape]

REPO = Path(__file__).resolve().parents[1]
# (shipped config, real-shape kind and variant, frames, prediction type)
RUNS = {
    "wan-t2v-1.3b": ("wan_chronomagic.yaml", "wan", "t2v-1.3b", 5, "flow_prediction"),
    "cogvideox-2b": ("cogvideox_chronomagic.yaml", "cogvideox", "2b", 5, "v_prediction"),
    "ltx-0.9.0": ("ltx_chronomagic.yaml", "ltx", "0.9.0", 9, "flow_prediction"),
    "animatediff-v1-5-2": ("animatediff_chronomagic.yaml", "animatediff", "v1-5-2", 4, "epsilon"),
    "animatediff-v3": ("animatediff_chronomagic.yaml", "animatediff", "v3", 4, "epsilon"),
    "modelscope-1.7b": ("modelscope_chronomagic.yaml", "modelscope", "ms-1.7b", 4, "epsilon"),
    "sd15": ("sd15_pickapic.yaml", "sd", "sd15", 1, "epsilon"),
    "sd21-v": ("sd15_pickapic.yaml", "sd", "sd21-v", 1, "v_prediction"),
}

# What summary.json and the export's scheduler say of the schedule (other kinds: scaled-linear betas).
SCHEDULES = {"animatediff": {"beta_schedule": "linear"}, "wan": {"shift": 3.0},
             "cogvideox": {"snr_shift_scale": 3.0, "rescale_betas_zero_snr": True},
             "ltx": {"use_dynamic_shifting": True, "base_shift": 0.95, "max_shift": 2.05}}
# The exported scheduler's class and the pipeline that loads the base with it and the export's LoRA.
TRANSFORMER_PIPELINES = {"wan": ("FlowMatchEulerDiscreteScheduler", "WanPipeline"),
                         "cogvideox": ("CogVideoXDDIMScheduler", "CogVideoXPipeline"),
                         "ltx": ("FlowMatchEulerDiscreteScheduler", "LTXPipeline")}


def _overrides(kind: str, model: Path, frames: int, out: Path, steps: int) -> list[str]:
    from seppo_video.data.demo import ensure_demo_data

    demo = ensure_demo_data()
    paths = [f"model.pretrained={model / 'sd'}", f"model.motion_adapter={model / 'motion_adapter'}"] \
        if kind == "animatediff" else [f"model.pretrained={model}"]
    data = ["data.kind=image", f"data.annotations={demo / 'pickapic.jsonl'}"] if kind == "sd" else \
        ["data.kind=video", f"data.annotations={demo / 'annotations.csv'}", f"data.video_dir={demo / 'videos'}"]
    return [
        *paths, *data, "data.latent_cache=null", f"data.num_frames={frames}", "data.resolution=64",
        "data.batch_size=1", "data.num_workers=0", "data.max_bad_fraction=0.5",
        # one checkpoint kept: a ModelScope one (motion modules, Adam's moments, theta_0) is 8.7 GB
        f"output_dir={out}", f"train.max_steps={steps}", "train.checkpoint_every=1", "train.checkpoints_keep=1",
        "train.gradient_accumulation_steps=1",
        "train.mixed_precision=no", "train.log_with=none", "seppo.ref_sample_steps=2", "sample.prompts=[]",
    ]


def _load_export_with_diffusers(kind: str, model: Path, export: Path):
    """The export as a user loads it: the diffusers pipeline classes, the export's scheduler."""
    import diffusers

    if kind in TRANSFORMER_PIPELINES:
        scheduler_class, pipeline_class = (getattr(diffusers, name) for name in TRANSFORMER_PIPELINES[kind])
        pipe = pipeline_class.from_pretrained(model, scheduler=scheduler_class.from_pretrained(export / "scheduler"))
        pipe.load_lora_weights(export / "lora")
        return pipe
    scheduler = diffusers.DDIMScheduler.from_pretrained(export / "scheduler")
    if kind == "animatediff":
        adapter = diffusers.MotionAdapter.from_pretrained(export / "motion_adapter")
        return diffusers.AnimateDiffPipeline.from_pretrained(model / "sd", motion_adapter=adapter, scheduler=scheduler)
    if kind == "modelscope":
        unet = diffusers.UNet3DConditionModel.from_pretrained(export / "unet")
        return diffusers.TextToVideoSDPipeline.from_pretrained(model, unet=unet, scheduler=scheduler)
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(model, scheduler=scheduler, safety_checker=None,
                                                             requires_safety_checker=False)
    pipe.load_lora_weights(export / "lora")
    return pipe


def _pipeline_unet_output(kind: str, pipe, latents, timestep, embeds):
    """The loaded pipeline's denoiser called the way its pipeline calls it, on ``[B, C, F, H, W]`` latents."""
    if kind == "cogvideox":  # frames first
        return pipe.transformer(hidden_states=latents.transpose(1, 2), timestep=timestep,
                                encoder_hidden_states=embeds).sample.transpose(1, 2)
    if kind == "ltx":  # packed tokens; the zeroed padded text rows are the mask; RoPE scaled by the frame rate 25
        frames, height, width = latents.shape[2:]
        packed = pipe.transformer(hidden_states=latents.flatten(2).transpose(1, 2), timestep=timestep,
                                  encoder_hidden_states=embeds, encoder_attention_mask=(embeds != 0).any(-1),
                                  num_frames=frames, height=height, width=width,
                                  rope_interpolation_scale=(pipe.vae_temporal_compression_ratio / 25,
                                                            pipe.vae_spatial_compression_ratio,
                                                            pipe.vae_spatial_compression_ratio)).sample
        return packed.transpose(1, 2).reshape(latents.shape)
    if kind == "wan":
        return pipe.transformer(hidden_states=latents, timestep=timestep, encoder_hidden_states=embeds).sample
    if kind == "sd":
        return pipe.unet(latents[:, :, 0], timestep, encoder_hidden_states=embeds).sample.unsqueeze(2)
    if kind == "animatediff":
        return pipe.unet(latents, timestep, encoder_hidden_states=embeds.repeat_interleave(latents.shape[2], 0)).sample
    return pipe.unet(latents, timestep, encoder_hidden_states=embeds).sample


@pytest.fixture
def run_dir(tmp_path):
    """The run folder, removed afterwards: checkpoints and exports of real shapes are gigabytes."""
    yield tmp_path / "run"
    shutil.rmtree(tmp_path / "run", ignore_errors=True)


def _train_in_a_process(shipped: Path, overrides: list[str], resume: bool) -> None:
    """``seppo-video train`` as a user runs it; a process per run also returns its memory."""
    command = [sys.executable, "-m", "seppo_video", "train", "--config", str(shipped), *overrides]
    result = subprocess.run([*command, *(["--resume", "latest"] if resume else [])], capture_output=True, text=True,
                            timeout=1800, env=os.environ.copy())
    assert result.returncode == 0, result.stderr[-4000:]


@pytest.mark.parametrize("name", list(RUNS))
def test_shipped_config_runs_on_the_real_shapes(name, run_dir, real_shape_model):
    from seppo_video.checkpoint import find_checkpoint, read_trainable
    from seppo_video.models.adapters import latent_shape, load_adapter

    config_file, kind, variant, frames, prediction_type = RUNS[name]
    model = real_shape_model(kind, variant)
    shipped = REPO / "configs" / config_file
    _train_in_a_process(shipped, _overrides(kind, model, frames, run_dir, steps=1), resume=False)
    _train_in_a_process(shipped, _overrides(kind, model, frames, run_dir, steps=2), resume=True)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["prediction_type"] == prediction_type
    schedule = SCHEDULES.get(kind, {"beta_schedule": "scaled_linear"})
    assert {key: summary["noise_schedule"][key] for key in schedule} == schedule

    # The policy of the last checkpoint, rebuilt from the base model and its trainable tensors ...
    config = load_config(shipped, _overrides(kind, model, frames, run_dir, steps=2))
    policy = load_adapter(config.model)
    channels, latent_frames, height, width = latent_shape(config.model, frames, 64)
    _, unexpected = policy.unet.load_state_dict(read_trainable(find_checkpoint(run_dir, "latest")), strict=False)
    assert not unexpected
    policy.unet.eval()
    torch.manual_seed(0)
    latents = torch.randn(1, channels, latent_frames, height, width)
    timestep = torch.tensor([500])
    with torch.no_grad():
        embeds = policy.encode_prompt(["Time-lapse of a flower blooming"])
        trained = policy.predict(latents, timestep, embeds)
    del policy
    gc.collect()
    # ... equals the export loaded with the diffusers pipeline classes and the export's scheduler.
    pipe = _load_export_with_diffusers(kind, model, run_dir / "export")
    assert {key: pipe.scheduler.config[key] for key in schedule} == schedule
    if prediction_type != "flow_prediction":  # FlowMatchEulerDiscreteScheduler has no prediction_type: velocity
        assert pipe.scheduler.config.prediction_type == prediction_type
    with torch.no_grad():
        exported = _pipeline_unet_output(kind, pipe, latents, timestep, embeds)
    torch.testing.assert_close(exported, trained, rtol=1e-3, atol=1e-4)
