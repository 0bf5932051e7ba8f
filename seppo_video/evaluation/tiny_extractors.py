"""Tiny random-init stand-ins for every metric's network, written as a real run expects them.

TorchScript files with the methods of each interface in :mod:`.backends`,
CLIP folders with an offline byte-level tokenizer, and synthetic reference
clips. They make the whole evaluation runnable and testable on a CPU with no
download, through the same loading code real weights go through; their
numbers mean nothing.
"""

from __future__ import annotations

import shutil
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seppo_video.atomic import atomic_directory
from seppo_video.evaluation.config import EvalConfig
from seppo_video.models.tiny import build_tokenizer, default_cache_dir

VERSION = 2  # 2: the tracker takes a grid size (CoTracker2's call), not queries
DIM = 32
TORCHSCRIPT = ("umt", "internvideo2", "cotracker", "i3d", "inception", "lpips")


class TinyVideoText(nn.Module):
    """UMT / InternVideo2 stand-in: patch embedding pooled over space and time, bag-of-tokens text."""

    def __init__(self, vocab_size: int):
        super().__init__()
        self.patch = nn.Conv2d(3, DIM, kernel_size=16, stride=16)
        self.token = nn.Embedding(vocab_size, DIM)
        self.video_proj = nn.Linear(DIM, DIM)
        self.text_proj = nn.Linear(DIM, DIM)
        self.itm = nn.Linear(2 * DIM, 2)

    @torch.jit.export
    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        batch, frames = video.shape[0], video.shape[1]
        patches = torch.tanh(self.patch(video.flatten(0, 1))).mean(dim=(2, 3))
        return self.video_proj(patches.view(batch, frames, -1).mean(dim=1))

    @torch.jit.export
    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).float()
        pooled = (self.token(input_ids) * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return self.text_proj(pooled)

    @torch.jit.export
    def match_logit(self, video: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        joint = torch.cat([self.encode_video(video), self.encode_text(input_ids, attention_mask)], dim=-1)
        return self.itm(joint)[:, 1]

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.encode_video(video)


class TinyTracker(nn.Module):
    """CoTracker stand-in: grid points stay put and are visible while their colour stays close to frame 0's."""

    def __init__(self, threshold: float = 40.0):
        super().__init__()
        self.threshold = threshold

    @torch.jit.export
    def track(self, video: torch.Tensor, grid_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        frames, height, width = video.shape[1], video.shape[3], video.shape[4]
        ys, xs = torch.meshgrid(torch.linspace(0.0, height - 1.0, grid_size),
                                torch.linspace(0.0, width - 1.0, grid_size), indexing="ij")
        xs, ys = xs.reshape(-1), ys.reshape(-1)
        colours = video[0][:, :, ys.long(), xs.long()]  # [T, 3, N]
        visible = (colours - colours[0:1]).abs().mean(dim=1) < self.threshold
        tracks = torch.stack([xs, ys], dim=-1).unsqueeze(0).expand(frames, -1, -1)
        return tracks.unsqueeze(0), visible.unsqueeze(0)

    def forward(self, video: torch.Tensor, grid_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.track(video, grid_size)


class TinyI3D(nn.Module):
    """I3D stand-in: ``[B, 3, T, H, W]`` in [-1, 1] -> ``[B, 32]``."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv3d(3, 16, kernel_size=(3, 8, 8), stride=(1, 8, 8))
        self.conv2 = nn.Conv3d(16, DIM, kernel_size=(3, 3, 3), stride=(2, 2, 2))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv2(torch.relu(self.conv1(video)))).mean(dim=(2, 3, 4))


class TinyInception(nn.Module):
    """Inception stand-in: ``uint8 [B, 3, H, W]`` (any size) -> ``[B, 32]``."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, kernel_size=4, stride=4)
        self.conv2 = nn.Conv2d(16, DIM, kernel_size=3, stride=2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images.float() / 127.5 - 1.0, size=(64, 64), mode="bilinear", align_corners=False)
        return torch.relu(self.conv2(torch.relu(self.conv1(x)))).mean(dim=(2, 3))


class TinyLPIPS(nn.Module):
    """LPIPS stand-in with LPIPS's structure: unit-normalised features, weighted squared differences."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(8, 16, kernel_size=3, stride=2, padding=1)
        self.lin1 = nn.Parameter(torch.rand(8))
        self.lin2 = nn.Parameter(torch.rand(16))

    def _layer(self, fa: torch.Tensor, fb: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        na = fa / (torch.sqrt((fa ** 2).sum(dim=1, keepdim=True)) + 1e-10)
        nb = fb / (torch.sqrt((fb ** 2).sum(dim=1, keepdim=True)) + 1e-10)
        return ((na - nb) ** 2 * weight.view(1, -1, 1, 1)).sum(dim=1).mean(dim=(1, 2))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a1, b1 = torch.relu(self.conv1(a)), torch.relu(self.conv1(b))
        a2, b2 = torch.relu(self.conv2(a1)), torch.relu(self.conv2(b1))
        return self._layer(a1, b1, self.lin1) + self._layer(a2, b2, self.lin2)


def _tiny_clip(folder: Path, tokenizer_dir: Path) -> None:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tokenizer = build_tokenizer(tokenizer_dir)
    size = len(tokenizer)
    config = CLIPConfig(
        text_config={"vocab_size": size, "hidden_size": DIM, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "max_position_embeddings": 77, "bos_token_id": size - 2,
                     "eos_token_id": size - 1, "pad_token_id": size - 1},
        vision_config={"hidden_size": DIM, "intermediate_size": 64, "num_hidden_layers": 2,
                       "num_attention_heads": 4, "image_size": 32, "patch_size": 8},
        projection_dim=DIM,
    )
    CLIPModel(config).save_pretrained(folder)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)


def write_tiny_extractors(out: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write every stand-in into ``out`` (atomically); returns name -> path.

    Names: the TorchScript files ``umt``, ``internvideo2``, ``cotracker``,
    ``i3d``, ``inception``, ``lpips``; the CLIP folders ``clip`` and
    ``pickscore``; ``tokenizer`` (for ``umt`` / ``internvideo2``).
    """
    out = Path(out)
    torch.manual_seed(seed)
    with atomic_directory(out) as tmp:
        tokenizer = build_tokenizer(tmp / "tokenizer")
        modules = {
            "umt": TinyVideoText(len(tokenizer)),
            "internvideo2": TinyVideoText(len(tokenizer)),
            "cotracker": TinyTracker(),
            "i3d": TinyI3D(),
            "inception": TinyInception(),
            "lpips": TinyLPIPS(),
        }
        for name, module in modules.items():
            torch.jit.script(module.eval()).save(str(tmp / f"{name}.pt"))
        for name in ("clip", "pickscore"):
            _tiny_clip(tmp / name, tmp / f".{name}-tokenizer")
            shutil.rmtree(tmp / f".{name}-tokenizer")
    return tiny_extractor_paths(out)


def tiny_extractor_paths(folder: Path) -> dict[str, Path]:
    paths = {name: folder / f"{name}.pt" for name in TORCHSCRIPT}
    return {**paths, "clip": folder / "clip", "pickscore": folder / "pickscore", "tokenizer": folder / "tokenizer"}


def ensure_tiny_extractors() -> dict[str, Path]:
    """The cached stand-ins (built on first use under ``SEPPO_VIDEO_CACHE``)."""
    folder = default_cache_dir() / "tiny_extractors" / f"v{VERSION}"
    if not (folder / "lpips.pt").exists():
        write_tiny_extractors(folder)
    return tiny_extractor_paths(folder)


def write_tiny_reference_videos(videoids: list[str], out: str | Path, frames: int = 16, size: int = 64) -> Path:
    """Synthetic 'time-lapse' reference clips (a drifting, brightening pattern), one per videoid."""
    from seppo_video.sample import write_video

    out = Path(out)
    y, x = np.mgrid[0:size, 0:size] / size
    for index, videoid in enumerate(videoids):
        path = out / f"{videoid}.mp4"
        if path.exists():
            continue
        phase = index * 0.7
        clip = [
            np.stack([np.sin(6 * x + phase + t / frames * 3), np.cos(5 * y - phase), (x + y) / 2 * t / frames], -1)
            for t in range(frames)
        ]
        write_video(((np.clip(np.stack(clip), -1, 1) + 1) * 127.5).astype(np.uint8), path, fps=8)
    return out


def resolve_tiny(config: EvalConfig, videoids: list[str], frames: int = 16, size: int = 64) -> None:
    """Replace ``tiny`` in ``weights.*.path`` / ``.tokenizer`` and ``reference.videos`` by real stand-in paths.

    The synthetic reference clips are written under ``<config.out>/reference_videos``.
    """
    paths: dict[str, Path] | None = None
    for entry in fields(config.weights):
        spec = getattr(config.weights, entry.name)
        if "tiny" in (spec.path, spec.tokenizer):
            paths = paths or ensure_tiny_extractors()
            spec.path = str(paths[entry.name]) if spec.path == "tiny" else spec.path
            spec.tokenizer = str(paths["tokenizer"]) if spec.tokenizer == "tiny" else spec.tokenizer
    if config.reference.videos == "tiny":
        folder = write_tiny_reference_videos(videoids, Path(config.out) / "reference_videos", frames, size)
        config.reference.videos = str(folder)
