"""Decoding videos and the frame selections / resizes each metric prescribes.

Each benchmark metric fixes its own frames and preprocessing (CHRONOMAGIC.md);
they are written out here as small functions so that tests can check them
and metrics cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from seppo_video.evaluation.errors import EvalError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def read_video(path: str | Path) -> np.ndarray:
    """All frames of a video file as ``uint8 [F, H, W, 3]`` (gif alpha / grey handled)."""
    import imageio.v2 as imageio

    try:
        frames = imageio.mimread(str(path), memtest=False)
    except Exception as err:  # imageio raises several types for unreadable files
        raise EvalError(f"cannot decode {path}: {err}") from err
    if not frames:
        raise EvalError(f"{path}: no frames")
    video = np.stack([_as_rgb(np.asarray(frame)) for frame in frames])
    return video.astype(np.uint8, copy=False)


def _as_rgb(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return np.repeat(frame[..., None], 3, axis=-1)
    return frame[..., :3]


# ---------------------------------------------------------------- frame indices


def quarter_step_indices(n: int) -> list[int]:
    """MTScore's frames: ``frames[::n//4][:4]``; clips under 4 frames repeat their last frame."""
    step = max(n // 4, 1)
    picked = list(range(0, n, step))[:4]
    return picked + [picked[-1]] * (4 - len(picked))


def segment_middle_indices(n: int, count: int) -> list[int]:
    """UMTScore's frames: the middle frame of each of ``count`` equal segments of the clip."""
    edges = np.linspace(0, n, count + 1)
    return [min(int((edges[i] + edges[i + 1]) / 2), n - 1) for i in range(count)]


def evenly_spaced_indices(n: int, count: int) -> list[int]:
    """``count`` indices from the first to the last frame (repeats when ``n < count``)."""
    if count == 1:
        return [0]
    return [round(x) for x in np.linspace(0, n - 1, count).tolist()]


# ---------------------------------------------------------------- tensors


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """``uint8 [F, H, W, 3]`` -> ``float [F, 3, H, W]`` in ``[0, 1]``."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0


def resize(x: torch.Tensor, height: int, width: int, mode: str) -> torch.Tensor:
    """Plain resize to ``height x width`` (no crop, aspect ratio not kept), clamped to ``[0, 1]``."""
    align = False if mode in ("bilinear", "bicubic") else None
    return F.interpolate(x, size=(height, width), mode=mode, align_corners=align).clamp(0.0, 1.0)


def center_crop_resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Scale so the frame covers ``height x width``, then crop the centre (aspect ratio kept)."""
    h, w = x.shape[-2:]
    scale = max(height / h, width / w)
    new_h, new_w = max(height, round(h * scale)), max(width, round(w * scale))
    x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True)
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return x[..., top : top + height, left : left + width].clamp(0.0, 1.0)


def imagenet_normalise(x: torch.Tensor) -> torch.Tensor:
    """Normalise ``[..., 3, H, W]`` in ``[0, 1]`` with the ImageNet mean and std."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x - mean) / std


def align_reference(reference: np.ndarray, num_frames: int, height: int, width: int) -> torch.Tensor:
    """A reference clip matched to a generated one: same frame count (evenly spaced) and size.

    Reference time-lapse clips are longer and not square; paired metrics
    (LPIPS, SSIM, PSNR) need frame-to-frame correspondence, so the reference
    is resampled to the generated frame count and centre-cropped to its size.
    """
    picked = reference[evenly_spaced_indices(len(reference), num_frames)]
    return center_crop_resize(to_tensor(picked), height, width)
