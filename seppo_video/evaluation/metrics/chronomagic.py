"""ChronoMagic-Bench's metrics: MTScore, UMTScore, UMT-FVD and CHScore.

Definitions follow ``CHRONOMAGIC.md`` (the benchmark's current ones). Where
the facts leave a detail open, the choice made is stated in the docstring
and in ``docs/evaluation.md``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from seppo_video.evaluation.backends import BackendSpec, Tokenizer, load_backend
from seppo_video.evaluation.frechet import frechet_distance
from seppo_video.evaluation.metrics.base import DistanceResult, VideoItem
from seppo_video.evaluation.video import (
    imagenet_normalise,
    quarter_step_indices,
    resize,
    segment_middle_indices,
    to_tensor,
)

# ---------------------------------------------------------------- MTScore

# Five descriptions of an ordinary video and five of a time-lapse (our wording).
NORMAL_DESCRIPTIONS = (
    "a normal video, not a time-lapse",
    "a conventional video recorded in real time",
    "an ordinary video playing at natural speed",
    "a regular real-time video with no time-lapse effect",
    "a standard video where events unfold at their usual pace",
)
TIMELAPSE_DESCRIPTIONS = (
    "a time-lapse video",
    "a fast-motion video",
    "a time-condensed video showing a long process in seconds",
    "a time-lapse video in which hours pass in moments",
    "a sped-up video compressing a long span of time",
)
MT_DESCRIPTIONS = NORMAL_DESCRIPTIONS + TIMELAPSE_DESCRIPTIONS
MT_IS_TIMELAPSE = np.array([False] * len(NORMAL_DESCRIPTIONS) + [True] * len(TIMELAPSE_DESCRIPTIONS))
MT_TOP_K = 5
MT_TEMPERATURE = 100.0
MT_SIZE = 224


def metamorphic_score(cosines: np.ndarray, is_timelapse: np.ndarray = MT_IS_TIMELAPSE, top_k: int = MT_TOP_K) -> float:
    """The probability mass on time-lapse descriptions among the ``top_k`` most likely.

    Probabilities are ``softmax(100 · cosine)`` over all descriptions; the
    mass is the sum of those probabilities (not renormalised within the top k).
    """
    logits = MT_TEMPERATURE * np.asarray(cosines, dtype=np.float64)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    top = np.argsort(-probs, kind="stable")[:top_k]
    return float(probs[top][is_timelapse[top]].sum())


class MTScore:
    """Metamorphic amplitude: does InternVideo2 see this video as a time-lapse?

    4 frames ``frames[::n//4][:4]``, plain (bilinear) resize to 224×224,
    ImageNet normalisation, cosine to the ten fixed descriptions.
    """

    name = "mtscore"
    needs_reference = False

    def __init__(self, spec: BackendSpec, device: torch.device):
        what = "weights.internvideo2 (InternVideo2 stage-2 1B)"
        self.model = load_backend(spec, what, ("encode_video", "encode_text"), device)
        self.spec, self.device = spec, device
        ids, mask = Tokenizer(spec.tokenizer, spec.max_length, what)(MT_DESCRIPTIONS, device)
        with torch.no_grad():
            self.text = F.normalize(self.model.encode_text(ids, mask).float(), dim=-1)

    def fingerprint(self) -> dict[str, Any]:
        return {"weights": self.spec.path or self.spec.factory, "descriptions": list(MT_DESCRIPTIONS)}

    @torch.no_grad()
    def score(self, item: VideoItem) -> dict[str, float]:
        frames = to_tensor(item.frames[quarter_step_indices(len(item.frames))])
        video = imagenet_normalise(resize(frames, MT_SIZE, MT_SIZE, "bilinear"))[None].to(self.device)
        embedding = F.normalize(self.model.encode_video(video).float(), dim=-1)
        cosines = (embedding @ self.text.T)[0].cpu().numpy()
        return {"score": metamorphic_score(cosines)}


# ---------------------------------------------------------------- UMT (UMTScore, UMT-FVD)

UMT_FRAMES = 12
UMT_SIZE = 224


def umt_input(frames: np.ndarray, device: torch.device) -> torch.Tensor:
    """UMT's input: 12 segment-middle frames, bicubic resize to 224, ImageNet normalisation."""
    picked = to_tensor(frames[segment_middle_indices(len(frames), UMT_FRAMES)])
    return imagenet_normalise(resize(picked, UMT_SIZE, UMT_SIZE, "bicubic"))[None].to(device)


class UMTScore:
    """Text alignment: UMT's image-text-matching logit for "match" of (video, prompt)."""

    name = "umtscore"
    needs_reference = False

    def __init__(self, spec: BackendSpec, device: torch.device):
        what = "weights.umt (UMT-L/16 UMT-msrvtt-7k)"
        self.model = load_backend(spec, what, ("match_logit",), device)
        self.tokenizer = Tokenizer(spec.tokenizer, spec.max_length, what)
        self.spec, self.device = spec, device

    def fingerprint(self) -> dict[str, Any]:
        return {"weights": self.spec.path or self.spec.factory, "max_length": self.spec.max_length}

    @torch.no_grad()
    def score(self, item: VideoItem) -> dict[str, float]:
        ids, mask = self.tokenizer([item.prompt], self.device)
        logit = self.model.match_logit(umt_input(item.frames, self.device), ids, mask)
        return {"score": float(logit.reshape(-1)[0])}


UMT_FVD_SIZES = (32, 64, 128, 256, 300, 512, 1024)
UMT_FVD_REPEATS = 4


def subset_indices(count: int, size: int, rng: np.random.Generator) -> tuple[int, ...]:
    """A random subset of ``size`` of ``count`` items (all of them when ``size >= count``)."""
    if size >= count:
        return tuple(range(count))
    return tuple(sorted(rng.choice(count, size=size, replace=False).tolist()))


def umt_fvd_protocol(generated: np.ndarray, reference: np.ndarray, seed: int) -> DistanceResult:
    """UMT-FVD: Fréchet distances for subset sizes 32 … 1024, 4 random subsets each, averaged.

    Generated and reference subsets are drawn independently. Subsets that
    coincide (every size at or above the set size is the whole set) are
    computed once; ``details`` says how many distinct pairs there were, so a
    small set's spread is not mistaken for 28 independent draws.
    """
    rng = np.random.default_rng(seed)
    cache: dict[tuple[tuple[int, ...], tuple[int, ...]], float] = {}
    per_size: dict[str, list[float]] = {}
    for size in UMT_FVD_SIZES:
        values = []
        for _ in range(UMT_FVD_REPEATS):
            key = (subset_indices(len(generated), size, rng), subset_indices(len(reference), size, rng))
            if key not in cache:
                cache[key] = frechet_distance(generated[list(key[0])], reference[list(key[1])])
            values.append(cache[key])
        per_size[str(size)] = values
    distinct = np.array(list(cache.values()))
    details = {
        "per_size": per_size,
        "distinct_subsets": len(cache),
        "distinct_std": float(distinct.std(ddof=1)) if distinct.size > 1 else 0.0,
    }
    return DistanceResult(float(np.mean([v for vs in per_size.values() for v in vs])), details)


class UMTFVD:
    """UMT-FVD: Fréchet distance of UMT video features, generated vs reference (lower is better)."""

    name = "umt_fvd"

    def __init__(self, spec: BackendSpec, device: torch.device):
        self.model = load_backend(spec, "weights.umt (UMT-L/16 UMT-msrvtt-7k)", ("encode_video",), device)
        self.spec, self.device = spec, device

    def fingerprint(self) -> dict[str, Any]:
        return {"weights": self.spec.path or self.spec.factory, "frames": UMT_FRAMES, "size": UMT_SIZE}

    @torch.no_grad()
    def features(self, frames: np.ndarray) -> np.ndarray:
        return self.model.encode_video(umt_input(frames, self.device)).float().cpu().numpy().reshape(1, -1)


# ---------------------------------------------------------------- CHScore

CH_GRID = 30
CH_CUT = 0.1
# AMPR, MPVR, FCR, CMPV, MCMPV: weight and fixed upper bound (lower bound 0).
CH_WEIGHTS = {"ampr": 0.35, "mpvr": 0.25, "fcr": 0.15, "cmpv": 0.15, "mcmpv": 0.10}
CH_BOUNDS = {"ampr": 0.9369, "mpvr": 0.8997, "fcr": 0.625, "cmpv": 20.0, "mcmpv": 1.0}


def grid_queries(height: int, width: int, grid: int = CH_GRID) -> np.ndarray:
    """``[grid², 3]`` queries ``(0, x, y)`` at the centres of a ``grid × grid`` partition of frame 0."""
    xs = (np.arange(grid) + 0.5) * width / grid
    ys = (np.arange(grid) + 0.5) * height / grid
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([np.zeros(gx.size), gx.ravel(), gy.ravel()], axis=1)


def missed_fraction(tracks: np.ndarray, visible: np.ndarray, height: int, width: int) -> np.ndarray:
    """Per frame, the fraction of points that vanished without leaving the frame.

    A point invisible at frame ``t`` is *explained* when moving along its own
    direction (its displacement from frame 0 to frame ``T//2``, continued at
    the same rate) puts it outside the frame at ``t``; otherwise it is missed.
    ``tracks [T, N, 2]`` (x, y), ``visible [T, N]`` bool.
    """
    frames = tracks.shape[0]
    half = frames // 2
    start = tracks[0]
    velocity = (tracks[half] - start) / half if half > 0 else np.zeros_like(start)
    times = np.arange(frames, dtype=np.float64)[:, None, None]
    expected = start[None] + velocity[None] * times
    outside = (
        (expected[..., 0] < 0) | (expected[..., 0] > width - 1) | (expected[..., 1] < 0) | (expected[..., 1] > height - 1)
    )
    missed = ~visible & ~outside
    return missed.mean(axis=1)


def chscore_components(missed: np.ndarray) -> dict[str, float]:
    """AMPR, MPVR, FCR, CMPV, MCMPV from the per-frame missed fraction.

    ``d`` = |frame-to-frame change| of the fraction; a cut is any ``d > 0.1``.
    """
    missed = np.asarray(missed, dtype=np.float64)
    change = np.abs(np.diff(missed))
    cuts = int((change > CH_CUT).sum())
    return {
        "ampr": float(missed.mean()),
        "mpvr": float(change.std()) if change.size else 0.0,
        "fcr": cuts / len(missed),
        "cmpv": float(cuts),
        "mcmpv": float(change.max()) if change.size else 0.0,
    }


def instability_index(components: dict[str, float]) -> float:
    """The weighted sum of the components, each min-max normalised with the fixed bounds (not clipped)."""
    return float(sum(CH_WEIGHTS[k] * components[k] / CH_BOUNDS[k] for k in CH_WEIGHTS))


def chscore_from_instability(instability: float) -> float:
    """The video's CHScore: the reciprocal of the instability index, 0 when it is 0."""
    return 0.0 if instability == 0 else 1.0 / instability


class CHScore:
    """Temporal coherence from CoTracker2 on a 30×30 grid queried at frame 0, all frames."""

    name = "chscore"
    needs_reference = False

    def __init__(self, spec: BackendSpec, device: torch.device):
        self.tracker = load_backend(spec, "weights.cotracker (CoTracker2)", ("track",), device)
        self.spec, self.device = spec, device

    def fingerprint(self) -> dict[str, Any]:
        return {"weights": self.spec.path or self.spec.factory, "grid": CH_GRID, "cut": CH_CUT}

    @torch.no_grad()
    def score(self, item: VideoItem) -> dict[str, float]:
        frames, height, width = len(item.frames), *item.frames.shape[1:3]
        video = torch.from_numpy(np.ascontiguousarray(item.frames)).permute(0, 3, 1, 2).float()[None]
        queries = torch.from_numpy(grid_queries(height, width)).float()[None]
        tracks, visibility = self.tracker.track(video.to(self.device), queries.to(self.device))
        tracks = tracks[0].float().cpu().numpy().reshape(frames, -1, 2)
        visible = visibility[0].float().cpu().numpy().reshape(frames, -1) > 0.5
        parts = chscore_components(missed_fraction(tracks, visible, height, width))
        instability = instability_index(parts)
        return {"score": chscore_from_instability(instability), "instability": instability, **parts}
