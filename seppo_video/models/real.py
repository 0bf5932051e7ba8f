"""Real-shape random-init models: the published architectures with random weights, no download.

``make-tiny --shape real`` writes the same on-disk layouts as the tiny models
(see ``seppo_video.models.tiny``), but every component is built from its
published configuration (``seppo_video.models.published``): the real widths,
heads, cross-attention dimensions, motion-module layout, VAE, scheduler and
prediction type. Only the weights are random, and one thing is cut:

- the text encoder keeps its published width, heads, MLP size, activation,
  77 positions and 49408-token embedding, but only ``TEXT_ENCODER_LAYERS``
  (2) of its 12 (CLIP ViT-L/14) or 23 (OpenCLIP ViT-H/14) transformer
  layers, which saves building and loading time; its ``config.json`` says 2.

The tokenizer is the offline byte-level CLIP tokenizer of the tiny models,
padded to the real 49408 ids so that its ``<|startoftext|>`` / ``<|endoftext|>``
are 49406 / 49407 as in CLIP, and the text encoder's bos / eos / pad ids are
the tokenizer's.

Variants (``--variant``):

- ``animatediff``: ``v1-5-2`` (guoyww/animatediff-motion-adapter-v1-5-2, mid-block
  motion module) or ``v3`` (guoyww/animatediff-motion-adapter-v1-5-3, none), each
  with an SD-1.5 pipeline in ``sd/``;
- ``sd``: ``sd15`` (runwayml/stable-diffusion-v1-5, epsilon) or ``sd21-v``
  (stabilityai/stable-diffusion-2-1, 768-v: v-prediction);
- ``modelscope``: ``ms-1.7b`` (damo-vilab/text-to-video-ms-1.7b);
- ``wan``: ``t2v-1.3b`` (Wan-AI/Wan2.1-T2V-1.3B-Diffusers): the 1.3 B ``WanTransformer3DModel``,
  the Wan 2.1 VAE, and a UMT5-XXL encoder cut to ``TEXT_ENCODER_LAYERS`` of its 24 layers, its
  256384-row embedding kept; the tokenizer is the tiny models' offline character-level T5 one
  (its ``<pad>`` / ``</s>`` / ``<unk>`` are 0 / 1 / 2, as in UMT5's).
- ``cogvideox``: ``2b`` (THUDM/CogVideoX-2b): the ``CogVideoXTransformer3DModel`` (30 blocks of width
  1920, sinusoidal positions), the CogVideoX VAE, a T5 v1.1 XXL encoder cut to ``TEXT_ENCODER_LAYERS``
  of its 24 layers (its 32128-row embedding kept), the same offline T5 tokenizer padding to 226
  tokens, and the published ``CogVideoXDDIMScheduler``.
- ``ltx``: ``0.9.0`` (Lightricks/LTX-Video): the ``LTXVideoTransformer3DModel`` (28 blocks of width
  2048), the 0.9.0 VAE (32x / 8x), the T5 v1.1 XXL encoder cut like CogVideoX's, the offline T5
  tokenizer padding to 128 tokens, and the dynamically shifted flow-matching scheduler.

Sizes (fp32 safetensors): the ModelScope UNet alone is 1.41 B parameters, 5.6 GB.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from seppo_video.atomic import atomic_directory
from seppo_video.models import published
from seppo_video.models.tiny import build_t5_tokenizer, build_tokenizer, default_cache_dir

REAL_SHAPE_VERSION = 1  # bump when a real-shape architecture changes: cached copies are rebuilt
TEXT_ENCODER_LAYERS = 2
VARIANTS: dict[str, tuple[str, ...]] = {
    "animatediff": ("v1-5-2", "v3"),
    "sd": ("sd15", "sd21-v"),
    "modelscope": ("ms-1.7b",),
    "wan": ("t2v-1.3b",),
    "cogvideox": ("2b",),
    "ltx": ("0.9.0",),
}
MARKER = "seppo_real.json"

# The pipeline under each variant: UNet, VAE, text encoder and scheduler configurations.
_PIPELINES: dict[str, dict[str, Callable[[], dict]]] = {
    "sd15": {
        "unet": published.sd15_unet,
        "vae": lambda: published.sd_vae(512),
        "text_encoder": published.clip_vit_l14_text,
        "scheduler": published.sd15_scheduler,
    },
    "sd21-v": {
        "unet": published.sd21_unet,
        "vae": lambda: published.sd_vae(768),
        "text_encoder": published.openclip_h_text,
        "scheduler": published.sd21_scheduler,
    },
    "ms-1.7b": {
        "unet": published.ms17b_unet,
        "vae": lambda: published.sd_vae(512),
        "text_encoder": published.openclip_h_text,
        "scheduler": published.ms17b_scheduler,
    },
}
_MOTION_ADAPTERS = {"v1-5-2": published.motion_adapter_v1_5_2, "v3": published.motion_adapter_v3}


class VariantError(ValueError):
    """A variant that the kind does not have."""


def resolve_variant(kind: str, variant: str | None) -> str:
    """``variant``, or the kind's default (its first) when None; a clear error for an unknown one."""
    if kind not in VARIANTS:
        raise ValueError(f"kind must be one of {tuple(VARIANTS)}, got {kind!r}")
    allowed = VARIANTS[kind]
    if variant is None:
        return allowed[0]
    if variant not in allowed:
        raise VariantError(f"variant {variant!r} is not a variant of {kind} (choose from {', '.join(allowed)})")
    return variant


