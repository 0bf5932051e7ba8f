"""ChronoMagic-Bench's metrics: MTScore, UMTScore, UMT-FVD and CHScore.

Each definition follows the official scripts (PKU-YuanGroup/ChronoMagic-Bench)
step by step: frame choice, resize, normalisation, token limits, constants.
``docs/evaluation.md`` lists, per metric, the official file each fact comes
from and what makes a score leaderboard-comparable.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from seppo_video.evaluation.backends import BackendSpec, Tokenizer, load_backend
from seppo_video.evaluation.errors import EvalError
from seppo_video.evaluation.frechet import frechet_distance_sqrtm, population_stats
from seppo_video.evaluation.metrics.base import DistanceResult, VideoItem
from seppo_video.evaluation.networks.cotracker2 import load_cotracker2
from seppo_video.evaluation.networks.internvideo2 import load_internvideo2
from seppo_video.evaluation.networks.umt import load_umt
from seppo_video.evaluation.official import OfficialText
from seppo_video.evaluation.video import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    cv2_resize,
    imagenet_normalise,
    mtscore_indices,
    resize_uint8_bicubic_antialias,
    umt_indices,
)

# ---------------------------------------------------------------- MTScore

MT_FRAMES = 4  # the official config's num_frames
MT_SIZE = 224  # size_t
MT_MAX_TOKENS = 40  # max_txt_l
MT_TEMPERATURE = 100.0  # softmax(100 * cosine)
MT_TOP_K = 5
MT_FIRST_TIMELAPSE = 5  # descriptions 0-4 count as "general", 5-9 as "metamorphic"


def metamorphic_score(cosines: np.ndarray, top_k: int = MT_TOP_K) -> float:
    """The probability mass on the time-lapse descriptions among the ``top_k`` most likely.

    Probabilities are ``softmax(100 · cosine)`` over all ten descriptions;
    the mass is their plain sum (not renormalised within the top k).
    """
    logits = MT_TEMPERATURE * np.asarray(cosines, dtype=np.float64)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    top = np.argsort(-probs, kind="stable")[:top_k]
    return float(probs[top[top >= MT_FIRST_TIMELAPSE]].sum())


def mtscore_input(frames: np.ndarray) -> torch.Tensor:
    """``float [1, 4, 3, 224, 224]``: ``frames[::n//4][:4]``, OpenCV bilinear resize, ImageNet normalisation.

    The official script reads BGR frames with OpenCV and flips them to RGB
    before resizing; resizing commutes with the flip, so RGB frames are resized
    directly. Normalisation is done in float64 and cast to float32, as there.
    """
    picked = [cv2_resize(frames[i], MT_SIZE, MT_SIZE) for i in mtscore_indices(len(frames), MT_FRAMES)]
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    normalised = (np.stack(picked) / 255.0 - mean) / std
    return torch.from_numpy(normalised.transpose(0, 3, 1, 2)).float()[None]


class MTScore:
    """Metamorphic amplitude: how much InternVideo2 matches the video to the time-lapse descriptions."""

    name = "mtscore"
    needs_reference = False

    def __init__(self, spec: BackendSpec, device: torch.device, descriptions: OfficialText):
        what = "weights.internvideo2 (InternVideo2 stage-2 1B)"
        self.model = load_backend(spec, what, ("encode_video", "encode_text"), device, released=load_internvideo2)
        self.spec, self.device, self.descriptions = spec, device, descriptions
        ids, mask = Tokenizer(spec.tokenizer, MT_MAX_TOKENS, what)(list(descriptions.value), device)
        with torch.no_grad():
            self.text = F.normalize(self.model.encode_text(ids, mask).float(), dim=-1)

    def fingerprint(self) -> dict[str, Any]:
        return {
            "weights": self.spec.path or self.spec.factory,
            "descriptions": list(self.descriptions.value),
            "descriptions_source": self.descriptions.source,
            "leaderboard_comparable": self.descriptions.official,
        }

    @torch.no_grad()
    def score(self, item: VideoItem) -> dict[str, float]:
        embedding = F.normalize(self.model.encode_video(mtscore_input(item.frames).to(self.device)).float(), dim=-1)
        cosines = (embedding @ self.text.T)[0].cpu().numpy()
        return {"score": metamorphic_score(cosines)}


# ---------------------------------------------------------------- UMT (UMTScore, UMT-FVD)

UMT_FRAMES = 12  # num_frames_test
UMT_SIZE = 224  # image_res
UMT_MAX_TOKENS = 32  # max_txt_l
UMT_FEATURE_DIM = 768  # the vision projection's width (the shipped reference features' D)


def umt_input(frames: np.ndarray, device: torch.device) -> torch.Tensor:
    """``float [1, 12, 3, 224, 224]``: segment-middle frames, torchvision-style uint8 bicubic resize, ImageNet."""
    resized = resize_uint8_bicubic_antialias(frames[umt_indices(len(frames), UMT_FRAMES)], UMT_SIZE, UMT_SIZE)
    return imagenet_normalise(resized.float().div(255.0))[None].to(device)


class UMTScore:
    """Text alignment: UMT's image-text-matching logit for "match" of (video, prompt)."""

    name = "umtscore"
    needs_reference = False

    def __init__(self, spec: BackendSpec, device: torch.device):
        what = "weights.umt (UMT-L/16 UMT-msrvtt-7k)"
        self.model = load_backend(spec, what, ("match_logit",), device, released=load_umt)
        self.tokenizer = Tokenizer(spec.tokenizer, UMT_MAX_TOKENS, what)
        self.spec, self.device = spec, device

    def fingerprint(self) -> dict[str, Any]:
        return {"weights": self.spec.path or self.spec.factory, "max_length": UMT_MAX_TOKENS, "frames": UMT_FRAMES}

    @torch.no_grad()
    def score(self, item: VideoItem) -> dict[str, float]:
        ids, mask = self.tokenizer([item.prompt], self.device)
        logit = self.model.match_logit(umt_input(item.frames, self.device), ids, mask)
        return {"score": float(logit.reshape(-1)[0])}


UMT_FVD_SIZES = (32, 64, 128, 256, 300, 512, 1024)  # fvd32_16f ... fvd1024_16f
UMT_FVD_SEEDS = (12, 22, 32, 42)  # step1_get_umtfvd.sh


def umt_fvd_subset(count: int, size: int, seed: int) -> list[int]:
    """The rows the benchmark uses for one (size, seed): Python's ``random.sample`` after seeding with ``seed``.

    Both sides draw with the same seed, so real and generated sets of the same
    length get the same indices (the same prompts, in the official file
    order). ``size >= count`` keeps every row.
    """
    if size >= count:
        return list(range(count))
    return random.Random(seed).sample(range(count), size)


def umt_fvd_protocol(generated: np.ndarray, reference: np.ndarray) -> DistanceResult:
    """UMT-FVD: the mean over sizes 32 … 1024 of the mean over seeds 12, 22, 32, 42 of each subset's distance.

    Every size has the same four seeds, so this equals the plain mean over
    the 28 (size, seed) values. Subsets that coincide (every size at or above
    the set size is the whole set) are computed once; ``details`` says how
    many distinct subset pairs there were, so the spread of a small set is not
    mistaken for 28 independent draws.
    """
    cache: dict[tuple[tuple[int, ...], tuple[int, ...]], float] = {}
    per_size: dict[str, list[float]] = {}
    for size in UMT_FVD_SIZES:
        values = []
        for seed in UMT_FVD_SEEDS:
            key = (tuple(umt_fvd_subset(len(generated), size, seed)), tuple(umt_fvd_subset(len(reference), size, seed)))
            if key not in cache:
                cache[key] = frechet_distance_sqrtm(*population_stats(generated[list(key[0])]),
                                                    *population_stats(reference[list(key[1])]))
            values.append(cache[key])
        per_size[str(size)] = values
    distinct = np.array(list(cache.values()))
    details = {
        "per_size": per_size,
        "rows": [len(generated), len(reference)],
        "distinct_subsets": len(cache),
        "distinct_std": float(distinct.std(ddof=1)) if distinct.size > 1 else 0.0,
    }
    return DistanceResult(float(np.mean([np.mean(v) for v in per_size.values()])), details)


def load_umt_reference_features(path: str) -> np.ndarray:
    """The benchmark's shipped reference features (``gt150_feats.pt`` / ``gt1649_feats.pt``): a tensor ``[N, 768]``.

    Read as the official code does (``torch.load``), checked, and returned as
    float32 rows in file order. Anything else is an error naming the file.
    """
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as err:
        raise EvalError(f"reference.umt_features: {path} not found") from err
    except Exception as err:  # torch raises several types for non-torch files
        raise EvalError(f"reference.umt_features: {path} is not a torch.save file ({err.__class__.__name__})") from err
    if not isinstance(loaded, torch.Tensor) or loaded.ndim != 2 or loaded.shape[1] != UMT_FEATURE_DIM:
        shape = tuple(loaded.shape) if isinstance(loaded, torch.Tensor) else type(loaded).__name__
        raise EvalError(f"reference.umt_features: {path} holds {shape}; expected a tensor [N, {UMT_FEATURE_DIM}]")
    if not loaded.is_floating_point() or loaded.shape[0] < 2:
        raise EvalError(f"reference.umt_features: {path} needs at least 2 floating-point rows, has {loaded.shape[0]} "
                        f"of {loaded.dtype}")
    return loaded.float().numpy()


class UMTFVD:
    """UMT-FVD: Fréchet distance of UMT video features, generated vs reference (lower is better)."""

    name = "umt_fvd"

    def __init__(self, spec: BackendSpec, device: torch.device):
        self.model = load_backend(spec, "weights.umt (UMT-L/16 UMT-msrvtt-7k)", ("encode_video",), device,
                                  released=load_umt)
        self.spec, self.device = spec, device

    def fingerprint(self) -> dict[str, Any]:
        return {"weights": self.spec.path or self.spec.factory, "frames": UMT_FRAMES, "size": UMT_SIZE}

    @torch.no_grad()
    def features(self, frames: np.ndarray) -> np.ndarray:
        return self.model.encode_video(umt_input(frames, self.device)).float().cpu().numpy().reshape(1, -1)


# ---------------------------------------------------------------- CHScore

CH_GRID = 30  # grid_size: CoTracker2's own 30x30 grid on frame 0, no support grid
CH_CUT = 0.1  # threshold on the frame-to-frame change of the missed fraction
CH_WEIGHTS = {"ampr": 0.35, "mpvr": 0.25, "fcr": 0.15, "cmpv": 0.15, "mcmpv": 0.10}
# Upper bounds of the min-max normalisation (lower bounds 0), at the precision the official script states them.
CH_BOUNDS = {"ampr": 0.9368749856948853, "mpvr": 0.8997353911399841, "fcr": 0.625, "cmpv": 20.0, "mcmpv": 1.0}
CH_DIRECTION_EPS = 1e-8  # added to the direction's norm (points that do not move have no direction)


def missed_fraction(tracks: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """Per frame, the fraction of points that are invisible and did not move away along their own direction.

    A point's direction is the unit vector of its displacement from frame 0
    to frame ``T // 2``. At frame ``t`` the point counts as gone "far" when its
    displacement from frame 0 has a positive projection on that direction;
    an invisible point that is not far is missed. ``tracks [T, N, 2]`` (x, y),
    ``visible [T, N]`` bool.
    """
    tracks = np.asarray(tracks, dtype=np.float64)
    direction = tracks[len(tracks) // 2] - tracks[0]
    unit = direction / (np.linalg.norm(direction, axis=1, keepdims=True) + CH_DIRECTION_EPS)
    projection = ((tracks - tracks[0]) * unit).sum(axis=-1)
    return (~np.asarray(visible, dtype=bool) & ~(projection > 0)).mean(axis=1)


def chscore_components(missed: np.ndarray) -> dict[str, float]:
    """AMPR, MPVR, FCR, CMPV, MCMPV from the per-frame missed fraction.

    ``d`` = |frame-to-frame change| of the fraction; a cut is any ``d > 0.1``.
    MPVR is the sample standard deviation of ``d`` (``torch.std``'s default,
    N - 1), FCR divides the cuts by the number of frames.
    """
    missed = np.asarray(missed, dtype=np.float64)
    if missed.size < 3:
        raise EvalError(f"CHScore needs at least 3 frames (the spread of 2 changes), got {missed.size}")
    change = np.abs(np.diff(missed))
    cuts = int((change > CH_CUT).sum())
    return {
        "ampr": float(missed.mean()),
        "mpvr": float(change.std(ddof=1)),
        "fcr": cuts / len(missed),
        "cmpv": float(cuts),
        "mcmpv": float(change.max()),
    }


def instability_index(components: dict[str, float]) -> float:
    """The weighted sum of the components, each divided by its fixed upper bound (not clipped)."""
    return float(sum(CH_WEIGHTS[k] * components[k] / CH_BOUNDS[k] for k in CH_WEIGHTS))


def chscore_from_instability(instability: float) -> float:
    """The video's CHScore: the reciprocal of the instability index, 0 when it is 0."""
    return 0.0 if instability == 0 else 1.0 / instability


class CHScore:
    """Temporal coherence from CoTracker2's 30×30 grid on frame 0, tracked through every frame."""

    name = "chscore"
    needs_reference = False

    def __init__(self, spec: BackendSpec, device: torch.device):
        self.tracker = load_backend(spec, "weights.cotracker (CoTracker2)", ("track",), device,
                                    released=load_cotracker2)
        self.spec, self.device = spec, device

    def fingerprint(self) -> dict[str, Any]:
        return {"weights": self.spec.path or self.spec.factory, "grid": CH_GRID, "cut": CH_CUT}

    @torch.no_grad()
    def score(self, item: VideoItem) -> dict[str, float]:
        video = torch.from_numpy(np.ascontiguousarray(item.frames)).permute(0, 3, 1, 2).float()[None]
        tracks, visible = self.tracker.track(video.to(self.device), CH_GRID)
        parts = chscore_components(missed_fraction(tracks[0].double().cpu().numpy(), visible[0].bool().cpu().numpy()))
        instability = instability_index(parts)
        return {"score": chscore_from_instability(instability), "instability": instability, **parts}
