"""Each shipped real config, run on random-init models with the published shapes.

The real configs (`configs/animatediff_chronomagic.yaml`, `modelscope_chronomagic.yaml`,
`sd15_pickapic.yaml`) with only their paths pointed at the real-shape models
(`seppo-video make-tiny --shape real`) and the demo clips, at a small resolution and frame
count: setup, one step and a checkpoint, a resume for the second step, the export, and the
export loaded with the diffusers pipeline itself, whose UNet gives the trained policy's output.
Everything else (trainable part, LoRA rank, pool dtype, gradient checkpointing, reference
sampler and guidance, learning rate) is the shipped config's.
"""

from __future__ import annotations

import gc
import json
import shutil
from pathlib import Path

import pytest
import torch

from seppo_video.config import load_config
from seppo_video.train import train

pytestmark = [pytest.mark.slow, pytest.mark.real_shape]

REPO = Path(__file__).resolve().parents[1]
# (shipped config, real-shape kind and variant, frames, prediction type)
RUNS = {
    "animatediff-v1-5-2": ("animatediff_chronomagic.yaml", "animatediff", "v1-5-2", 4, "epsilon"),
    "animatediff-v3": ("animatediff_chronomagic.yaml", "animatediff", "v3", 4, "epsilon"),
    "modelscope-1.7b": ("modelscope_chronomagic.yaml", "modelscope", "ms-1.7b", 4, "epsilon"),
    "sd15": ("sd15_pickapic.yaml", "sd", "sd15", 1, "epsilon"),
    "sd21-v": ("sd15_pickapic.yaml", "sd", "sd21-v", 1, "v_prediction"),
}


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
        f"output_dir={out}", f"train.max_steps={steps}", "train.checkpoint_every=1", "train.gradient_accumulation_steps=1",
        "train.mixed_precision=no", "train.log_with=none", "seppo.ref_sample_steps=2", "sample.prompts=[]",
    ]


def _load_export_with_diffusers(kind: str, model: Path, export: Path):
    """The export as a user loads it: the diffusers pipeline classes, the export's scheduler."""
    import diffusers

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


@pytest.mark.parametrize("name", list(RUNS))
def test_shipped_config_runs_on_the_real_shapes(name, run_dir):
    from seppo_video.models.real import ensure_real_shape

    config_file, kind, variant, frames, prediction_type = RUNS[name]
    model = ensure_real_shape(kind, variant)
    shipped = REPO / "configs" / config_file
    out = run_dir
    train(load_config(shipped, _overrides(kind, model, frames, out, steps=1)))
    gc.collect()
    run = train(load_config(shipped, _overrides(kind, model, frames, out, steps=2)), resume="latest")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["prediction_type"] == prediction_type
    expected_schedule = "linear" if kind == "animatediff" else "scaled_linear"
    assert summary["noise_schedule"]["beta_schedule"] == expected_schedule

    pipe = _load_export_with_diffusers(kind, model, out / "export")
    assert pipe.scheduler.config.prediction_type == prediction_type
    assert pipe.scheduler.config.beta_schedule == expected_schedule
    torch.manual_seed(0)
    latents = torch.randn(1, 4, frames, 8, 8)
    timestep = torch.tensor([500])
    run.adapter.unet.eval()
    with torch.no_grad():
        embeds = run.adapter.encode_prompt(["Time-lapse of a flower blooming"])
        trained = run.adapter.predict(latents, timestep, embeds)
        exported = _pipeline_unet_output(kind, pipe, latents, timestep, embeds)
    torch.testing.assert_close(exported, trained, rtol=1e-3, atol=1e-4)
