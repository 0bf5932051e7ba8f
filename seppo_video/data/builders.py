"""From a ``DataConfig`` to a pixel dataset, and from items to a batch.

Kept apart from ``seppo_video.data.__init__`` so the latent cache (which
encodes a pixel dataset) and the top-level ``build_dataset`` (which may
return the latent cache) can both use it without importing each other.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from seppo_video.config import ConfigError, DataConfig
from seppo_video.data.annotations import read_video_annotations
from seppo_video.data.demo import ensure_demo_data
from seppo_video.data.images import ImagePreferenceDataset, read_image_pairs
from seppo_video.data.skips import SkippingDataset, logger
from seppo_video.data.video import VideoDataset


def build_pixel_dataset(config: DataConfig, model_kind: str, *, pairs: bool, seed: int = 0) -> SkippingDataset:
    """Decoded-pixel dataset for ``config`` (never the latent cache).

    ``demo`` uses the synthetic data set: its clips for video backbones, its
    Pick-a-Pic style pairs for the image backbone (``model_kind == "sd"``).
    ``image`` without ``annotations`` also uses the demo pairs, so the tiny
    image config runs out of the box; ``video`` requires annotations (a real
    run must never train on the demo clips by accident).
    """
    if config.kind == "image":
        if config.annotations is None:
            logger.warning("data.annotations not set: using the synthetic demo image pairs")
            return _image_dataset(config, ensure_demo_data() / "pickapic.jsonl", None, pairs)
        return _image_dataset(config, Path(config.annotations), config.image_dir, pairs)
    if config.kind == "demo":
        root = ensure_demo_data()
        if model_kind == "sd":
            return _image_dataset(config, root / "pickapic.jsonl", None, pairs)
        _check_demo_frames(root, config.num_frames)
        return _video_dataset(config, root / "annotations.csv", root / "videos", pairs, seed)
    if config.annotations is None:
        raise ConfigError("data.annotations: required for data.kind='video' (a CSV, JSON or JSONL file)")
    return _video_dataset(config, Path(config.annotations), config.video_dir, pairs, seed)


def _video_dataset(
    config: DataConfig, annotations: Path, video_dir: str | Path | None, pairs: bool, seed: int
) -> VideoDataset:
    return VideoDataset(
        read_video_annotations(annotations, video_dir),
        num_frames=config.num_frames,
        resolution=config.resolution,
        frame_stride=config.frame_stride,
        target_fps=config.target_fps,
        pairs=pairs,
        max_bad_fraction=config.max_bad_fraction,
        seed=seed,
        source=str(annotations),
    )


def _image_dataset(
    config: DataConfig, annotations: Path, image_dir: str | Path | None, pairs: bool
) -> ImagePreferenceDataset:
    if config.num_frames != 1:
        raise ConfigError(f"data.num_frames: image data has exactly 1 frame, got {config.num_frames}")
    return ImagePreferenceDataset(
        read_image_pairs(annotations, image_dir),
        resolution=config.resolution,
        keep="pairs" if pairs else "winners",
        max_bad_fraction=config.max_bad_fraction,
        source=str(annotations),
    )


def _check_demo_frames(root: Path, num_frames: int) -> None:
    available = json.loads((root / "demo.json").read_text())["num_frames"]
    if num_frames > available:
        raise ConfigError(f"data.num_frames: the demo clips have {available} frames, got {num_frames}")


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors along a new batch axis; keep ``id``/``prompt`` (and other values) as lists."""
    if not items:
        raise ValueError("collate: empty batch")
    keys = set(items[0])
    for item in items[1:]:
        if set(item) != keys:
            raise ValueError(f"collate: items disagree on keys ({sorted(keys)} vs {sorted(item)})")
    return {
        key: torch.stack([item[key] for item in items])
        if isinstance(items[0][key], torch.Tensor)
        else [item[key] for item in items]
        for key in items[0]
    }
