"""One interface over four backbones, on video latents ``[B, C, F, H, W]``.

Everything above this module (loss, pool, sampler, training loop) sees only
video latents and prompt embeddings. The layout quirks of each backbone live
here and nowhere else:

- AnimateDiff (``UNetMotionModel``) takes frames folded into the batch for the
  text conditioning: one row of encoder states *per frame*.
- ModelScope (``UNet3DConditionModel``) takes one row *per video* and repeats
  it itself.
- SD (``UNet2DConditionModel``) has no time axis: frames are folded into the
  batch (``F = 1`` is the image case).
- Wan 2.1 (``WanTransformer3DModel``) is a flow-matching transformer over a causal 3D VAE's
  latents: ``F`` pixel frames become ``1 + (F - 1) // 4`` latent frames, its text encoder is
  UMT5, and its timestep is ``s * 1000`` for the flow sigma ``s``.
- CogVideoX (``CogVideoXTransformer3DModel``) is a v-prediction transformer on CogVideoX's
  SNR-shifted DDPM schedule, over a causal 3D VAE's latents (``1 + (F - 1) // 4`` frames again),
  with T5 text; it takes latents frames first, ``[B, F, C, H, W]``, and 3D rotary embeddings
  when its config says so.

``unet`` is each adapter's trained denoiser, whatever its architecture (Wan's and CogVideoX's are
transformers):
checkpoints, the reference pool and exports all address it by that one name.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers.utils.torch_utils import randn_tensor
from einops import rearrange
from torch import nn

from seppo_video.config import (
    FLOW_SAMPLING_KEYS,
    PREDICTION_TYPES,
    Config,
    ConfigError,
    LoraConfig,
    ModelConfig,
    NoiseSchedulerConfig,
    noise_family,
    require_package,
)
from seppo_video.models.tiny import WORLD_BASE_DIRS, ensure_tiny

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
    diffusers pipeline class samples from it; the class names below say which
    diffusers / transformers classes its pipeline folder holds.
    """

    kind: str = ""
    pipeline_class_name: str = ""
    unet_class_name: str = ""  # the diffusers class of the trained denoiser, in the pipeline's ``denoiser_folder``
    denoiser_folder: str = "unet"
    vae_class_name: str = "AutoencoderKL"
    text_encoder_class_name: str = "CLIPTextModel"  # transformers classes
    tokenizer_class_name: str = "CLIPTokenizer"
    sampler_class_name: str = "DDIMScheduler"  # the scheduler that samples (reference samples, exports)
    lora_layers_argument: str = "unet_lora_layers"  # the pipeline's ``save_lora_weights`` keyword

    def __init__(self, paths: ModelPaths, unet: nn.Module, vae_chunk_frames: int = 8,
                 noise_scheduler: NoiseSchedulerConfig | None = None):
        import diffusers
        import transformers

        self.paths = paths
        self.unet = unet
        self.vae = getattr(diffusers, self.vae_class_name).from_pretrained(paths.pipeline, subfolder="vae")
        self.text_encoder = getattr(transformers, self.text_encoder_class_name).from_pretrained(
            paths.pipeline, subfolder="text_encoder")
        self.tokenizer = getattr(transformers, self.tokenizer_class_name).from_pretrained(
            paths.pipeline, subfolder="tokenizer")
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

        unet = getattr(diffusers, cls.unet_class_name).from_pretrained(paths.pipeline, subfolder=cls.denoiser_folder)
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
        for frozen in (self.vae, self.text_encoder):
            # no dtype argument unless casting: diffusers warns about modules kept in fp32 (Wan's VAE) otherwise
            frozen.to(device) if dtype is None else frozen.to(device, dtype=dtype)
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

    def initial_noise(self, shape: tuple[int, ...], generators: list[torch.Generator], device: torch.device,
                      dtype: torch.dtype) -> torch.Tensor:
        """The sampler's starting noise ``[B, C, F, h, w]``, one generator per sample, drawn in the layout
        the backbone's pipeline draws it, so that a seed starts where the pipeline starts."""
        return randn_tensor(shape, generator=generators, device=device, dtype=dtype)

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

    # ------------------------------------------------------------ what the model takes
    @classmethod
    def check_fits(cls, config: Config, paths: ModelPaths, vae: dict) -> None:
        """The configured resolution and frames against the folders' ``config.json`` files (``vae``: the VAE's):
        a 2D VAE downsamples by 2 per block after the first; motion modules cover ``motion_max_seq_length`` frames."""
        _check_resolution(config.data.resolution, cls.vae_factors(vae)[1], "the VAE's downsampling factor")
        if paths.motion_adapter is not None:
            limit = _component_config(paths.motion_adapter, "model.motion_adapter").get("motion_max_seq_length", 32)
            if config.data.num_frames > limit:
                raise ConfigError(
                    f"data.num_frames: {config.data.num_frames} is more than the {limit} frames the motion modules' "
                    f"positional embeddings cover (use at most {limit})"
                )

    # ------------------------------------------------------------ trainable parameters
    @classmethod
    def vae_factors(cls, vae: dict) -> tuple[int, int]:
        """``(temporal, spatial)`` compression of the VAE (its ``config.json`` as ``vae``): pixel frames
        per latent frame after the first (1: frames are encoded one by one), pixels per latent side."""
        return 1, 2 ** (len(vae["block_out_channels"]) - 1)

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

    def lora_layers(self) -> dict[str, torch.Tensor]:
        """The LoRA tensors in the naming the pipeline's ``load_lora_weights`` reads for a UNet
        (diffusers' own, as diffusers' UNet LoRA training scripts save them)."""
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft.utils import get_peft_model_state_dict

        return convert_state_dict_to_diffusers(get_peft_model_state_dict(self.unet))

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

        scheduler = scheduler or self.sampling_scheduler()
        cls = getattr(diffusers, self.pipeline_class_name)
        return cls(**self._pipeline_parts(scheduler))

    def sampling_scheduler(self):
        """The backbone's sampler (``sampler_class_name``) on the training schedule."""
        import diffusers

        return getattr(diffusers, self.sampler_class_name).from_config(self.scheduler_config)

    def _pipeline_parts(self, scheduler) -> dict:
        return {
            "vae": self.vae,
            "text_encoder": self.text_encoder,
            "tokenizer": self.tokenizer,
            self.denoiser_folder: self.unet,  # the pipeline's argument is named like its folder
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


class VideoTransformerAdapter(VideoDiffusionAdapter):
    """What the video transformers (Wan, CogVideoX) share: the denoiser in ``transformer/``, a causal 3D
    VAE that keeps frame 0 and compresses every ``temporal`` frames after it (``F = 1 + temporal k``
    pixel frames are ``1 + k`` latent frames), whole clips through that VAE, a deterministic
    reference sampler, and LoRA saved in peft's naming. Their blocks attend over space and time
    together, so there is no separate temporal part (train ``lora`` or ``full``).
    """

    denoiser_folder = "transformer"
    lora_layers_argument = "transformer_lora_layers"
    display_name = ""  # for messages

    @classmethod
    def compression(cls, vae: dict, transformer: dict) -> tuple[int, int]:
        """``(temporal, spatial)``: the VAE's temporal factor, and the pixel size of one transformer patch."""
        raise NotImplementedError

    @classmethod
    def check_fits(cls, config: Config, paths: ModelPaths, vae: dict) -> None:
        """Frames ``1 + temporal k``, a resolution that patches evenly, and ``eta = 0`` (no noise term to scale)."""
        transformer = _component_config(paths.pipeline / "transformer", "model.pretrained")
        temporal, spatial = cls.compression(vae, transformer)
        frames = config.data.num_frames
        if (frames - 1) % temporal:
            below = (frames - 1) // temporal * temporal + 1
            raise ConfigError(
                f"data.num_frames: {frames} is not 1 + {temporal}k, the clip lengths {cls.display_name}'s causal VAE "
                f"encodes (use {below} or {below + temporal}: {1 + (below - 1) // temporal} or "
                f"{2 + (below - 1) // temporal} latent frames)"
            )
        _check_resolution(config.data.resolution, spatial,
                          "the VAE's downsampling factor times the transformer's patch size")
        if config.seppo.ref_eta:
            raise ConfigError(f"seppo.ref_eta: {config.seppo.ref_eta}, but {cls.display_name} samples references with "
                              f"the deterministic {cls.sampler_class_name} (set it to 0)")

    def _to_latents(self, z: torch.Tensor) -> torch.Tensor:
        """The VAE's posterior value ``z`` as the latents the transformer is trained on."""
        raise NotImplementedError

    def _from_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """The inverse of ``_to_latents``."""
        raise NotImplementedError

    @torch.no_grad()
    def encode_video(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Pixels ``[B, 3, F, H, W]`` in [-1, 1] (``F = 1 + 4k``; LTX: ``1 + 8k``) to latents ``[B, C, 1 + k, h, w]``.

        The causal VAE sees whole clips (it streams them through its own frame cache, so
        ``vae_chunk_frames`` does not apply), one video per call.
        """
        vae_dtype = next(self.vae.parameters()).dtype
        latents = []
        for video in pixels.split(1):
            posterior = self.vae.encode(video.to(self.vae.device, vae_dtype)).latent_dist
            latents.append(posterior.sample(generator) if generator is not None else posterior.mode())
        return self._to_latents(torch.cat(latents)).contiguous()

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents ``[B, C, f, h, w]`` to pixels ``[B, 3, 1 + 4 (f - 1), H, W]`` in [-1, 1] (LTX: ``1 + 8 (f - 1)``;
        CogVideoX's decoder: for an odd ``f``, it returns ``4 f`` frames for an even one)."""
        vae_dtype = next(self.vae.parameters()).dtype
        z = self._from_latents(latents.to(self.vae.device, vae_dtype))
        return torch.cat([self.vae.decode(video).sample for video in z.split(1)]).clamp(-1, 1)

    def lora_layers(self) -> dict[str, torch.Tensor]:
        """peft's own naming, which the transformer LoRA loaders (``WanLoraLoaderMixin``,
        ``CogVideoXLoraLoaderMixin``, ``LTXVideoLoraLoaderMixin``) read, as diffusers' transformer LoRA
        training scripts save them."""
        from peft.utils import get_peft_model_state_dict

        return get_peft_model_state_dict(self.unet)

    def set_attention_backend(self, backend: str) -> None:
        # Wan's and LTX's attention processors go through diffusers' attention dispatcher, whose
        # default is torch SDPA: keep them (AttnProcessor2_0 would drop the rotary embedding) and
        # only switch the dispatcher's backend for xformers.
        if backend == "sdpa":
            return
        if backend == "xformers":
            require_package("model.attention", backend)
            self.unet.set_attention_backend("xformers")
        else:
            raise ConfigError(f"model.attention: {backend!r} is not allowed (allowed: 'sdpa', 'xformers')")


class WanAdapter(VideoTransformerAdapter):
    """Wan 2.1 text-to-video: ``WanTransformer3DModel`` on ``AutoencoderKLWan`` latents, UMT5 text.

    Flow matching (the scheduler folder holds a ``FlowMatchEulerDiscreteScheduler``): the
    transformer predicts the velocity ``eps - x0`` at timestep ``s * T``.
    """

    kind = "wan"
    display_name = "Wan"
    pipeline_class_name = "WanPipeline"
    unet_class_name = "WanTransformer3DModel"
    vae_class_name = "AutoencoderKLWan"
    text_encoder_class_name = "UMT5EncoderModel"
    tokenizer_class_name = "AutoTokenizer"
    sampler_class_name = "FlowMatchEulerDiscreteScheduler"
    max_sequence_length = 512  # WanPipeline's default: every prompt row is padded to it

    @property
    def prediction_type(self) -> str:
        return "flow_prediction"  # diffusers' name for the velocity target (UniPC's flow mode)

    @classmethod
    def vae_factors(cls, vae: dict) -> tuple[int, int]:
        return vae.get("scale_factor_temporal") or 4, vae.get("scale_factor_spatial") or 8

    @classmethod
    def compression(cls, vae: dict, transformer: dict) -> tuple[int, int]:
        # WanPipeline's own factors: 16 pixels per patch for Wan 2.1 (8x VAE, 2x2 patches).
        temporal, spatial = cls.vae_factors(vae)
        return temporal, spatial * transformer["patch_size"][-1]

    def _forward(self, unet, latents, timesteps, prompt_embeds):
        return unet(hidden_states=latents, timestep=timesteps, encoder_hidden_states=prompt_embeds,
                    return_dict=False)[0]

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """UMT5 states ``[B, 512, D]`` as ``WanPipeline`` computes them: cleaned prompts, the
        attention mask, and the states past each prompt's length set to zero."""
        from diffusers.pipelines.wan.pipeline_wan import prompt_clean

        tokens = self.tokenizer(
            [prompt_clean(p) for p in prompts],
            padding="max_length",
            max_length=self.max_sequence_length,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        device = next(self.text_encoder.parameters()).device
        mask = tokens.attention_mask.to(device)
        states = self.text_encoder(tokens.input_ids.to(device), mask).last_hidden_state
        return states * mask.unsqueeze(-1).to(states.dtype)

    def _latent_stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, self.vae.config.z_dim, 1, 1, 1)
        mean = torch.tensor(self.vae.config.latents_mean).view(shape).to(like.device, like.dtype)
        std = torch.tensor(self.vae.config.latents_std).view(shape).to(like.device, like.dtype)
        return mean, std

    def _to_latents(self, z: torch.Tensor) -> torch.Tensor:
        """``(z - latents_mean) / latents_std``, the inverse of WanPipeline's decode."""
        mean, std = self._latent_stats(z)
        return (z - mean) / std

    def _from_latents(self, latents: torch.Tensor) -> torch.Tensor:
        mean, std = self._latent_stats(latents)
        return latents * std + mean

class CogVideoXAdapter(VideoTransformerAdapter):
    """CogVideoX 1.0 text-to-video (2B / 5B): ``CogVideoXTransformer3DModel`` on ``AutoencoderKLCogVideoX``
    latents, T5 text.

    v-prediction on CogVideoX's SNR-shifted, zero-terminal-SNR DDPM schedule (the scheduler folder's
    ``CogVideoXDDIMScheduler`` / ``CogVideoXDPMScheduler``), integer timesteps. The transformer takes
    latents frames first (``[B, F, C, H, W]``); latents are the VAE's ``z`` times its ``scaling_factor``.
    """

    kind = "cogvideox"
    display_name = "CogVideoX"
    pipeline_class_name = "CogVideoXPipeline"
    unet_class_name = "CogVideoXTransformer3DModel"
    vae_class_name = "AutoencoderKLCogVideoX"
    text_encoder_class_name = "T5EncoderModel"
    tokenizer_class_name = "T5Tokenizer"
    sampler_class_name = "CogVideoXDDIMScheduler"  # deterministic; CogVideoXPipeline's (2B) scheduler
    # CogVideoXPipeline's default: prompts are padded to it, and without rotary embeddings the
    # transformer's positional table covers exactly max_text_seq_length (226) text tokens.
    max_sequence_length = 226

    @classmethod
    def vae_factors(cls, vae: dict) -> tuple[int, int]:
        # CogVideoXPipeline's factors: the VAE halves space per block after the first.
        return vae.get("temporal_compression_ratio") or 4, 2 ** (len(vae["block_out_channels"]) - 1)

    @classmethod
    def compression(cls, vae: dict, transformer: dict) -> tuple[int, int]:
        temporal, spatial = cls.vae_factors(vae)
        return temporal, spatial * transformer["patch_size"]  # 2x2 patches

    @classmethod
    def check_fits(cls, config: Config, paths: ModelPaths, vae: dict) -> None:
        transformer = _component_config(paths.pipeline / "transformer", "model.pretrained")
        if transformer.get("patch_size_t") is not None:
            raise ConfigError(
                f"model.pretrained: {paths.pipeline / 'transformer'} is a CogVideoX 1.5 transformer (patch_size_t "
                f"{transformer['patch_size_t']}), whose pipeline pads the latent frames; only CogVideoX 1.0 (2B, 5B) "
                "folders are supported"
            )
        super().check_fits(config, paths, vae)

    def _forward(self, unet, latents, timesteps, prompt_embeds):
        frames_first = latents.transpose(1, 2).contiguous()
        output = unet(hidden_states=frames_first, encoder_hidden_states=prompt_embeds, timestep=timesteps,
                      image_rotary_emb=self._rotary_embedding(latents.shape[2:], latents.device), return_dict=False)[0]
        return output.transpose(1, 2)

    def _rotary_embedding(self, latent_shape: torch.Size, device: torch.device):
        """The 3D rotary (cos, sin) tables ``CogVideoXPipeline`` builds for latents of ``(frames, h, w)``
        (CogVideoX-5B), or None for a transformer with sinusoidal positions (2B)."""
        config = self.unet.config
        if not config.use_rotary_positional_embeddings:
            return None
        from diffusers.models.embeddings import get_3d_rotary_pos_embed
        from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid

        frames, height, width = latent_shape
        grid = (height // config.patch_size, width // config.patch_size)
        crops = get_resize_crop_region_for_grid(grid, config.sample_width // config.patch_size,
                                                config.sample_height // config.patch_size)
        return get_3d_rotary_pos_embed(embed_dim=config.attention_head_dim, crops_coords=crops, grid_size=grid,
                                       temporal_size=frames, device=device)

    def initial_noise(self, shape, generators, device, dtype) -> torch.Tensor:
        batch, channels, frames, height, width = shape  # CogVideoXPipeline draws frames first
        noise = randn_tensor((batch, frames, channels, height, width), generator=generators, device=device, dtype=dtype)
        return noise.transpose(1, 2)

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """T5 states ``[B, 226, D]`` as ``CogVideoXPipeline`` computes them: padded to 226 tokens, no attention mask."""
        tokens = self.tokenizer(list(prompts), padding="max_length", max_length=self.max_sequence_length,
                                truncation=True, add_special_tokens=True, return_tensors="pt")
        device = next(self.text_encoder.parameters()).device
        return self.text_encoder(tokens.input_ids.to(device))[0]

    def _to_latents(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.vae_scaling_factor

    def _from_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return latents / self.vae_scaling_factor

    def set_attention_backend(self, backend: str) -> None:
        # CogVideoX's attention processors prepend the text tokens and apply the rotary embedding, and
        # call torch SDPA themselves: keep them; other processors (xformers) would drop both.
        if backend != "sdpa":
            raise ConfigError(f"model.attention: {backend!r} is not allowed for CogVideoX, whose attention "
                              "processors call torch SDPA themselves (allowed: 'sdpa')")


class LTXAdapter(VideoTransformerAdapter):
    """LTX-Video text-to-video: ``LTXVideoTransformer3DModel`` on ``AutoencoderKLLTXVideo`` latents, T5 text.

    Flow matching with a dynamic shift (the scheduler folder's ``FlowMatchEulerDiscreteScheduler`` with
    ``use_dynamic_shifting``: the shift grows with the video's token count). The VAE compresses 32x in
    space and 8x in time, and latents are its ``z`` normalised by the per-channel ``latents_mean`` /
    ``latents_std`` and ``scaling_factor``. The transformer takes them packed, ``[B, F h w, C]``, with
    the video's size, the text's attention mask and RoPE scaled by the frame rate; padded text rows
    are zero in the prompt states, which is how the mask travels with them (``_forward`` rebuilds it).
    """

    kind = "ltx"
    display_name = "LTX-Video"
    pipeline_class_name = "LTXPipeline"
    unet_class_name = "LTXVideoTransformer3DModel"
    vae_class_name = "AutoencoderKLLTXVideo"
    text_encoder_class_name = "T5EncoderModel"
    tokenizer_class_name = "T5Tokenizer"
    sampler_class_name = "FlowMatchEulerDiscreteScheduler"
    max_sequence_length = 128  # LTXPipeline's default
    # LTXPipeline's default frame_rate: RoPE's time axis is scaled by temporal compression / frame rate.
    frame_rate = 25

    @property
    def prediction_type(self) -> str:
        return "flow_prediction"

    @classmethod
    def vae_factors(cls, vae: dict) -> tuple[int, int]:
        # AutoencoderKLLTXVideo's own ratios: a patch of patch_size pixels, then one halving (of frames
        # and of each side) per spatio-temporal block.
        halvings = 2 ** sum(vae.get("spatio_temporal_scaling", (True, True, True, False)))
        return vae.get("patch_size_t", 1) * halvings, vae.get("patch_size", 4) * halvings

    @classmethod
    def compression(cls, vae: dict, transformer: dict) -> tuple[int, int]:
        temporal, spatial = cls.vae_factors(vae)  # times the transformer's patch size
        return temporal * transformer.get("patch_size_t", 1), spatial * transformer.get("patch_size", 1)

    def _forward(self, unet, latents, timesteps, prompt_embeds):
        batch, channels, frames, height, width = latents.shape
        packed = latents.flatten(2).transpose(1, 2)  # [B, F h w, C]: LTXPipeline's packing with 1x1x1 patches
        mask = (prompt_embeds != 0).any(dim=-1)  # encode_prompt zeroes the padded rows
        output = unet(hidden_states=packed, encoder_hidden_states=prompt_embeds, timestep=timesteps,
                      encoder_attention_mask=mask, num_frames=frames, height=height, width=width,
                      rope_interpolation_scale=self._rope_scale(), return_dict=False)[0]
        return output.transpose(1, 2).reshape(batch, channels, frames, height, width)

    def _rope_scale(self) -> tuple[float, int, int]:
        spatial = self.vae.spatial_compression_ratio
        return self.vae.temporal_compression_ratio / self.frame_rate, spatial, spatial

    @classmethod
    def check_fits(cls, config: Config, paths: ModelPaths, vae: dict) -> None:
        transformer = _component_config(paths.pipeline / "transformer", "model.pretrained")
        if (transformer.get("patch_size", 1), transformer.get("patch_size_t", 1)) != (1, 1):
            raise ConfigError(f"model.pretrained: {paths.pipeline / 'transformer'} patches its latents (patch_size "
                              f"{transformer.get('patch_size')}, patch_size_t {transformer.get('patch_size_t')}); "
                              "only the published LTX-Video layout (1 x 1 x 1) is supported")
        super().check_fits(config, paths, vae)

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """T5 states ``[B, 128, D]`` as ``LTXPipeline`` computes them (no mask into the encoder), with the
        padded rows set to zero: the transformer attends to the rows its mask allows, so zeroed rows change
        nothing there, and they carry the mask (and the latent cache stores it) without a second tensor."""
        tokens = self.tokenizer(list(prompts), padding="max_length", max_length=self.max_sequence_length,
                                truncation=True, add_special_tokens=True, return_attention_mask=True,
                                return_tensors="pt")
        device = next(self.text_encoder.parameters()).device
        states = self.text_encoder(tokens.input_ids.to(device))[0]
        return states * tokens.attention_mask.to(device).unsqueeze(-1).to(states.dtype)

    def _latent_stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, -1, 1, 1, 1)
        return (self.vae.latents_mean.view(shape).to(like.device, like.dtype),
                self.vae.latents_std.view(shape).to(like.device, like.dtype))

    def _to_latents(self, z: torch.Tensor) -> torch.Tensor:
        """``(z - latents_mean) * scaling_factor / latents_std``, LTXPipeline's normalisation."""
        mean, std = self._latent_stats(z)
        return (z - mean) * self.vae_scaling_factor / std

    def _from_latents(self, latents: torch.Tensor) -> torch.Tensor:
        mean, std = self._latent_stats(latents)
        return latents * std / self.vae_scaling_factor + mean

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """As the base class; a timestep-conditioned decoder (LTX-Video 0.9.1) decodes at timestep 0 without
        noise, LTXPipeline's defaults."""
        if not self.vae.config.timestep_conditioning:
            return super().decode_latents(latents)
        vae_dtype = next(self.vae.parameters()).dtype
        z = self._from_latents(latents.to(self.vae.device, vae_dtype))
        zero = torch.zeros(1, device=z.device, dtype=vae_dtype)
        return torch.cat([self.vae.decode(video, temb=zero).sample for video in z.split(1)]).clamp(-1, 1)


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
    "wan": WanAdapter,
    "cogvideox": CogVideoXAdapter,
    "ltx": LTXAdapter,
}


def resolve_paths(config: ModelConfig) -> ModelPaths:
    """Turn the config's model location into folders, building the tiny model if asked."""
    if config.pretrained == "tiny":
        root = ensure_tiny(config.kind)
        if config.kind == "animatediff":
            return ModelPaths(root / "sd", root / "motion_adapter")
        return ModelPaths(root)
    if config.pretrained == "world":
        folder = WORLD_BASE_DIRS.get(config.kind)
        if folder is None or not (folder / "model_index.json").is_file():
            raise ConfigError(
                "model.pretrained: 'world' is the synthetic world's base model, shipped for model.kind in "
                f"{sorted(WORLD_BASE_DIRS)} ({config.kind!r}: {folder}); rebuild a missing one with "
                "`seppo-video make-world-base --config configs/world_base.yaml` (world_base_wan.yaml for wan)"
            )
        return ModelPaths(folder)
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


_FAMILY_NAMES = {"flow": "a flow-matching", "cogvideox": "a CogVideoX (SNR-shifted DDPM)", "ddpm": "a DDPM-style"}
# The model.noise_scheduler keys that only one kind of forward process has.
_DDPM_ONLY_KEYS = ("beta_schedule", "beta_start", "beta_end", "prediction_type", "timestep_spacing",
                   "rescale_betas_zero_snr")
_FLOW_ONLY_KEYS = ("shift", *FLOW_SAMPLING_KEYS)


def resolve_noise_schedule(kind: str, paths: ModelPaths, overrides: NoiseSchedulerConfig) -> dict:
    """The scheduler config training uses: the pipeline folder's, then the backbone's defaults
    (``BACKBONE_SCHEDULES``), then the config's ``model.noise_scheduler`` settings.

    A flow-matching folder (Wan) takes only the flow keys (``shift``); a DDPM one only the beta /
    prediction keys. The flow timestep density (``timestep_sampling``, ``logit_*``) is a training
    setting, not part of the diffusers scheduler, and is left out of the returned config.
    """
    folder = _component_config(paths.pipeline / "scheduler", "model.pretrained", "scheduler_config.json")
    explicit = {key: value for key, value in dataclasses.asdict(overrides).items() if value is not None}
    family = noise_family(folder)
    trained = noise_family({"_class_name": ADAPTERS[kind].sampler_class_name})
    if family != trained:
        raise ConfigError(
            f"model.pretrained: {paths.pipeline / 'scheduler'} holds {_FAMILY_NAMES[family]} "
            f"{folder.get('_class_name')}, which model.kind={kind!r} does not train (it trains on "
            f"{_FAMILY_NAMES[trained]} schedule; is model.kind right for this folder?)"
        )
    flow = family == "flow"
    foreign = [key for key in explicit if key in (_DDPM_ONLY_KEYS if flow else _FLOW_ONLY_KEYS)]
    if foreign:
        allowed = _FLOW_ONLY_KEYS if flow else _DDPM_ONLY_KEYS
        process = f"a flow-matching {folder['_class_name']}" if flow else "a DDPM-style"
        raise ConfigError(
            f"model.noise_scheduler.{foreign[0]}: {paths.pipeline / 'scheduler'} is {process} scheduler, "
            f"which has no such setting (allowed here: {', '.join(allowed)})"
        )
    if flow and folder.get("use_dynamic_shifting") and "shift" in explicit:
        raise ConfigError(
            f"model.noise_scheduler.shift: {paths.pipeline / 'scheduler'} shifts dynamically (use_dynamic_shifting: "
            "the shift grows with the video's token count, from base_shift to max_shift), so a fixed shift does not "
            "apply; leave it null"
        )
    explicit = {key: value for key, value in explicit.items() if key not in FLOW_SAMPLING_KEYS}
    if flow:
        return {**_flow_match_config(folder), **explicit}
    schedule = {**folder, **BACKBONE_SCHEDULES.get(kind, {}), **explicit}
    schedule.setdefault("prediction_type", "epsilon")
    if schedule["prediction_type"] not in PREDICTION_TYPES:
        raise ConfigError(
            f"model.noise_scheduler.prediction_type: the scheduler in {paths.pipeline / 'scheduler'} says "
            f"{schedule['prediction_type']!r}, which this trainer cannot train (allowed: {', '.join(PREDICTION_TYPES)})"
        )
    return schedule


def _flow_match_config(folder: dict) -> dict:
    """A flow-matching folder's schedule as a ``FlowMatchEulerDiscreteScheduler`` config.

    A UniPC folder in flow mode (the published Wan 2.1 layout) becomes the Euler scheduler with its
    ``flow_shift`` as ``shift``: training draws, reference sampling and the export then share one
    set of shifted sigmas.
    """
    if folder.get("_class_name") == "FlowMatchEulerDiscreteScheduler":
        return dict(folder)
    return {
        "_class_name": "FlowMatchEulerDiscreteScheduler",
        "num_train_timesteps": folder.get("num_train_timesteps", 1000),
        "shift": folder.get("flow_shift", 1.0),
    }


def latent_shape(config: ModelConfig, num_frames: int, resolution: int) -> tuple[int, int, int, int]:
    """``(C, F, H, W)`` of one clip's latents for ``num_frames`` frames of ``resolution`` pixels,
    from the model folder's config files (the denoiser's input channels, the VAE's compression)."""
    paths = resolve_paths(config)
    adapter = ADAPTERS[config.kind]
    channels = _component_config(paths.pipeline / adapter.denoiser_folder, "model.pretrained")["in_channels"]
    temporal, spatial = adapter.vae_factors(_component_config(paths.pipeline / "vae", "model.pretrained"))
    frames = num_frames if temporal == 1 else 1 + (num_frames - 1) // temporal
    return channels, frames, resolution // spatial, resolution // spatial


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
    ADAPTERS[config.model.kind].check_fits(config, paths, vae)


def _check_resolution(resolution: int, factor: int, what: str) -> None:
    if resolution % factor:
        below, above = resolution // factor * factor, (resolution // factor + 1) * factor
        raise ConfigError(
            f"data.resolution: {resolution} is not a multiple of {factor}, {what} (use {below or above} or {above})"
        )


def _component_config(folder: Path, key: str, name: str = "config.json") -> dict:
    try:
        return json.loads((folder / name).read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{key}: cannot read {folder / name} ({err}); is it a diffusers model folder?") from None


def load_adapter(config: ModelConfig, configure: bool = True, seed: int = 0) -> VideoDiffusionAdapter:
    """Load the backbone named by ``config`` and apply its trainable/attention switches.

    ``seed`` draws the initial weights of new LoRA layers, so that a run's theta_0 is a function
    of its seed alone, not of what the process drew before (two runs in one process, tests).
    """
    adapter = ADAPTERS[config.kind].load(resolve_paths(config), vae_chunk_frames=config.vae_chunk_frames,
                                         noise_scheduler=config.noise_scheduler)
    if configure:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            adapter.configure_trainable(config.trainable, config.lora)
        adapter.set_attention_backend(config.attention)
        if config.gradient_checkpointing:
            adapter.enable_gradient_checkpointing()
    return adapter
