"""Sampling videos from a base model or an export, and writing them as mp4 / gif."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch


@dataclass
class SampleSettings:
    num_frames: int = 8
    height: int = 64
    width: int = 64
    num_inference_steps: int = 20
    guidance_scale: float = 7.5
    fps: int = 8


def pipeline_kind(pipe: Any) -> str:
    """``animatediff`` / ``modelscope`` / ``sd`` for a diffusers pipeline object."""
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


def write_video(frames: np.ndarray, path: str | Path, fps: int = 8) -> Path:
    """Write ``uint8 [F, H, W, 3]`` as mp4 (H.264 via imageio-ffmpeg) or gif, by suffix."""
    import imageio.v2 as imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    if path.suffix == ".gif":
        imageio.mimsave(tmp, list(frames), duration=1000 / fps, loop=0)
    elif path.suffix == ".mp4":
        _write_mp4(tmp, frames, fps)
    else:
        raise ValueError(f"{path}: unsupported video suffix (use .mp4 or .gif)")
    tmp.replace(path)
    return path


def _write_mp4(path: Path, frames: np.ndarray, fps: int) -> None:
    import imageio.v2 as imageio

    # yuv420p needs even sizes; browsers play H.264 yuv420p everywhere.
    height, width = frames.shape[1:3]
    frames = frames[:, : height - height % 2, : width - width % 2]
    with imageio.get_writer(
        path, format="FFMPEG", mode="I", fps=fps, codec="libx264", macro_block_size=1,
        pixelformat="yuv420p", output_params=["-movflags", "+faststart"],
    ) as writer:
        for frame in frames:
            writer.append_data(frame)


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
