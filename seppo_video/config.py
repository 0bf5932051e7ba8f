"""Typed configuration: YAML files + ``key=value`` overrides, validated early.

The schema is a tree of dataclasses. Loading walks it and rejects, with the
dotted key and what is allowed, any unknown key (suggesting the nearest one),
wrong type, or value outside a ``Literal``. A run never discovers a typo at
step 9,000.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import importlib.util
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A configuration problem, with the dotted key it concerns."""


REF_STRATEGIES = ("uniform", "initial", "latest", "fixed:<k>")


def parse_strategy(text: str) -> tuple[str, int | None]:
    """A reference strategy (``seppo.ref_strategy``): ``"uniform" -> ("uniform", None)``, ``"fixed:3" -> ("fixed", 3)``."""
    match = re.fullmatch(r"fixed:(-?\d+)", text)
    if match:
        return "fixed", int(match.group(1))
    if text in ("uniform", "initial", "latest"):
        return text, None
    raise ValueError(f"unknown reference strategy {text!r} (allowed: {', '.join(REF_STRATEGIES)})")


Method = Literal["seppo", "sft", "dpo", "spin", "ditto"]
AAFMode = Literal["sign", "indicator", "none"]
Trainable = Literal["motion", "lora", "full"]
Precision = Literal["no", "fp16", "bf16"]
PredictionType = Literal["epsilon", "v_prediction", "sample"]
PREDICTION_TYPES: tuple[str, ...] = typing.get_args(PredictionType)
TimestepSampling = Literal["uniform", "logit_normal"]
# Scheduler classes whose config describes a rectified-flow (flow-matching) model rather than a
# DDPM one: x_t = (1 - s) x0 + s eps, the network predicts the velocity eps - x0.
FLOW_MATCHING_SCHEDULERS: tuple[str, ...] = ("FlowMatchEulerDiscreteScheduler",)
# NoiseSchedulerConfig keys that shape how training draws s, not the diffusers scheduler itself.
FLOW_SAMPLING_KEYS: tuple[str, ...] = ("timestep_sampling", "logit_mean", "logit_std")


def is_flow_matching(schedule: dict[str, Any]) -> bool:
    """Whether a scheduler config (``scheduler_config.json`` as a dict) is a flow-matching one:
    a flow-matching scheduler class, or a multistep solver in its flow mode (the published Wan 2.1
    Diffusers folders ship ``UniPCMultistepScheduler`` with ``prediction_type: flow_prediction``)."""
    flow_mode = bool(schedule.get("use_flow_sigmas")) and schedule.get("prediction_type") == "flow_prediction"
    return schedule.get("_class_name") in FLOW_MATCHING_SCHEDULERS or flow_mode


# CogVideoX's schedulers: a DDPM schedule whose alphas_cumprod are SNR-shifted (``snr_shift_scale``)
# before the zero-terminal-SNR rescale, so neither DDPMScheduler nor DDIMScheduler reproduces them.
COGVIDEOX_SCHEDULERS: tuple[str, ...] = ("CogVideoXDDIMScheduler", "CogVideoXDPMScheduler")
NoiseFamily = Literal["flow", "cogvideox", "ddpm"]


def noise_family(schedule: dict[str, Any]) -> NoiseFamily:
    """Which forward process a scheduler config describes: rectified flow, CogVideoX's SNR-shifted
    DDPM, or plain DDPM (every other DDPM-style scheduler: DDIM, PNDM, ...)."""
    if is_flow_matching(schedule):
        return "flow"
    return "cogvideox" if schedule.get("_class_name") in COGVIDEOX_SCHEDULERS else "ddpm"


@dataclass
class LoraConfig:
    rank: int = 4
    alpha: float = 4.0
    targets: list[str] = field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"])
    dropout: float = 0.0


