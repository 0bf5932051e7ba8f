"""Scoring a model's video folder: per-video records for every set, resumable.

Layout written under ``<scores_root>``::

    <model>/meta.json                       what was scored, with what, what was skipped
    <model>/sets/<set>/<metric>.json        per-video records of video metrics
    <model>/sets/<set>/features/<metric>/   per-video features of distribution metrics
    reference/<metric>/                     reference-video features (shared by models)

Each video is decoded once and given to every metric that has no record for
it yet; records are written after every video.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from seppo_video.atomic import atomic_write_json
from seppo_video.evaluation.config import EvalConfig
from seppo_video.evaluation.generate import read_generation_info
from seppo_video.evaluation.layout import find_video, set_dirs
from seppo_video.evaluation.metrics.base import VideoItem
from seppo_video.evaluation.metrics.registry import METRICS, MetricSet, build_metrics, check_reference_features
from seppo_video.evaluation.prompts import BenchPrompt
from seppo_video.evaluation.records import FeatureStore, RecordStore
from seppo_video.evaluation.video import read_video

logger = logging.getLogger("seppo_video.evaluation")
META_FILE = "meta.json"


@dataclass
class ScoreResult:
    folder: Path  # <scores_root>/<model>
    skipped: dict[str, str]  # metric -> why
    missing_videos: dict[str, list[str]]  # set -> videoids without a generated video


def resolve_device(name: str | None) -> torch.device:
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def score_videos(
    videos: str | Path,
    prompts: list[BenchPrompt],
    scores_root: str | Path,
    config: EvalConfig,
    requested: list[str] | None = None,
    overwrite: bool = False,
    prompts_file: str | None = None,
) -> ScoreResult:
    """Score ``videos`` (``<root>/<model>``) into ``<scores_root>/<model>``."""
    videos, scores_root = Path(videos), Path(scores_root)
    check_reference_features(config)
    sets = set_dirs(videos)
    reference = Path(config.reference.videos) if config.reference.videos else None
    metrics = build_metrics(config, requested, reference is not None, resolve_device(config.scoring.device))
    for name, why in metrics.skipped.items():
        logger.warning("skipping %s: %s", name, why)
    folder = scores_root / videos.name
    missing = {
        name: _score_set(set_folder, folder / "sets" / name, prompts, metrics, reference, overwrite)
        for name, set_folder in sets.items()
    }
    if reference is not None and metrics.distribution:
        _score_reference(prompts, reference, scores_root / "reference", metrics, config, overwrite)
    meta = _meta(videos, prompts, sets, metrics, reference, scores_root, config, missing, prompts_file)
    atomic_write_json(folder / META_FILE, _merge_meta(folder / META_FILE, meta))
    return ScoreResult(folder, metrics.skipped, missing)


def _score_set(
    videos: Path, out: Path, prompts: list[BenchPrompt], metrics: MetricSet, reference: Path | None, overwrite: bool
) -> list[str]:
    """Score one sample set; returns the videoids that have no generated video."""
    records = {m.name: RecordStore(out / f"{m.name}.json", m.name, m.fingerprint(), overwrite) for m in metrics.video}
    features = {m.name: FeatureStore(out / "features" / m.name, m.fingerprint(), overwrite) for m in metrics.distribution}
    stores: list[Any] = [*records.values(), *features.values()]
    pending = [p for p in prompts if any(p.videoid not in store for store in stores)]
    missing, unreferenced = [], []
    for prompt in tqdm(pending, desc=f"scoring {videos.parent.name}/{videos.name}", unit="video"):
        path = find_video(videos, prompt.videoid)
        if path is None:
            missing.append(prompt.videoid)
            continue
        reference_path = find_video(reference, prompt.videoid) if reference is not None else None
        if reference is not None and reference_path is None:
            unreferenced.append(prompt.videoid)
        item = VideoItem(prompt.videoid, prompt.prompt, read_video(path),
                         lambda p=reference_path: read_video(p) if p is not None else None)
        for metric in metrics.video:
            if prompt.videoid not in records[metric.name] and (reference_path or not metric.needs_reference):
                records[metric.name].add(prompt.videoid, metric.score(item))
        for metric in metrics.distribution:
            if prompt.videoid not in features[metric.name]:
                features[metric.name].add(prompt.videoid, metric.features(item.frames))
    if missing:
        logger.warning("%s: %d of %d videos missing, e.g. %s", videos, len(missing), len(prompts), missing[0])
    if unreferenced:
        logger.warning("%s: no reference clip for %d video(s), e.g. %s; reference metrics skip them",
                       reference, len(unreferenced), unreferenced[0])
    return missing


def _score_reference(
    prompts: list[BenchPrompt], reference: Path, out: Path, metrics: MetricSet, config: EvalConfig, overwrite: bool
) -> None:
    """Features of the reference clips (UMT-FVD uses the shipped features file instead, when given)."""
    wanted = [m for m in metrics.distribution if not (m.name == "umt_fvd" and config.reference.umt_features)]
    source = str(reference.resolve())
    stores = {m.name: FeatureStore(out / m.name, {**m.fingerprint(), "reference": source}, overwrite) for m in wanted}
    pending = [p for p in prompts if any(p.videoid not in s for s in stores.values())]
    found = [(p, find_video(reference, p.videoid)) for p in pending]
    for prompt, path in tqdm([f for f in found if f[1] is not None], desc="reference features", unit="video"):
        frames = read_video(path)
        for metric in wanted:
            if prompt.videoid not in stores[metric.name]:
                stores[metric.name].add(prompt.videoid, metric.features(frames))
    absent = [p.videoid for p, path in found if path is None]
    if absent:
        logger.warning("%s: no reference video for %d prompt(s), e.g. %s", reference, len(absent), absent[0])


def _merge_meta(path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Keep metrics scored by earlier invocations (e.g. one ``--metrics`` at a time)."""
    if not path.exists():
        return meta
    previous = json.loads(path.read_text())
    meta["metrics"] = {**previous.get("metrics", {}), **meta["metrics"]}
    skipped = {**previous.get("skipped", {}), **meta["skipped"]}
    meta["skipped"] = {k: v for k, v in skipped.items() if k not in meta["metrics"]}
    return meta


def _meta(
    videos: Path,
    prompts: list[BenchPrompt],
    sets: dict[str, Path],
    metrics: MetricSet,
    reference: Path | None,
    scores_root: Path,
    config: EvalConfig,
    missing: dict[str, list[str]],
    prompts_file: str | None,
) -> dict[str, Any]:
    generation = read_generation_info(videos)
    scored = {m.name: {"kind": METRICS[m.name].kind, "fingerprint": m.fingerprint()}
              for m in [*metrics.video, *metrics.distribution]}
    return {
        "model_name": videos.name,
        "videos": str(videos),
        "prompts_file": prompts_file,
        "videoids": [p.videoid for p in prompts],
        "sets": list(sets),
        "generation": generation,
        "metrics": scored,
        "skipped": metrics.skipped,
        "missing_videos": missing,
        "reference": {
            "videos": str(reference) if reference else None,
            "features": str(scores_root / "reference"),
            "umt_features": config.reference.umt_features,
        },
    }