def _say(message: str) -> None:
    print(f"[real-shape] {message}", file=sys.stderr, flush=True)


def _built(name: str, build: Callable[[], torch.nn.Module], progress: Callable[[str], None]):
    start = time.perf_counter()
    module = build()
    count = sum(p.numel() for p in module.parameters())
    progress(f"built {name} ({type(module).__name__}, {count / 1e6:.1f} M params) in {time.perf_counter() - start:.1f} s")
    return module


def _text_encoder(config: dict, tokenizer, layers: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    if len(tokenizer) != config["vocab_size"]:
        raise AssertionError(f"tokenizer has {len(tokenizer)} ids, the text encoder {config['vocab_size']}")
    return CLIPTextModel(
        CLIPTextConfig(
            **{**config, "num_hidden_layers": layers},
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )


def _write_pipeline(variant: str, target: Path, scratch: Path, layers: int, progress) -> None:
    """Build the ``variant``'s pipeline component by component and save it to ``target``."""
    import diffusers

    spec = _PIPELINES[variant]
    video = variant == "ms-1.7b"
    tokenizer = build_tokenizer(scratch / ".tokenizer", vocab_size=published.CLIP_VOCAB_SIZE)
    scheduler_config = spec["scheduler"]()
    scheduler = getattr(diffusers, scheduler_config["_class_name"]).from_config(scheduler_config)
    text_encoder = _built("text_encoder", lambda: _text_encoder(spec["text_encoder"](), tokenizer, layers), progress)
    vae = _built("vae", lambda: diffusers.AutoencoderKL(**spec["vae"]()), progress)
    unet_class = diffusers.UNet3DConditionModel if video else diffusers.UNet2DConditionModel
    unet = _built("unet", lambda: unet_class(**spec["unet"]()), progress)
    parts = {"vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer, "unet": unet, "scheduler": scheduler}
    if video:
        pipeline = diffusers.TextToVideoSDPipeline(**parts)
    else:
        pipeline = diffusers.StableDiffusionPipeline(
            **parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False
        )
    _saved(target, pipeline.save_pretrained, progress)
    shutil.rmtree(scratch / ".tokenizer", ignore_errors=True)


@dataclass(frozen=True)
class _TransformerPipeline:
    """A transformer backbone's classes (diffusers / transformers names) and published configurations."""

    pipeline: str
    text_encoder: str
    text_config: str  # the transformers config class of ``text_encoder``
    text: Callable[[], dict]
    vae: str
    vae_config: Callable[[], dict]
    transformer: str
    transformer_config: Callable[[], dict]
    scheduler: Callable[[], dict]
    max_length: int  # the pipeline's prompt padding, the tokenizer's model_max_length


_TRANSFORMER_PIPELINES = {
    "wan": _TransformerPipeline("WanPipeline", "UMT5EncoderModel", "UMT5Config", published.umt5_xxl_encoder,
                                "AutoencoderKLWan", published.wan21_vae, "WanTransformer3DModel",
                                published.wan21_t2v_1_3b_transformer, published.wan21_scheduler, 512),
    "cogvideox": _TransformerPipeline("CogVideoXPipeline", "T5EncoderModel", "T5Config", published.t5_v1_1_xxl_encoder,
                                      "AutoencoderKLCogVideoX", published.cogvideox_2b_vae,
                                      "CogVideoXTransformer3DModel", published.cogvideox_2b_transformer,
                                      published.cogvideox_2b_scheduler, 226),
    "ltx": _TransformerPipeline("LTXPipeline", "T5EncoderModel", "T5Config", published.t5_v1_1_xxl_encoder,
                                "AutoencoderKLLTXVideo", published.ltx_video_vae, "LTXVideoTransformer3DModel",
                                published.ltx_video_transformer, published.ltx_video_scheduler, 128),
}


def _write_transformer_pipeline(kind: str, target: Path, scratch: Path, layers: int, progress) -> None:
    """Wan 2.1 T2V 1.3B or CogVideoX-2b, component by component, saved as its pipeline's folder; the
    T5-family text encoder keeps ``layers`` of its layers and the offline character-level T5 tokenizer."""
    import diffusers
    import transformers

    spec = _TRANSFORMER_PIPELINES[kind]
    tokenizer = build_t5_tokenizer(scratch / ".tokenizer", model_max_length=spec.max_length)
    config = getattr(transformers, spec.text_config)(
        **{**spec.text(), "num_layers": layers}, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id)
    text_encoder = _built("text_encoder", lambda: getattr(transformers, spec.text_encoder)(config), progress)
    vae = _built("vae", lambda: getattr(diffusers, spec.vae)(**spec.vae_config()), progress)
    transformer = _built("transformer", lambda: getattr(diffusers, spec.transformer)(**spec.transformer_config()),
                         progress)
    schedule = spec.scheduler()
    scheduler = getattr(diffusers, schedule["_class_name"]).from_config(schedule)
    pipeline = getattr(diffusers, spec.pipeline)(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae,
                                                 transformer=transformer, scheduler=scheduler)
    _saved(target, pipeline.save_pretrained, progress)
    shutil.rmtree(scratch / ".tokenizer", ignore_errors=True)


def _saved(target: Path, save: Callable[[Path], None], progress) -> None:
    progress(f"saving {target.name or target} ...")
    start = time.perf_counter()
    save(target)
    size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
    progress(f"saved {size / 1e9:.2f} GB in {time.perf_counter() - start:.1f} s")


def _link_tree(source: Path, target: Path) -> None:
    """``source`` copied to ``target`` as hard links where the filesystem allows (the cache shares SD-1.5)."""

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link_or_copy, ignore=shutil.ignore_patterns(MARKER))


def make_real_shape(
    kind: str,
    out: str | os.PathLike,
    variant: str | None = None,
    seed: int = 0,
    text_encoder_layers: int = TEXT_ENCODER_LAYERS,
    sd_source: Path | None = None,
    progress: Callable[[str], None] = _say,
) -> Path:
    """Write the real-shape random-init model ``kind`` / ``variant`` to ``out`` (atomically) and return it.

    ``sd_source``: AnimateDiff only, an existing real-shape SD-1.5 folder to reuse as ``sd/`` (hard
    links) instead of building one. Takes about a minute per billion parameters on one CPU thread,
    most of it random initialisation and writing the safetensors files.
    """
    variant = resolve_variant(kind, variant)
    out = Path(out)
    start = time.perf_counter()
    progress(f"building {kind} {variant} into {out}")
    torch.manual_seed(seed)
    with atomic_directory(out) as tmp:
        if kind == "animatediff":
            if sd_source is not None:
                _link_tree(Path(sd_source), tmp / "sd")
                progress(f"sd/ linked from {sd_source}")
            else:
                _write_pipeline("sd15", tmp / "sd", tmp, text_encoder_layers, progress)
            from diffusers import MotionAdapter

            adapter = _built("motion_adapter", lambda: MotionAdapter(**_MOTION_ADAPTERS[variant]()), progress)
            _saved(tmp / "motion_adapter", adapter.save_pretrained, progress)
            del adapter
        elif kind in _TRANSFORMER_PIPELINES:
            _write_transformer_pipeline(kind, tmp, tmp, text_encoder_layers, progress)
        else:
            _write_pipeline(variant, tmp, tmp, text_encoder_layers, progress)
        marker = {
            "kind": kind,
            "variant": variant,
            "seed": seed,
            "text_encoder_layers": text_encoder_layers,
            "version": REAL_SHAPE_VERSION,
        }
        (tmp / MARKER).write_text(json.dumps(marker, indent=1) + "\n")
    progress(f"done: {out} in {time.perf_counter() - start:.1f} s")
    return out


def real_shape_path(kind: str, variant: str | None = None) -> Path:
    """Where ``ensure_real_shape`` keeps ``kind`` / ``variant`` (``default_cache_dir()/real-v<N>/<kind>-<variant>``)."""
    return default_cache_dir() / f"real-v{REAL_SHAPE_VERSION}" / f"{kind}-{resolve_variant(kind, variant)}"


def ensure_real_shape(kind: str, variant: str | None = None) -> Path:
    """The cached real-shape model of ``kind`` / ``variant`` (seed 0), built on first use.

    The AnimateDiff variants share the cached SD-1.5 (``sd-sd15``) through hard links.
    """
    path = real_shape_path(kind, variant)
    if not (path / MARKER).exists():
        sd_source = ensure_real_shape("sd", "sd15") if kind == "animatediff" else None
        make_real_shape(kind, path, variant, sd_source=sd_source)
    return path