@dataclass
class NoiseSchedulerConfig:
    """The diffusion schedule the backbone was trained with: training noise, targets and sampling use it.

    ``null`` keeps the backbone's default: for AnimateDiff the schedule its motion modules were
    trained with (``linear``, 0.00085 to 0.012), not the SD-1.5 folder's ``scaled_linear``; for
    ModelScope and SD the pipeline folder's ``scheduler/``.
    """

    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] | None = None
    beta_start: float | None = None
    beta_end: float | None = None
    # What the network outputs: the noise, v = alpha_t * eps - sigma_t * x0, or x0 itself.
    prediction_type: PredictionType | None = None
    timestep_spacing: Literal["leading", "linspace", "trailing"] | None = None
    rescale_betas_zero_snr: bool | None = None
    # Flow-matching backbones (Wan) only. ``shift``: FlowMatchEulerDiscreteScheduler's sigma shift
    # s' = shift * s / (1 + (shift - 1) * s), for training draws and reference sampling alike
    # (null: the pipeline folder's). ``timestep_sampling``: the density of the noise level u in
    # [0, 1] before the shift (training uses the scheduler's shifted sigma table entry for u):
    # ``uniform`` (the default) or ``logit_normal`` (u = sigmoid(N(logit_mean, logit_std)), SD3's
    # choice, defaults 0 and 1); see README "Flow matching".
    shift: float | None = None
    timestep_sampling: TimestepSampling | None = None
    logit_mean: float | None = None
    logit_std: float | None = None


@dataclass
class ModelConfig:
    kind: Literal["animatediff", "modelscope", "sd", "wan", "cogvideox", "ltx"] = "animatediff"
    # A local diffusers directory, "tiny" for the embedded random-init model (built on first use
    # in the cache), or "world" for the synthetic world's pretrained base (shipped for modelscope and wan).
    # AnimateDiff: the SD-1.5 pipeline folder.
    pretrained: str = "tiny"
    # AnimateDiff only: a MotionAdapter folder ("tiny" goes with pretrained=tiny).
    motion_adapter: str | None = None
    trainable: Trainable = "motion"
    lora: LoraConfig = field(default_factory=LoraConfig)
    attention: Literal["sdpa", "xformers"] = "sdpa"
    gradient_checkpointing: bool = False
    vae_chunk_frames: int = 8  # frames per VAE call: bounds VAE memory
    noise_scheduler: NoiseSchedulerConfig = field(default_factory=NoiseSchedulerConfig)


@dataclass
class WorldDataConfig:
    """The synthetic time-lapse world (``data.kind: world``, ``seppo_video/data/world.py``): latent clips
    of a coloured disc whose reward is known. Its 40 prompts are split once (``split_seed``) into
    training, validation and held-out prompts; training uses the training prompts only."""

    clips_per_prompt: int = 4
    # Share of the clips replaced by a defective one (a pretraining mixture); 0 for winners only.
    bad_fraction: float = 0.0
    clip_seed: int = 1  # draws the clips
    split_seed: int = 0
    validation_prompts: int = 8
    held_out_prompts: int = 8


@dataclass
class DataConfig:
    kind: Literal["video", "image", "demo", "world"] = "demo"
    annotations: str | None = None  # CSV / JSON / JSONL (video) or parquet / JSONL (image)
    video_dir: str | None = None
    image_dir: str | None = None
    num_frames: int = 8
    resolution: int = 64
    frame_stride: int = 4
    target_fps: float | None = None
    max_bad_fraction: float = 0.2  # stop when more of the data than this is unreadable
    latent_cache: str | None = None
    world: WorldDataConfig = field(default_factory=WorldDataConfig)
    batch_size: int = 2
    num_workers: int = 0
    shuffle: bool = True


@dataclass
class SeppoConfig:
    method: Method = "seppo"
    # None: implied by the method (ALGORITHM.md section 3). Set for ablations.
    ref_strategy: str | None = None  # uniform | initial | latest | fixed:<k>
    aaf: AAFMode | None = None
    beta: float = 2.5  # beta * T = 2500, Diffusion-DPO's SD-1.5 setting
    num_train_timesteps: int = 1000
    # lambda: adds lambda * e_theta(x_w) (the winners' denoising loss) to the preference loss of
    # seppo / dpo / spin / ditto, a brake on loser-dominant collapse (docs/training_health.md).
    sft_weight: float = 0.0
    ref_every: int = 10  # paper: 30 updates between snapshots
    pool_size: int = 8
    pool_device: Literal["cpu", "disk"] = "cpu"
    pool_dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    ref_sample_steps: int = 4
    ref_guidance_scale: float = 7.5
    ref_eta: float = 0.0
    # Rows per reference forward (None: the whole 2B batch at once). Lower it to bound the
    # reference pass's activation memory; results are the same.
    ref_batch_chunk: int | None = None


