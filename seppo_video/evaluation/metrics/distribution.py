"""The SePPO paper's distribution metrics: FID (per frame) and FVD (per clip, I3D)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from seppo_video.evaluation.backends import BackendSpec, load_backend
from seppo_video.evaluation.video import (
    center_crop_resize,
    evenly_spaced_indices,
    to_tensor,
)


class FID:
    """Fréchet distance of frame features, all sampled frames of all videos pooled.

    Each video contributes ``min(F, fid_frames)`` evenly spaced frames, so long
    reference clips do not outweigh short generated ones.
    """

    name = "fid"

    def __init__(self, spec: BackendSpec, device: torch.device, frames_per_video: int):
        self.network = load_backend(spec, "weights.inception (Inception-v3 feature extractor)", ("forward",), device)
        self.spec, self.device, self.frames_per_video = spec, device, frames_per_video
        self.kwargs = spec.keyword_arguments()

    def fingerprint(self) -> dict[str, Any]:
        return {"weights": self.spec.path or self.spec.factory, "frames": self.frames_per_video, "kwargs": self.kwargs}

    @torch.no_grad()
    def features(self, frames: np.ndarray) -> np.ndarray:
        picked = frames[evenly_spaced_indices(len(frames), min(len(frames), self.frames_per_video))]
        images = torch.from_numpy(np.ascontiguousarray(picked)).permute(0, 3, 1, 2).to(self.device)
        return self.network(images, **self.kwargs).float().cpu().numpy().reshape(len(picked), -1)


class FVD:
    """Fréchet distance of I3D clip features (``fvd_frames`` evenly spaced frames, centre crop, [-1, 1])."""

    name = "fvd"

    def __init__(self, spec: BackendSpec, device: torch.device, num_frames: int, size: int):
        self.network = load_backend(spec, "weights.i3d (I3D video feature extractor)", ("forward",), device)
        self.spec, self.device, self.num_frames, self.size = spec, device, num_frames, size
        self.kwargs = spec.keyword_arguments()

    def fingerprint(self) -> dict[str, Any]:
        weights = self.spec.path or self.spec.factory
        return {"weights": weights, "frames": self.num_frames, "size": self.size, "kwargs": self.kwargs}

    @torch.no_grad()
    def features(self, frames: np.ndarray) -> np.ndarray:
        picked = to_tensor(frames[evenly_spaced_indices(len(frames), self.num_frames)])
        clip = center_crop_resize(picked, self.size, self.size) * 2.0 - 1.0
        video = clip.permute(1, 0, 2, 3)[None].to(self.device)  # [1, 3, T, H, W]
        return self.network(video, **self.kwargs).float().cpu().numpy().reshape(1, -1)
