"""Sampling the benchmark's videos: one set per seed, ``<root>/<model>/<k>/<videoid>.mp4``.

Every video of set ``k`` is sampled with ``seeds[k-1]`` (a fresh generator
per video), so any single video can be regenerated on its own and an
interrupted run resumes by skipping the files that exist. ``generation.json``
beside the sets records the model and settings; resuming with different ones
is refused, because a set mixing two settings is not one sample of either.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from seppo_video.atomic import atomic_write_json
from seppo_video.evaluation.errors import EvalError
from seppo_video.evaluation.layout import video_path
from seppo_video.evaluation.prompts import BenchPrompt
from seppo_video.sample import SampleSettings, pipeline_kind, sample_video, write_video

GENERATION_FILE = "generation.json"
BACKBONE_NAMES = {"animatediff": "AnimateDiff", "modelscope": "ModelScopeT2V", "sd": "StableDiffusion"}


@dataclass
class GenerationResult:
    folder: Path  # <root>/<model_name>
    written: int
    skipped: int


def default_model_name(model: str | Path) -> str:
    """A folder name for a model reference (``tiny:animatediff`` -> ``tiny-animatediff``)."""
    text = str(model).rstrip("/")
    return text.replace(":", "-") if text.startswith("tiny:") else Path(text).name


def generate_videos(
    model: str | Path,
    prompts: list[BenchPrompt],
    seeds: list[int],
    settings: SampleSettings,
    root: str | Path,
    model_name: str | None = None,
    device: str | None = None,
) -> GenerationResult:
    """Sample every (prompt, seed) that has no file yet; the pipeline loads only if needed."""
    name = model_name or default_model_name(model)
    folder = Path(root) / name
    info = {"model": str(model), "seeds": {str(k): s for k, s in enumerate(seeds, 1)}, "settings": asdict(settings)}
    previous = _check_previous(folder, info)
    jobs = [(k, seed, p) for k, seed in enumerate(seeds, 1) for p in prompts]
    pending = [job for job in jobs if not video_path(root, name, job[0], job[2].videoid).exists()]
    pipe = _load(model, device) if pending else None
    if pipe is not None:
        info["backbone"] = BACKBONE_NAMES[pipeline_kind(pipe)]
    elif previous is not None:
        info["backbone"] = previous.get("backbone")
    atomic_write_json(folder / GENERATION_FILE, info)
    for set_index, seed, prompt in tqdm(pending, desc=f"generating {name}", unit="video"):
        frames = sample_video(pipe, prompt.prompt, seed, settings)
        write_video(frames, video_path(root, name, set_index, prompt.videoid), settings.fps)
    return GenerationResult(folder, written=len(pending), skipped=len(jobs) - len(pending))


def _check_previous(folder: Path, info: dict[str, Any]) -> dict[str, Any] | None:
    path = folder / GENERATION_FILE
    if not path.exists():
        return None
    previous = json.loads(path.read_text())
    for key in ("model", "settings"):
        if previous.get(key) != info[key]:
            raise EvalError(
                f"{folder} was generated with {key} {previous.get(key)} but this run asks for {info[key]}; "
                "use another --name / --out, or delete the folder to regenerate"
            )
    clashes = {k: s for k, s in info["seeds"].items() if previous["seeds"].get(k, s) != s}
    if clashes:
        raise EvalError(f"{folder}: set(s) {sorted(clashes)} were sampled with other seeds ({previous['seeds']})")
    info["seeds"] = {**previous["seeds"], **info["seeds"]}
    return previous


def _load(model: str | Path, device: str | None) -> Any:
    from seppo_video.export import load_pipeline

    pipe = load_pipeline(model)
    return pipe.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def read_generation_info(folder: str | Path) -> dict[str, Any]:
    """The ``generation.json`` of a model's video folder (empty for videos made elsewhere)."""
    path = Path(folder) / GENERATION_FILE
    return json.loads(path.read_text()) if path.exists() else {}