@dataclass
class EmaConfig:
    enabled: bool = False
    decay: float = 0.999


@dataclass
class TrainConfig:
    max_steps: int = 40
    learning_rate: float = 1e-4
    lr_scheduler: Literal[
        "constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial"
    ] = "constant_with_warmup"
    lr_warmup_steps: int = 0
    gradient_accumulation_steps: int = 1
    max_grad_norm: float = 1.0
    mixed_precision: Precision = "no"
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    weight_decay: float = 1e-2
    use_8bit_adam: bool = False
    ema: EmaConfig = field(default_factory=EmaConfig)
    checkpoint_every: int = 20
    checkpoints_keep: int = 2
    max_nonfinite_in_row: int = 5
    # Policy forwards in train mode (dropout as the model defines it: ModelScope's temporal
    # convolutions, LoRA dropout); false makes them deterministic. Reference passes and
    # reference sampling are always deterministic (eval mode).
    policy_dropout: bool = True
    log_every: int = 1
    log_with: Literal["tensorboard", "wandb", "none"] = "tensorboard"
    # End the run (checkpoint, export, summary) when the collapse alarm fires (docs/training_health.md).
    stop_on_collapse: bool = False


@dataclass
class SampleConfig:
    prompts: list[str] = field(
        default_factory=lambda: ["a red circle growing, time-lapse", "a sky turning from day to night, time-lapse"]
    )
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    num_inference_steps: int = 8
    guidance_scale: float = 7.5
    fps: int = 8


@dataclass
class Config:
    """The whole run. The defaults are the tiny AnimateDiff mechanics demo (configs/tiny_animatediff.yaml spells
    them out); the README's demo, configs/tiny.yaml, aligns the synthetic world's base model."""

    output_dir: str = "runs/tiny"
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    seppo: SeppoConfig = field(default_factory=SeppoConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- loading


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML file (or the defaults), apply ``a.b=value`` overrides, validate."""
    config = load_dataclass(Config, path, overrides)
    validate(config)
    return config


def config_from_mapping(raw: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """``load_config`` for a config already read (e.g. one recorded beside a model); ``raw`` is not changed."""
    config = dataclass_from_mapping(Config, raw, overrides)
    validate(config)
    return config


def load_dataclass(cls: type, path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Any:
    """Build the schema ``cls`` from a YAML file (optional) and overrides, checking every key and type."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file not found: {path}")
        raw = yaml.safe_load(path.read_text()) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    return dataclass_from_mapping(cls, raw, overrides)


def dataclass_from_mapping(cls: type, raw: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> Any:
    """Build the schema ``cls`` from a raw mapping and overrides (applied to a copy of ``raw``)."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        apply_override(raw, item)
    return build_dataclass(cls, raw, prefix="")


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Set ``a.b.c=value`` (value parsed as YAML) in a raw config mapping."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key=value (e.g. train.max_steps=10)")
    key, text = item.split("=", 1)
    value = yaml.safe_load(text) if text != "" else None
    node = raw
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {key!r}: {part!r} is not a section")
    node[parts[-1]] = value


def build_dataclass(cls: type, raw: Any, prefix: str) -> Any:
    """Build dataclass ``cls`` from a mapping, checking every key and type (errors name ``prefix`` + key)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in fields:
            near = difflib.get_close_matches(key, fields, n=1)
            hint = f"; did you mean '{prefix}{near[0]}'?" if near else ""
            raise ConfigError(f"unknown key '{prefix}{key}'{hint} (allowed: {', '.join(fields)})")
    kwargs = {name: _coerce(hints[name], raw[name], f"{prefix}{name}") for name in fields if name in raw}
    return cls(**kwargs)


_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value if value is not None else {}, prefix=f"{key}.")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value is False and "no" in allowed:  # YAML reads an unquoted `no` as false
            value = "no"
        if value not in allowed:
            raise ConfigError(f"{key}: {value!r} is not allowed (allowed: {', '.join(map(repr, allowed))})")
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[-1] if len(errors) == 1 else f"{key}: {value!r} fits none of {tp}")
    if tp is Any:
        return value
    if origin is dict:
        key_tp, value_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {_coerce(key_tp, k, key): _coerce(value_tp, v, f"{key}.{k}") for k, v in value.items()}
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        return float(value)  # YAML 1.1 reads an exponent without a dot (``1e-4``) as a string
    if tp in (int, float, str, bool):
        if type(value) is not tp:
            raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r} ({type(value).__name__})")
        return value
    raise ConfigError(f"{key}: unsupported type {tp}")


