"""Decoding videos and the frame selections / resizes each metric prescribes.

Each benchmark metric fixes its own frames and preprocessing (CHRONOMAGIC.md);
they are written out here as small functions so that tests can check them
and metrics cannot drift apart.
"""

from __future__ import annotations

import itertools
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


def mtscore_indices(n: int, count: int = 4) -> list[int]:
    """MTScore's frames: ``frames[::n // count][:count]`` (the official script asserts ``n >= count``)."""
    if n < count:
        raise EvalError(f"MTScore needs at least {count} frames, the video has {n}")
    return list(range(0, n, n // count))[:count]


def umt_indices(n: int, count: int = 12) -> list[int]:
    """UMT's test frames: ``(a + b) // 2`` over the ranges ``[a, b]`` cut by ``linspace(0, n, count + 1)``.

    The range ends are the integer-truncated linspace edges, each range
    closed one before the next edge; clips shorter than ``count`` are padded
    with their last index.
    """
    edges = np.linspace(0, n, min(count, n) + 1).astype(int)
    picked = [(int(a) + int(b) - 1) // 2 for a, b in itertools.pairwise(edges)]
    return picked + [picked[-1]] * (count - len(picked))


def gpt4o_indices(n: int, count: int = 8) -> list[int]:
    """GPT4o-MTScore's frames: first, last and ``i * ((n - 1) // (count - 1))`` for ``i = 1 .. count - 2``.

    The official script drops a video whose indices are not ``count``
    distinct frames (fewer than ``count`` frames), so this refuses it.
    """
    interval = (n - 1) // (count - 1)
    picked = sorted({0, n - 1, *(i * interval for i in range(1, count - 1))})
    if len(picked) != count:
        raise EvalError(f"GPT4o-MTScore needs {count} distinct frames, the video has {n} (the official script skips it)")
    return picked


def evenly_spaced_indices(n: int, count: int) -> list[int]:
    """``count`` indices from the first to the last frame (repeats when ``n < count``)."""
    if count == 1:
        return [0]
    return [round(x) for x in np.linspace(0, n - 1, count).tolist()]


# ---------------------------------------------------------------- official resizes


def resize_uint8_bicubic_antialias(frames: np.ndarray, height: int, width: int) -> torch.Tensor:
    """``uint8 [F, H, W, 3]`` -> ``uint8 [F, 3, height, width]`` as torchvision's ``Resize(BICUBIC)`` on uint8.

    torchvision (antialias on, its default for tensors) interpolates a float
    copy, clamps to ``[0, 255]`` and rounds back to uint8; UMT then divides by 255.
    """
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(height, width), mode="bicubic", align_corners=False, antialias=True)
    return x.clamp(0, 255).round().to(torch.uint8)


def cv2_resize(frame: np.ndarray, width: int, height: int, interpolation: str = "linear") -> np.ndarray:
    """OpenCV's resize (the official MTScore / GPT4o-MTScore scripts use it): ``linear`` or ``area``."""
    import cv2

    flags = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA}
    return cv2.resize(np.ascontiguousarray(frame), (width, height), interpolation=flags[interpolation])


def short_edge_downscale(frame: np.ndarray, short_edge: int) -> np.ndarray:
    """GPT4o-MTScore's resize: frames whose short edge exceeds ``short_edge`` shrink to it (area filter).

    The scale comes from the width when the frame is portrait, else from the
    height, and the new size is truncated (``int``), as the official script does.
    """
    height, width = frame.shape[:2]
    if min(height, width) <= short_edge:
        return frame
    scale = short_edge / width if height > width else short_edge / height
    return cv2_resize(frame, int(width * scale), int(height * scale), "area")


# ---------------------------------------------------------------- tensors


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """``uint8 [F, H, W, 3]`` -> ``float [F, 3, H, W]`` in ``[0, 1]``."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0


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
