"""Which metrics exist, what each needs, and building the ones a run can compute.

A metric whose weights (or reference videos) are not configured is skipped
with a message naming what it needs, and the rest still run; a metric the
user asked for by name must run, so it fails with that message instead.
Weights that are configured but broken always fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from seppo_video.evaluation.backends import import_callable
from seppo_video.evaluation.config import EvalConfig
from seppo_video.evaluation.errors import EvalError, MetricUnavailable
from seppo_video.evaluation.frechet import frechet_distance
from seppo_video.evaluation.metrics.base import DistanceResult


@dataclass(frozen=True)
class MetricInfo:
    name: str
    title: str  # column name in reports (the leaderboard's spelling for benchmark metrics)
    kind: str  # "video" (per-video score) | "distribution" (Fréchet distance of features)
    higher_is_better: bool
    group: str  # "benchmark" | "paper" | "preference"
    weights: str | None  # key under `weights:` in the eval config
    needs: str  # what the weights are, for messages
    reference: bool = False  # compares with reference videos
    factory: bool = True  # weights may come from `factory` (TorchScript-interface networks only)


METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo("umt_fvd", "UMT-FVD", "distribution", False, "benchmark", "umt",
                   "UMT-L/16 'UMT-msrvtt-7k' (video features) + reference.umt_features (gt*_feats.pt) or reference "
                   "videos", True),
        MetricInfo("umtscore", "UMTScore", "video", True, "benchmark", "umt",
                   "UMT-L/16 'UMT-msrvtt-7k' with its BERT-large ITM head and tokenizer"),
        MetricInfo("mtscore", "MTScore", "video", True, "benchmark", "internvideo2",
                   "InternVideo2 stage-2 1B (224p, 4 frames) with its BERT-large tokenizer"),
        MetricInfo("chscore", "CHScore", "video", True, "benchmark", "cotracker", "CoTracker2 point tracker"),
        MetricInfo("gpt4o_mtscore", "GPT4o-MTScore", "video", True, "benchmark", None,
                   "a remote multimodal client (--gpt4o-client module:callable, gpt4o.enabled)"),
        MetricInfo("fid", "FID", "distribution", False, "paper", "inception",
                   "an Inception-v3 feature extractor (e.g. inception-2015-12-05.pt) + reference videos", True),
        MetricInfo("fvd", "FVD", "distribution", False, "paper", "i3d",
                   "an I3D video feature extractor (e.g. i3d_torchscript.pt) + reference videos", True),
        MetricInfo("lpips", "LPIPS", "video", False, "paper", "lpips", "an LPIPS network + reference videos", True),
        MetricInfo("ssim", "SSIM", "video", True, "paper", None, "reference videos", True),
        MetricInfo("psnr", "PSNR", "video", True, "paper", None, "reference videos", True),
        MetricInfo("clip_score", "CLIPScore", "video", True, "preference", "clip", "a transformers CLIPModel folder", factory=False),
        MetricInfo("pickscore", "PickScore", "video", True, "preference", "pickscore",
                   "the PickScore_v1 CLIPModel folder (+ processor folder of laion/CLIP-ViT-H-14)", factory=False),
        MetricInfo("hpsv2", "HPSv2", "video", True, "preference", "hpsv2",
                   "an HPS v2/v2.1 checkpoint (.pt) and open_clip_torch", factory=False),
    )
}


@dataclass
class MetricSet:
    video: list[Any] = field(default_factory=list)
    distribution: list[Any] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why


def parse_metric_names(values: list[str] | None) -> list[str] | None:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]``, checked against the known metrics."""
    if not values:
        return None
    names = [n.strip().lower() for v in values for n in v.split(",") if n.strip()]
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise EvalError(f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(METRICS)}")
    return names