# Settings that need an optional package: (key, value) -> (package, how to fix it).
OPTIONAL_PACKAGES: dict[tuple[str, Any], tuple[str, str]] = {
    ("model.attention", "xformers"): ("xformers", "pip install 'seppo-video[xformers]' (pulls a CUDA torch), or use 'sdpa'"),
    ("train.log_with", "wandb"): ("wandb", "pip install wandb, or use 'tensorboard'"),
    ("train.use_8bit_adam", True): ("bitsandbytes", "pip install bitsandbytes (CUDA only), or set it to false"),
}


def require_package(key: str, value: Any) -> None:
    """Raise ``ConfigError`` when ``key=value`` needs an optional package that is not installed."""
    package, fix = OPTIONAL_PACKAGES.get((key, value), (None, ""))
    if package is not None and importlib.util.find_spec(package) is None:
        raise ConfigError(f"{key}: {value!r} needs {package}, which is not installed; {fix}")


def validate(config: Config) -> None:
    """Value ranges, cross-field checks and optional packages: everything types alone cannot express."""
    model, data, seppo, train, sample = config.model, config.data, config.seppo, config.train, config.sample
    # (key, value, whether it is acceptable, what is allowed)
    checks: list[tuple[str, Any, bool, str]] = [
        ("output_dir", config.output_dir, bool(config.output_dir.strip()), "a non-empty path"),
        ("seed", config.seed, config.seed >= 0, "non-negative"),
        ("model.vae_chunk_frames", model.vae_chunk_frames, model.vae_chunk_frames > 0, "positive"),
        ("model.lora.rank", model.lora.rank, model.lora.rank > 0, "positive"),
        ("model.lora.alpha", model.lora.alpha, _positive(model.lora.alpha), "positive"),
        ("model.lora.targets", model.lora.targets, bool(model.lora.targets), "a non-empty list of module names"),
        ("model.lora.dropout", model.lora.dropout, 0 <= model.lora.dropout < 1, "in [0, 1)"),
        ("model.noise_scheduler.shift", model.noise_scheduler.shift,
         model.noise_scheduler.shift is None or _positive(model.noise_scheduler.shift), "positive or null"),
        ("model.noise_scheduler.logit_std", model.noise_scheduler.logit_std,
         model.noise_scheduler.logit_std is None or _positive(model.noise_scheduler.logit_std), "positive or null"),
        ("data.num_frames", data.num_frames, data.num_frames > 0, "positive"),
        ("data.resolution", data.resolution, data.resolution > 0, "positive"),
        ("data.frame_stride", data.frame_stride, data.frame_stride > 0, "positive"),
        ("data.target_fps", data.target_fps, data.target_fps is None or _positive(data.target_fps), "positive or null"),
        ("data.max_bad_fraction", data.max_bad_fraction, 0 <= data.max_bad_fraction <= 1, "in [0, 1]"),
        ("data.batch_size", data.batch_size, data.batch_size > 0, "positive"),
        ("data.world.clips_per_prompt", data.world.clips_per_prompt, data.world.clips_per_prompt > 0, "positive"),
        ("data.world.bad_fraction", data.world.bad_fraction, 0 <= data.world.bad_fraction <= 1, "in [0, 1]"),
        ("data.world.validation_prompts", data.world.validation_prompts, data.world.validation_prompts >= 0,
         "non-negative"),
        ("data.world.held_out_prompts", data.world.held_out_prompts, data.world.held_out_prompts >= 0, "non-negative"),
        ("data.num_workers", data.num_workers, data.num_workers >= 0, "non-negative"),
        ("seppo.beta", seppo.beta, _positive(seppo.beta), "positive"),
        ("seppo.sft_weight", seppo.sft_weight, _finite(seppo.sft_weight, 0), "finite and >= 0"),
        ("seppo.num_train_timesteps", seppo.num_train_timesteps, seppo.num_train_timesteps > 0, "positive"),
        ("seppo.ref_every", seppo.ref_every, seppo.ref_every > 0, "positive"),
        ("seppo.pool_size", seppo.pool_size, seppo.pool_size >= 2, "at least 2 (theta_0 and one snapshot)"),
        ("seppo.ref_sample_steps", seppo.ref_sample_steps, seppo.ref_sample_steps > 0, "positive"),
        ("seppo.ref_guidance_scale", seppo.ref_guidance_scale, _finite(seppo.ref_guidance_scale, 0), ">= 0"),
        ("seppo.ref_eta", seppo.ref_eta, 0 <= seppo.ref_eta <= 1, "in [0, 1]"),
        ("seppo.ref_batch_chunk", seppo.ref_batch_chunk, seppo.ref_batch_chunk is None or seppo.ref_batch_chunk > 0,
         "positive or null"),
        ("train.max_steps", train.max_steps, train.max_steps > 0, "positive"),
        ("train.learning_rate", train.learning_rate, _positive(train.learning_rate), "positive"),
        ("train.lr_warmup_steps", train.lr_warmup_steps, train.lr_warmup_steps >= 0, "non-negative"),
        ("train.gradient_accumulation_steps", train.gradient_accumulation_steps, train.gradient_accumulation_steps > 0,
         "positive"),
        ("train.max_grad_norm", train.max_grad_norm, _positive(train.max_grad_norm), "positive"),
        ("train.adam_beta1", train.adam_beta1, 0 <= train.adam_beta1 < 1, "in [0, 1)"),
        ("train.adam_beta2", train.adam_beta2, 0 <= train.adam_beta2 < 1, "in [0, 1)"),
        ("train.weight_decay", train.weight_decay, _finite(train.weight_decay, 0), ">= 0"),
        ("train.ema.decay", train.ema.decay, 0 <= train.ema.decay <= 1, "in [0, 1]"),
        ("train.checkpoint_every", train.checkpoint_every, train.checkpoint_every > 0, "positive"),
        ("train.checkpoints_keep", train.checkpoints_keep, train.checkpoints_keep > 0, "positive"),
        ("train.max_nonfinite_in_row", train.max_nonfinite_in_row, train.max_nonfinite_in_row > 0, "positive"),
        ("train.log_every", train.log_every, train.log_every > 0, "positive"),
        ("sample.seeds", sample.seeds, all(seed >= 0 for seed in sample.seeds), "non-negative integers"),
        ("sample.num_inference_steps", sample.num_inference_steps, sample.num_inference_steps > 0, "positive"),
        ("sample.guidance_scale", sample.guidance_scale, _finite(sample.guidance_scale, 0), ">= 0"),
        ("sample.fps", sample.fps, sample.fps > 0, "positive"),
    ]
    for key, value, ok, allowed in checks:
        if not ok:
            raise ConfigError(f"{key}: must be {allowed}, got {value!r}")
    require_package("model.attention", model.attention)
    require_package("train.log_with", train.log_with)
    require_package("train.use_8bit_adam", train.use_8bit_adam)
    if config.seppo.ref_strategy is not None:
        try:
            parse_strategy(config.seppo.ref_strategy)
        except ValueError as err:
            raise ConfigError(f"seppo.ref_strategy: {err}") from None
    if config.seppo.method == "sft" and config.seppo.sft_weight != 0:
        raise ConfigError("seppo.sft_weight: method 'sft' is the winners' denoising loss already; leave it 0 "
                          "(it regularises the preference methods seppo, dpo, spin, ditto)")
    if config.model.kind == "sd" and config.model.trainable == "motion":
        raise ConfigError("model.trainable: 'motion' needs a temporal backbone; for model.kind='sd' use 'lora' or 'full'")
    if config.model.kind in ("wan", "cogvideox", "ltx") and config.model.trainable == "motion":
        raise ConfigError("model.trainable: 'motion' needs separate temporal layers; the transformer blocks of "
                          f"{config.model.kind} attend over space and time together, so for "
                          f"model.kind={config.model.kind!r} use 'lora' or 'full'")
    if config.model.kind == "sd" and config.data.num_frames != 1:
        raise ConfigError("data.num_frames: the image backbone (model.kind='sd') takes exactly 1 frame")
    if config.model.kind == "animatediff" and config.model.pretrained != "tiny" and not config.model.motion_adapter:
        raise ConfigError("model.motion_adapter: AnimateDiff needs a MotionAdapter folder next to model.pretrained")



def _positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def _finite(value: float, minimum: float) -> bool:
    return math.isfinite(value) and value >= minimum

