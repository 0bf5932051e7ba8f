"""One interface over three backbones, on video latents ``[B, C, F, H, W]``.

Everything above this module (loss, pool, sampler, training loop) sees only
video latents and prompt embeddings. The layout quirks of each backbone live
here and nowhere else:

- AnimateDiff (``UNetMotionModel``) takes frames folded into the batch for the
  text conditioning: one row of encoder states *per frame*.
- ModelScope (``UNet3DConditionModel``) takes one row *per video* and repeats
  it itself.
- SD (``UNet2DConditionModel``) has no time axis: frames are folded into the
  batch (``F = 1`` is the image case).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from einops import rearrange
from torch import nn

from seppo_video.config import (
    PREDICTION_TYPES,
    Config,
    ConfigError,
    LoraConfig,
    ModelConfig,
    NoiseSchedulerConfig,
    require_package,
)
from seppo_video.models.tiny import ensure_tiny

# Training-schedule defaults that differ from what the backbone's pipeline folder says.
# AnimateDiff's motion modules (v1 to v3) were trained with a linear beta schedule on SD-1.5
# latents, while the SD-1.5 folder they are loaded beside says ``scaled_linear``.
BACKBONE_SCHEDULES: dict[str, dict] = {
    "animatediff": {"beta_schedule": "linear", "beta_start": 0.00085, "beta_end": 0.012, "clip_sample": False},
}


@dataclass
class ModelPaths:
    """Where a backbone's folders are on disk (resolved from the config)."""

    pipeline: Path  # diffusers pipeline folder (vae, text_encoder, tokenizer, unet, scheduler)
    motion_adapter: Path | None = None  # AnimateDiff only


