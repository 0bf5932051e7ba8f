"""Sampling videos from a base model or an export, and writing them as mp4 / gif."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seppo_video.data.video import write_video

# A run's samples of the model it started from, beside its own ``samples/`` (runs on the synthetic
# world write both; the viewer shows them side by side).
BASE_SAMPLES = "base_samples"


@dataclass
class SampleSettings:
    num_frames: int = 8
    height: int = 64
    width: int = 64
    num_inference_steps: int = 20
    guidance_scale: float = 7.5
    fps: int = 8


def pipeline_kind(pipe: Any) -> str:
    """``animatediff`` / ``modelscope`` / ``sd`` / ``wan`` / ``cogvideox`` / ``ltx`` for a diffusers pipeline object."""
    from seppo_video.models.adapters import ADAPTERS

    name = type(pipe).__name__
    return next((kind for kind, cls in ADAPTERS.items() if cls.pipeline_class_name == name), "sd")


@torch.no_grad()
def sample_video(pipe: Any, prompt: str, seed: int, settings: SampleSettings, callback=None) -> np.ndarray:
    """One video as ``uint8 [F, H, W, 3]`` (an image is a one-frame video).

    ``callback(step, total)`` is called after each denoising step (progress bars).
    """
    generator = torch.Generator(device="cpu").manual_seed(seed)
    kwargs: dict[str, Any] = dict(
        prompt=prompt,
        height=settings.height,
        width=settings.width,
        num_inference_steps=settings.num_inference_steps,
        guidance_scale=settings.guidance_scale,
        generator=generator,
        output_type="np",
    )
    if callback is not None:
        total = settings.num_inference_steps

        def on_step_end(_pipe, step, _t, tensors):
            callback(step + 1, total)
            return tensors

        kwargs["callback_on_step_end"] = on_step_end
    kind = pipeline_kind(pipe)
    if kind != "sd":
        kwargs["num_frames"] = settings.num_frames
    output = pipe(**kwargs)
    frames = np.asarray(output.frames[0] if kind != "sd" else output.images[:1])
    return (np.clip(frames, 0.0, 1.0) * 255).round().astype(np.uint8)


def prompt_slug(prompt: str, max_len: int = 60) -> str:
    """A file-system-safe folder name for a prompt."""
    slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")
    return slug[:max_len] or "empty"


def sample_to_folder(
    model: str | Path,
    prompts: list[str],
    seeds: list[int],
    settings: SampleSettings,
    out: str | Path,
    gif: bool = False,
    device: str | None = None,
    pipe: Any = None,
) -> list[dict[str, Any]]:
    """Sample every (prompt, seed) into ``out/<prompt-slug>/seed<k>.mp4`` and write ``out/index.json``.

    Existing files are kept (re-running resumes). Returns the index records.
    """
    from tqdm.auto import tqdm

    from seppo_video.atomic import atomic_write_json
    from seppo_video.export import load_pipeline

    out = Path(out)
    records = []
    jobs = [(p, s) for p in prompts for s in seeds]
    for prompt, seed in tqdm(jobs, desc="sampling", unit="video"):
        relative = Path(prompt_slug(prompt)) / f"seed{seed}.mp4"
        record = {"prompt": prompt, "seed": seed, "mp4": str(relative)}
        if gif:
            record["gif"] = str(relative.with_suffix(".gif"))
        if not (out / relative).exists() or (gif and not (out / record["gif"]).exists()):
            if pipe is None:
                pipe = load_pipeline(model)
                pipe.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
            frames = sample_video(pipe, prompt, seed, settings)
            write_video(frames, out / relative, settings.fps)
            if gif:
                write_video(frames, out / record["gif"], settings.fps)
        records.append(record)
    atomic_write_json(out / "index.json", {"model": str(model), "settings": vars(settings), "videos": records})
    return records