def missing_requirement(info: MetricInfo, config: EvalConfig, has_reference: bool) -> str | None:
    """Why ``info`` cannot run with this config, or ``None`` when it can."""
    if info.name == "gpt4o_mtscore":
        if not (config.gpt4o.enabled and config.gpt4o.client):
            return f"{info.title} needs {info.needs}; it is a remote, paid call and off by default"
        if not (config.chronomagic_repo or config.gpt4o.rubric):
            return f"{info.title} needs its rubric: set chronomagic_repo (a ChronoMagic-Bench checkout) or gpt4o.rubric"
        return None
    if info.weights:
        spec = getattr(config.weights, info.weights)
        if not (spec.configured if info.factory else spec.path):
            keys = f"weights.{info.weights}.path" + (" (or .factory)" if info.factory else "")
            return f"{info.title} needs {info.needs}: set {keys}"
    if info.name == "mtscore" and not (config.chronomagic_repo or config.mtscore_descriptions):
        return (f"{info.title} needs its ten descriptions: set chronomagic_repo (a ChronoMagic-Bench checkout) "
                "or mtscore_descriptions")
    reference_ok = has_reference or (info.name == "umt_fvd" and bool(config.reference.umt_features))
    if info.reference and not reference_ok:
        return f"{info.title} needs reference videos: set reference.videos (a folder of <videoid>.mp4)"
    return None


def check_reference_features(config: EvalConfig) -> None:
    """Fail now, naming the file, when ``reference.umt_features`` is not the benchmark's features tensor.

    Called before any video is generated, so a wrong file costs seconds, not a generation run.
    """
    if config.reference.umt_features:
        from seppo_video.evaluation.metrics.chronomagic import load_umt_reference_features

        load_umt_reference_features(config.reference.umt_features)


def build_metrics(config: EvalConfig, requested: list[str] | None, has_reference: bool, device: torch.device) -> MetricSet:
    """Load every metric that can run; skip (default) or refuse (requested) the others."""
    result = MetricSet()
    names = requested if requested is not None else list(METRICS)
    for name in names:
        info = METRICS[name]
        reason = missing_requirement(info, config, has_reference)
        if reason is not None:
            if requested is not None:
                raise MetricUnavailable(f"metric {name!r} was requested but cannot run: {reason}")
            result.skipped[name] = reason
            continue
        metric = _construct(name, config, device)
        (result.video if info.kind == "video" else result.distribution).append(metric)
    return result


def _construct(name: str, config: EvalConfig, device: torch.device) -> Any:
    from seppo_video.evaluation.metrics import (
        chronomagic,
        distribution,
        paired,
        preference,
    )
    from seppo_video.evaluation.metrics.gpt4o import GPT4oMTScore
    from seppo_video.evaluation.official import gpt4o_rubric, mtscore_descriptions

    weights, scoring = config.weights, config.scoring
    builders = {
        "umt_fvd": lambda: chronomagic.UMTFVD(weights.umt, device),
        "umtscore": lambda: chronomagic.UMTScore(weights.umt, device),
        "mtscore": lambda: chronomagic.MTScore(
            weights.internvideo2, device, mtscore_descriptions(config.chronomagic_repo, config.mtscore_descriptions)),
        "chscore": lambda: chronomagic.CHScore(weights.cotracker, device),
        "gpt4o_mtscore": lambda: GPT4oMTScore(import_callable(str(config.gpt4o.client), "gpt4o.client"),
                                              str(config.gpt4o.client),
                                              gpt4o_rubric(config.chronomagic_repo, config.gpt4o.rubric)),
        "fid": lambda: distribution.FID(weights.inception, device, scoring.fid_frames),
        "fvd": lambda: distribution.FVD(weights.i3d, device, scoring.fvd_frames, scoring.fvd_size),
        "lpips": lambda: paired.LPIPS(weights.lpips, device),
        "ssim": paired.SSIM,
        "psnr": paired.PSNR,
        "clip_score": lambda: preference.ClipFamilyScore("clip_score", weights.clip, device, scoring.preference_frames),
        "pickscore": lambda: preference.ClipFamilyScore("pickscore", weights.pickscore, device, scoring.preference_frames),
        "hpsv2": lambda: preference.HPSv2Score(weights.hpsv2, device, scoring.preference_frames),
    }
    return builders[name]()


def set_distance(name: str, generated: list[np.ndarray], reference: list[np.ndarray]) -> DistanceResult:
    """A distribution metric's value for one generated set: per-video features in, distance out.

    UMT-FVD follows the benchmark's subset protocol (its own sizes and seeds);
    FID and FVD use every generated and reference feature row. Rows keep the
    order given (the prompt file's), which UMT-FVD's subsets index.
    """
    from seppo_video.evaluation.metrics.chronomagic import umt_fvd_protocol

    a, b = np.concatenate(generated), np.concatenate(reference)
    if name == "umt_fvd":
        return umt_fvd_protocol(a, b)
    return DistanceResult(frechet_distance(a, b), {"rows": [len(a), len(b)]})
