"""The evaluation config: YAML + ``key=value`` overrides, validated like the training config.

Benchmark constants (frame counts, CHScore weights and bounds, UMT-FVD
subset sizes and seeds) are *not* here: they define the benchmark and live
next to the metrics; its texts come from a checkout (``chronomagic_repo``). The config holds what differs per
run: models, seeds, sampling settings, where weights and reference videos
are, and statistics settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from seppo_video.config import ConfigError, load_dataclass
from seppo_video.evaluation.backends import BackendSpec
from seppo_video.sample import SampleSettings


@dataclass
class ModelEntry:
    name: str = "model"  # folder name under videos/ and scores/, and the report's "Model" column
    model: str = "tiny:animatediff"  # export folder, diffusers folder, AnimateDiff folder or tiny:<kind>
    backbone: str | None = None  # report's "Backbone" column (default: from the pipeline class)


@dataclass
class GenerationConfig(SampleSettings):
    """Sampling settings with the benchmark's defaults (MagicTime: 16 frames at 512x512, 8 fps)."""

    num_frames: int = 16
    height: int = 512
    width: int = 512
    num_inference_steps: int = 25
    device: str | None = None  # default: cuda when available

    def settings(self) -> SampleSettings:
        return SampleSettings(self.num_frames, self.height, self.width, self.num_inference_steps,
                              self.guidance_scale, self.fps)


@dataclass
class ReferenceConfig:
    # Folder of real clips named <videoid>.mp4 (FID, FVD, LPIPS, SSIM, PSNR, UMT-FVD);
    # "tiny" writes synthetic clips for the prompt ids (demo / tests only).
    videos: str | None = None
    # The benchmark's shipped UMT reference features, UMT/gt_feature/gt150_feats.pt or gt1649_feats.pt
    # (a torch tensor, fp16 [N, 768], rows in the official prompt order); used for UMT-FVD instead of videos.
    umt_features: str | None = None
    umt_features_sha256: str | None = None  # checked by `seppo-video eval doctor` (docs list the shipped files')


@dataclass
class WeightsConfig:
    umt: BackendSpec = field(default_factory=BackendSpec)  # UMT-L/16 "UMT-msrvtt-7k": UMTScore, UMT-FVD
    internvideo2: BackendSpec = field(default_factory=BackendSpec)  # InternVideo2 stage-2 1B: MTScore
    cotracker: BackendSpec = field(default_factory=BackendSpec)  # CoTracker2: CHScore
    i3d: BackendSpec = field(default_factory=BackendSpec)  # I3D (Kinetics-400): FVD
    inception: BackendSpec = field(default_factory=BackendSpec)  # Inception-v3: FID
    lpips: BackendSpec = field(default_factory=BackendSpec)  # LPIPS distance
    clip: BackendSpec = field(default_factory=BackendSpec)  # CLIPModel folder: CLIP score
    pickscore: BackendSpec = field(default_factory=BackendSpec)  # PickScore CLIPModel folder (+ processor)
    hpsv2: BackendSpec = field(default_factory=BackendSpec)  # HPS v2(.1) checkpoint (needs open_clip_torch)


@dataclass
class ScoringConfig:
    device: str | None = None  # default: cuda when available
    fid_frames: int = 16  # frames per video fed to the FID extractor (evenly spaced)
    fvd_frames: int = 16  # clip length fed to I3D (evenly spaced; repeats for short videos)
    fvd_size: int = 224
    preference_frames: int | None = None  # frames per video scored by CLIP/PickScore/HPSv2 (None: all)


@dataclass
class StatsConfig:
    bootstrap: int = 1000  # resamples for per-video metrics
    distribution_bootstrap: int = 100  # resamples for FID / FVD / UMT-FVD (each recomputes distances)
    confidence: float = 0.95
    seed: int = 0


@dataclass
class Gpt4oConfig:
    # A remote, paid call: off unless enabled here (or --gpt4o-client) with a client you supply.
    enabled: bool = False
    # "package.module:callable" (frames: list[uint8 HxWx3], names: list[str], rubric: str) -> reply text
    client: str | None = None
    rubric: str | None = None  # your own rubric when chronomagic_repo is not set (not leaderboard-comparable)


@dataclass
class EvalConfig:
    out: str = "runs/eval"  # videos/, scores/ and the report files (report.json, ...) go here
    prompts: str = "data/chronomagic_bench_sample.csv"
    max_prompts: int | None = None
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # one sample set per seed
    models: list[ModelEntry] = field(default_factory=lambda: [ModelEntry()])
    metrics: list[str] | None = None  # None: every metric whose weights are configured (others skipped)
    # A local checkout of PKU-YuanGroup/ChronoMagic-Bench: MTScore's descriptions and GPT4o-MTScore's rubric
    # are read from it (docs/evaluation.md names the files). Without it those scores are not leaderboard-comparable.
    chronomagic_repo: str | None = None
    # MTScore's ten descriptions when chronomagic_repo is not set: your own wording, five ordinary then five
    # time-lapse (scores marked not leaderboard-comparable).
    mtscore_descriptions: list[str] | None = None
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)
    weights: WeightsConfig = field(default_factory=WeightsConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    gpt4o: Gpt4oConfig = field(default_factory=Gpt4oConfig)


def load_eval_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> EvalConfig:
    """Read an eval YAML (or the defaults), apply ``a.b=value`` overrides, validate."""
    config = load_dataclass(EvalConfig, path, overrides)
    _validate(config)
    return config


def _validate(config: EvalConfig) -> None:
    if not config.seeds:
        raise ConfigError("seeds: give at least one seed (one sample set per seed)")
    if len(set(config.seeds)) != len(config.seeds):
        raise ConfigError(f"seeds: repeated seeds give identical sets: {config.seeds}")
    names = [m.name for m in config.models]
    if len(set(names)) != len(names):
        raise ConfigError(f"models: names must be unique, got {names}")
    if not 0.0 < config.stats.confidence < 1.0:
        raise ConfigError(f"stats.confidence: must be in (0, 1), got {config.stats.confidence}")
    for key in ("bootstrap", "distribution_bootstrap"):
        if getattr(config.stats, key) < 1:
            raise ConfigError(f"stats.{key}: must be at least 1")
    for key in ("fid_frames", "fvd_frames", "fvd_size"):
        if getattr(config.scoring, key) < 1:
            raise ConfigError(f"scoring.{key}: must be positive")
