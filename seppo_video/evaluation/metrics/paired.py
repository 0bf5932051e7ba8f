"""The SePPO paper's frame-by-frame comparisons with a reference clip: SSIM, PSNR, LPIPS.

The reference clip (same videoid) is resampled to the generated frame count
and centre-cropped to its size (:func:`~seppo_video.evaluation.video.align_reference`);
each metric is averaged over frames.
"""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

from seppo_video.evaluation.backends import BackendSpec, load_backend
from seppo_video.evaluation.metrics.base import VideoItem
from seppo_video.evaluation.video import align_reference, to_tensor

# Identical frames have infinite PSNR; capping keeps means finite. 100 dB is an MSE of 1e-10 on
# [0, 1] pixels, far below one 8-bit level anywhere in a frame up to ~200k pixels.
PSNR_CAP_DB = 100.0


def _pair(item: VideoItem) -> tuple[torch.Tensor, torch.Tensor]:
    generated = to_tensor(item.frames)
    frames, _, height, width = generated.shape
    return generated, align_reference(item.reference(), frames, height, width)


def ssim_frames(generated: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-frame SSIM (Gaussian window 11, σ 1.5) of ``[F, 3, H, W]`` in ``[0, 1]``."""
    return structural_similarity_index_measure(generated, reference, data_range=1.0, reduction="none")


def psnr_frames(generated: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-frame PSNR in dB of ``[F, 3, H, W]`` in ``[0, 1]``, capped at :data:`PSNR_CAP_DB`."""
    psnr = peak_signal_noise_ratio(generated, reference, data_range=1.0, reduction="none", dim=(1, 2, 3))
    return torch.nan_to_num(psnr, posinf=PSNR_CAP_DB).clamp(max=PSNR_CAP_DB)


class SSIM:
    name = "ssim"
    needs_reference = True

    def fingerprint(self) -> dict[str, Any]:
        return {"window": 11, "sigma": 1.5, "data_range": 1.0}

    def score(self, item: VideoItem) -> dict[str, float]:
        return {"score": float(ssim_frames(*_pair(item)).mean())}


class PSNR:
    name = "psnr"
    needs_reference = True

    def fingerprint(self) -> dict[str, Any]:
        return {"cap_db": PSNR_CAP_DB, "data_range": 1.0}

    def score(self, item: VideoItem) -> dict[str, float]:
        return {"score": float(psnr_frames(*_pair(item)).mean())}


class LPIPS:
    """Learned perceptual distance (lower is more similar) from a local TorchScript LPIPS."""

    name = "lpips"
    needs_reference = True

    def __init__(self, spec: BackendSpec, device: torch.device):
        self.network = load_backend(spec, "weights.lpips (LPIPS)", ("forward",), device)
        self.spec, self.device = spec, device
        self.kwargs = spec.keyword_arguments()

    def fingerprint(self) -> dict[str, Any]:
        return {"weights": self.spec.path or self.spec.factory}

    @torch.no_grad()
    def score(self, item: VideoItem) -> dict[str, float]:
        generated, reference = (x.to(self.device) * 2.0 - 1.0 for x in _pair(item))
        distances = self.network(generated, reference, **self.kwargs)
        return {"score": float(distances.float().mean())}