class VideoDiffusionAdapter:
    """A latent text-to-video diffusion model seen through one interface.

    ``unet`` is the module that is trained; ``vae`` and ``text_encoder`` stay
    frozen. Subclasses only say how to load the UNet, how to call it on
    ``[B, C, F, H, W]`` latents, which parameters are temporal, and which
    diffusers pipeline class samples from it.
    """

    kind: str = ""
    pipeline_class_name: str = ""
    unet_class_name: str = ""  # the diffusers class stored in the pipeline's unet/ folder

    def __init__(self, paths: ModelPaths, unet: nn.Module, vae_chunk_frames: int = 8,
                 noise_scheduler: NoiseSchedulerConfig | None = None):
        from diffusers import AutoencoderKL
        from transformers import CLIPTextModel, CLIPTokenizer

        self.paths = paths
        self.unet = unet
        self.vae = AutoencoderKL.from_pretrained(paths.pipeline, subfolder="vae")
        self.text_encoder = CLIPTextModel.from_pretrained(paths.pipeline, subfolder="text_encoder")
        self.tokenizer = CLIPTokenizer.from_pretrained(paths.pipeline, subfolder="tokenizer")
        # One schedule for the training noise, the training target, the reference sampler and the export.
        self.scheduler_config = resolve_noise_schedule(self.kind, paths, noise_scheduler or NoiseSchedulerConfig())
        self.vae_chunk_frames = vae_chunk_frames
        for frozen in (self.vae, self.text_encoder):
            frozen.requires_grad_(False)
            frozen.eval()
        self.trainable_mode: str | None = None

    @classmethod
    def load(cls, paths: ModelPaths, **options) -> "VideoDiffusionAdapter":
        """``options``: ``vae_chunk_frames``, ``noise_scheduler`` (see ``__init__``)."""
        import diffusers

        unet = getattr(diffusers, cls.unet_class_name).from_pretrained(paths.pipeline, subfolder="unet")
        return cls(paths, unet, **options)

    # ------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def latent_channels(self) -> int:
        return int(self.unet.config.in_channels)

    @property
    def prediction_type(self) -> str:
        """What the UNet outputs: ``epsilon``, ``v_prediction`` or ``sample`` (the scheduler's setting)."""
        return str(self.scheduler_config.get("prediction_type", "epsilon"))

    @property
    def vae_scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "VideoDiffusionAdapter":
        """Move the frozen parts (optionally cast); the UNet is placed by accelerate."""
        self.vae.to(device, dtype=dtype)
        self.text_encoder.to(device, dtype=dtype)
        return self

    # ------------------------------------------------------------ the UNet call
    def predict(
        self,
        latents: torch.Tensor,
        timesteps: torch.Tensor,
        prompt_embeds: torch.Tensor,
        unet: nn.Module | None = None,
    ) -> torch.Tensor:
        """The UNet's output for ``latents [B, C, F, H, W]`` at ``timesteps [B]``: noise, v or x0,
        as ``prediction_type`` says.

        ``prompt_embeds`` is ``[B, L, D]``: one row per video. ``unet`` lets a
        caller pass a wrapped module (accelerate / DDP) with the same weights.
        """
        if latents.ndim != 5:
            raise ValueError(f"latents must be [B, C, F, H, W], got shape {tuple(latents.shape)}")
        batch = latents.shape[0]
        if timesteps.ndim == 0:
            timesteps = timesteps.expand(batch)
        if prompt_embeds.shape[0] != batch or timesteps.shape[0] != batch:
            raise ValueError(
                f"batch mismatch: latents {batch}, timesteps {timesteps.shape[0]}, prompts {prompt_embeds.shape[0]}"
            )
        # Strided inputs (e.g. straight from a rearrange) crashed the CPU backward of
        # UNet3D's temporal convolutions with a segfault on torch 2.13: always pass dense tensors.
        latents = latents.contiguous()
        return self._forward(unet if unet is not None else self.unet, latents, timesteps, prompt_embeds)

    def _forward(self, unet, latents, timesteps, prompt_embeds) -> torch.Tensor:
        raise NotImplementedError

    # ------------------------------------------------------------ text and VAE
    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """CLIP text states ``[B, L, D]``; the empty prompt gives the CFG unconditional row."""
        tokens = self.tokenizer(
            list(prompts),
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        device = next(self.text_encoder.parameters()).device
        return self.text_encoder(tokens.input_ids.to(device))[0]

    @torch.no_grad()
    def encode_video(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Pixels ``[B, 3, F, H, W]`` in [-1, 1] to scaled latents ``[B, C, F, h, w]``.

        Frames go through the VAE ``vae_chunk_frames`` at a time, which bounds
        its activation memory regardless of clip length. Without a generator
        the posterior mode is used (deterministic, so cached latents are
        reproducible).
        """
        batch = pixels.shape[0]
        frames = rearrange(pixels, "b c f h w -> (b f) c h w")
        vae_dtype = next(self.vae.parameters()).dtype
        chunks = []
        for chunk in frames.split(self.vae_chunk_frames):
            posterior = self.vae.encode(chunk.to(self.vae.device, vae_dtype)).latent_dist
            chunks.append(posterior.sample(generator) if generator is not None else posterior.mode())
        latents = torch.cat(chunks) * self.vae_scaling_factor
        return rearrange(latents, "(b f) c h w -> b c f h w", b=batch).contiguous()

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents ``[B, C, F, h, w]`` to pixels ``[B, 3, F, H, W]`` in [-1, 1]."""
        batch = latents.shape[0]
        frames = rearrange(latents, "b c f h w -> (b f) c h w") / self.vae_scaling_factor
        vae_dtype = next(self.vae.parameters()).dtype
        chunks = [
            self.vae.decode(chunk.to(self.vae.device, vae_dtype)).sample
            for chunk in frames.split(self.vae_chunk_frames)
        ]
        pixels = torch.cat(chunks).clamp(-1, 1)
        return rearrange(pixels, "(b f) c h w -> b c f h w", b=batch).contiguous()

    # ------------------------------------------------------------ trainable parameters
    def is_temporal(self, name: str) -> bool:
        """Whether a UNet parameter belongs to the temporal (motion) layers."""
        raise ConfigError(
            f"model.trainable: 'motion' needs a temporal backbone; {self.kind} has none (use 'lora' or 'full')"
        )

    def configure_trainable(self, mode: str, lora: LoraConfig | None = None) -> None:
        """Freeze the UNet except the parameters selected by ``mode``.

        ``motion``: temporal layers; ``lora``: new peft LoRA layers on
        ``lora.targets``; ``full``: every UNet parameter.
        """
        self.unet.requires_grad_(False)
        if mode == "full":
            self.unet.requires_grad_(True)
        elif mode == "motion":
            for name, param in self.unet.named_parameters():
                param.requires_grad_(self.is_temporal(name))
        elif mode == "lora":
            from peft import LoraConfig as PeftLoraConfig
            from peft import inject_adapter_in_model

            lora = lora or LoraConfig()
            peft_config = PeftLoraConfig(
                r=lora.rank,
                lora_alpha=lora.alpha,
                lora_dropout=lora.dropout,
                target_modules=list(lora.targets),
                init_lora_weights="gaussian",
            )
            if hasattr(self.unet, "add_adapter"):  # diffusers' PEFT integration
                self.unet.add_adapter(peft_config)
            else:  # UNet3DConditionModel has no PEFT mixin: inject the layers with peft directly
                inject_adapter_in_model(peft_config, self.unet)
        else:
            raise ConfigError(f"model.trainable: {mode!r} is not allowed (allowed: 'motion', 'lora', 'full')")
        self.trainable_mode = mode
        if not any(p.requires_grad for p in self.unet.parameters()):
            raise ConfigError(f"model.trainable={mode!r} selected no parameter of the {self.kind} UNet")

    def named_trainable_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        return ((n, p) for n, p in self.unet.named_parameters() if p.requires_grad)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Detached views of the trainable tensors (names as in ``unet.named_parameters``)."""
        return {name: param.detach() for name, param in self.named_trainable_parameters()}

    # ------------------------------------------------------------ runtime switches
    def set_attention_backend(self, backend: str) -> None:
        if backend == "sdpa":
            # diffusers' default processors use torch SDPA (flash / mem-efficient kernels).
            from diffusers.models.attention_processor import AttnProcessor2_0

            self.unet.set_attn_processor(AttnProcessor2_0())
        elif backend == "xformers":
            require_package("model.attention", backend)
            self.unet.enable_xformers_memory_efficient_attention()
        else:
            raise ConfigError(f"model.attention: {backend!r} is not allowed (allowed: 'sdpa', 'xformers')")

    def enable_gradient_checkpointing(self) -> None:
        self.unet.enable_gradient_checkpointing()

    # ------------------------------------------------------------ diffusers pipeline
    def build_pipeline(self, scheduler=None):
        """The standard diffusers pipeline around this adapter's modules (no copies)."""
        import diffusers
        from diffusers import DDIMScheduler

        scheduler = scheduler or DDIMScheduler.from_config(self.scheduler_config)
        cls = getattr(diffusers, self.pipeline_class_name)
        return cls(**self._pipeline_parts(scheduler))

    def _pipeline_parts(self, scheduler) -> dict:
        return {
            "vae": self.vae,
            "text_encoder": self.text_encoder,
            "tokenizer": self.tokenizer,
            "unet": self.unet,
            "scheduler": scheduler,
        }


class AnimateDiffAdapter(VideoDiffusionAdapter):
    """SD-1.5 UNet + AnimateDiff ``MotionAdapter`` as a ``UNetMotionModel``."""

    kind = "animatediff"
    pipeline_class_name = "AnimateDiffPipeline"
    unet_class_name = "UNetMotionModel"  # built from the SD UNet + MotionAdapter, saved as such in full exports

    @classmethod
    def load(cls, paths: ModelPaths, **options) -> "AnimateDiffAdapter":
        from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel

        if paths.motion_adapter is None:
            raise ConfigError("model.motion_adapter: AnimateDiff needs a MotionAdapter folder")
        unet2d = UNet2DConditionModel.from_pretrained(paths.pipeline, subfolder="unet")
        motion_adapter = MotionAdapter.from_pretrained(paths.motion_adapter)
        unet = UNetMotionModel.from_unet2d(unet2d, motion_adapter)
        return cls(paths, unet, **options)

    def _forward(self, unet, latents, timesteps, prompt_embeds):
        frames = latents.shape[2]
        per_frame = prompt_embeds.repeat_interleave(frames, dim=0)
        return unet(latents, timesteps, encoder_hidden_states=per_frame).sample

    def is_temporal(self, name: str) -> bool:
        return "motion_modules." in name

    def _pipeline_parts(self, scheduler) -> dict:
        return {**super()._pipeline_parts(scheduler), "motion_adapter": None}


class ModelScopeAdapter(VideoDiffusionAdapter):
    """ModelScope text-to-video (``UNet3DConditionModel``)."""

    kind = "modelscope"
    pipeline_class_name = "TextToVideoSDPipeline"
    unet_class_name = "UNet3DConditionModel"

    def _forward(self, unet, latents, timesteps, prompt_embeds):
        return unet(latents, timesteps, encoder_hidden_states=prompt_embeds).sample

    def is_temporal(self, name: str) -> bool:
        # Temporal convolutions, temporal attention, and the input temporal transformer.
        return name.startswith("transformer_in.") or ".temp_convs." in name or ".temp_attentions." in name

    def enable_gradient_checkpointing(self) -> None:
        """Activation checkpointing of every down, mid and up block.

        diffusers' ``UNet3DConditionModel`` refuses ``enable_gradient_checkpointing``, so each
        block becomes an instance of a checkpointing subclass of its own class: parameter names
        (checkpoints, exports) are unchanged and a deep copy checkpoints its own weights.
        Without autograd (reference passes) blocks run as before.
        """
        for block in [*self.unet.down_blocks, self.unet.mid_block, *self.unet.up_blocks]:
            if block is not None and not getattr(block, "seppo_checkpointed", False):
                block.__class__ = _checkpointed_class(type(block))


class ImageAdapter(VideoDiffusionAdapter):
    """Stable Diffusion (``UNet2DConditionModel``): frames are independent images."""

    kind = "sd"
    pipeline_class_name = "StableDiffusionPipeline"
    unet_class_name = "UNet2DConditionModel"

    def _forward(self, unet, latents, timesteps, prompt_embeds):
        batch, _, frames = latents.shape[:3]
        images = rearrange(latents, "b c f h w -> (b f) c h w")
        noise = unet(
            images,
            timesteps.repeat_interleave(frames),
            encoder_hidden_states=prompt_embeds.repeat_interleave(frames, dim=0),
        ).sample
        return rearrange(noise, "(b f) c h w -> b c f h w", b=batch)

    def _pipeline_parts(self, scheduler) -> dict:
        return {
            **super()._pipeline_parts(scheduler),
            "safety_checker": None,
            "feature_extractor": None,
            "requires_safety_checker": False,
        }


_CHECKPOINTED_CLASSES: dict[type, type] = {}


def _checkpointed_class(cls: type) -> type:
    """``cls`` with its forward recomputed in backward instead of keeping activations
    (non-reentrant, so keyword arguments pass through; the RNG state is replayed, so dropout
    masks match the first pass)."""
    if cls not in _CHECKPOINTED_CLASSES:
        from torch.utils.checkpoint import checkpoint

        def forward(self, *args, **kwargs):
            plain = super(checkpointed, self).forward
            if torch.is_grad_enabled():
                return checkpoint(plain, *args, use_reentrant=False, **kwargs)
            return plain(*args, **kwargs)

        checkpointed = type(f"Checkpointed{cls.__name__}", (cls,), {"forward": forward, "seppo_checkpointed": True})
        _CHECKPOINTED_CLASSES[cls] = checkpointed
    return _CHECKPOINTED_CLASSES[cls]


ADAPTERS: dict[str, type[VideoDiffusionAdapter]] = {
    "animatediff": AnimateDiffAdapter,
    "modelscope": ModelScopeAdapter,
    "sd": ImageAdapter,
}


def resolve_paths(config: ModelConfig) -> ModelPaths:
    """Turn the config's model location into folders, building the tiny model if asked."""
    if config.pretrained == "tiny":
        root = ensure_tiny(config.kind)
        if config.kind == "animatediff":
            return ModelPaths(root / "sd", root / "motion_adapter")
        return ModelPaths(root)
    pipeline = Path(config.pretrained).expanduser()
    if not (pipeline / "model_index.json").exists() and not (pipeline / "unet").is_dir():
        raise ConfigError(
            f"model.pretrained: {pipeline} is not a diffusers pipeline folder (no model_index.json / unet/); "
            "point it at a local checkpoint (models are never downloaded)"
        )
    motion = Path(config.motion_adapter).expanduser() if config.motion_adapter else None
    if config.kind == "animatediff":
        if motion is None or not (motion / "config.json").exists():
            raise ConfigError(f"model.motion_adapter: {motion} is not a MotionAdapter folder (no config.json)")
    return ModelPaths(pipeline, motion)


def resolve_noise_schedule(kind: str, paths: ModelPaths, overrides: NoiseSchedulerConfig) -> dict:
    """The scheduler config training uses: the pipeline folder's, then the backbone's defaults
    (``BACKBONE_SCHEDULES``), then the config's ``model.noise_scheduler`` settings."""
    folder = _component_config(paths.pipeline / "scheduler", "model.pretrained", "scheduler_config.json")
    explicit = {key: value for key, value in dataclasses.asdict(overrides).items() if value is not None}
    schedule = {**folder, **BACKBONE_SCHEDULES.get(kind, {}), **explicit}
    schedule.setdefault("prediction_type", "epsilon")
    if schedule["prediction_type"] not in PREDICTION_TYPES:
        raise ConfigError(
            f"model.noise_scheduler.prediction_type: the scheduler in {paths.pipeline / 'scheduler'} says "
            f"{schedule['prediction_type']!r}, which this trainer cannot train (allowed: {', '.join(PREDICTION_TYPES)})"
        )
    return schedule


def check_model_fits(config: Config) -> None:
    """Before anything heavy: the model folders exist and take the configured resolution and frames.

    Only the components' ``config.json`` files are read: a run with a wrong
    path, a resolution the VAE cannot round-trip, or more frames than the
    motion modules' positional embeddings fails here, not at step 1.
    """
    paths = resolve_paths(config.model)
    schedule = resolve_noise_schedule(config.model.kind, paths, config.model.noise_scheduler)
    if schedule.get("num_train_timesteps", 1000) != config.seppo.num_train_timesteps:
        raise ConfigError(
            f"seppo.num_train_timesteps: {config.seppo.num_train_timesteps}, but the model's scheduler was trained "
            f"with {schedule['num_train_timesteps']} timesteps (set it to {schedule['num_train_timesteps']})"
        )
    vae = _component_config(paths.pipeline / "vae", "model.pretrained")
    factor = 2 ** (len(vae["block_out_channels"]) - 1)
    resolution = config.data.resolution
    if resolution % factor:
        below, above = resolution // factor * factor, (resolution // factor + 1) * factor
        raise ConfigError(
            f"data.resolution: {resolution} is not a multiple of {factor}, the VAE's downsampling factor "
            f"(use {below or above} or {above})"
        )
    if paths.motion_adapter is not None:
        limit = _component_config(paths.motion_adapter, "model.motion_adapter").get("motion_max_seq_length", 32)
        if config.data.num_frames > limit:
            raise ConfigError(
                f"data.num_frames: {config.data.num_frames} is more than the {limit} frames the motion modules' "
                f"positional embeddings cover (use at most {limit})"
            )


def _component_config(folder: Path, key: str, name: str = "config.json") -> dict:
    try:
        return json.loads((folder / name).read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{key}: cannot read {folder / name} ({err}); is it a diffusers model folder?") from None


def load_adapter(config: ModelConfig, configure: bool = True) -> VideoDiffusionAdapter:
    """Load the backbone named by ``config`` and apply its trainable/attention switches."""
    adapter = ADAPTERS[config.kind].load(resolve_paths(config), vae_chunk_frames=config.vae_chunk_frames,
                                         noise_scheduler=config.noise_scheduler)
    if configure:
        adapter.configure_trainable(config.trainable, config.lora)
        adapter.set_attention_backend(config.attention)
        if config.gradient_checkpointing:
            adapter.enable_gradient_checkpointing()
    return adapter
