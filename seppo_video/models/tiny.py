"""Tiny random-init models written in the real on-disk layouts.

Every test and the default demo load models through ``from_pretrained`` on a
local directory, exactly as a real checkpoint is loaded; only the sizes are
tiny. Nothing here downloads anything: the CLIP tokenizer is built from a
byte-level vocabulary written on the spot.

Layouts (what ``make-tiny --kind K --out DIR`` writes):

- ``animatediff``: ``DIR/sd`` (a Stable Diffusion 1.5 style pipeline folder)
  and ``DIR/motion_adapter`` (a ``MotionAdapter`` folder), as AnimateDiff
  checkpoints are distributed.
- ``modelscope``: ``DIR`` is a ``TextToVideoSDPipeline`` folder
  (``text-to-video-ms-1.7b`` layout, ``UNet3DConditionModel``).
- ``sd``: ``DIR`` is a ``StableDiffusionPipeline`` folder.
- ``wan``: ``DIR`` is a ``WanPipeline`` folder (``Wan2.1-T2V-1.3B-Diffusers`` layout:
  ``transformer/`` ``WanTransformer3DModel``, ``vae/`` ``AutoencoderKLWan``, ``text_encoder/``
  ``UMT5EncoderModel``, a T5 tokenizer, and a flow-matching ``scheduler/``). Its VAE compresses
  4x in space and 4x in time (the real one: 8x and 4x), so ``1 + 4k`` frames at 32 px are
  ``1 + k`` latent frames of 8 x 8.
- ``cogvideox``: ``DIR`` is a ``CogVideoXPipeline`` folder (``CogVideoX-2b`` layout:
  ``transformer/`` ``CogVideoXTransformer3DModel`` with sinusoidal positions, ``vae/``
  ``AutoencoderKLCogVideoX``, ``text_encoder/`` ``T5EncoderModel``, a T5 tokenizer padding to 226
  tokens, and ``scheduler/`` CogVideoX-2b's ``CogVideoXDDIMScheduler``: v-prediction, SNR shift 3,
  zero terminal SNR, trailing spacing). Its VAE, like the Wan one, compresses 4x in space and 4x in
  time (the real one: 8x and 4x).
- ``ltx``: ``DIR`` is an ``LTXPipeline`` folder (``LTX-Video`` layout: ``transformer/``
  ``LTXVideoTransformer3DModel``, ``vae/`` ``AutoencoderKLLTXVideo`` with the real 32x / 8x
  compression, ``text_encoder/`` ``T5EncoderModel``, a T5 tokenizer padding to 128 tokens, and
  LTX-Video's dynamically shifted flow-matching ``scheduler/``). ``1 + 8k`` frames at 64 px are
  ``1 + k`` latent frames of 2 x 2.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch

from seppo_video.atomic import atomic_directory
from seppo_video.models import published

BackboneKind = Literal["animatediff", "modelscope", "sd", "wan", "cogvideox", "ltx"]
BACKBONE_KINDS: tuple[str, ...] = ("animatediff", "modelscope", "sd", "wan", "cogvideox", "ltx")

# Small enough to train for a few dozen steps on 2 CPU cores in seconds.
TEXT_DIM = 32
UNET_CHANNELS = (32, 64)
VAE_CHANNELS = (16, 32, 32)  # three blocks: the VAE downsamples by 4
LATENT_CHANNELS = 4
WAN_LATENT_CHANNELS = 4
COGVIDEOX_LATENT_CHANNELS = 4
LTX_LATENT_CHANNELS = 4
TINY_LAYOUT_VERSION = 1  # bump when the tiny architecture changes: cached copies are rebuilt
# The synthetic world's pretrained base models, shipped with the package (``model.pretrained: world``,
# one per backbone kind; built by ``seppo-video make-world-base``, seppo_video/study/base.py).
WORLD_BASE_DIRS = {"modelscope": Path(__file__).parent / "world_base", "wan": Path(__file__).parent / "world_base_wan"}


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP byte-to-printable-character table (a published mapping)."""
    printable = list(range(ord("!"), ord("~") + 1))
    printable += list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


def build_tokenizer(directory: Path, vocab_size: int | None = None, words: Sequence[str] = ()):
    """A CLIP tokenizer whose vocabulary is every byte (with and without ``</w>``), plus ``words``.

    Without ``words`` there are no merges: each character is one token, which is all a random-init
    text encoder needs, and it tokenises any prompt without a download. ``words`` (lower-case
    letters) each become one token, as common words are in the real CLIP vocabulary: the merges
    build a word from its end (``n g</w>``, then ``i ng</w>``, ...). Every merge's right part ends
    in ``</w>``, so a merge can only apply at the end of a word, and a listed word always merges
    completely whatever the order of the merges (BPE's greedy order cannot split it differently).

    ``vocab_size`` (the real CLIP's 49408 for the real-shape models): unused
    placeholder entries pad the vocabulary so that it has that many ids and,
    as in the real CLIP vocabulary, ``<|startoftext|>`` and ``<|endoftext|>``
    are its last two (49406 and 49407). Without it (the tiny models), the
    vocabulary is the 512 byte tokens, the words' suffix tokens and the two special ones.
    """
    from transformers import CLIPTokenizer

    chars = list(_bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    merges = _suffix_merges(words)
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    if vocab_size is not None:
        if vocab_size < len(vocab) + 2:
            raise ValueError(f"vocab_size must be at least {len(vocab) + 2}, got {vocab_size}")
        # never produced: without merges every token is a single character (+ </w>)
        vocab.update({f"<|unused{i}|>": i for i in range(len(vocab), vocab_size - 2)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    directory.mkdir(parents=True, exist_ok=True)
    vocab_file, merges_file = directory / "vocab.json", directory / "merges.txt"
    vocab_file.write_text(json.dumps(vocab))
    merges_file.write_text("#version: 0.2\n" + "".join(f"{left} {right}\n" for left, right in merges))
    tokenizer = CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=77)
    tokenizer.save_pretrained(str(directory))
    return tokenizer


def _suffix_merges(words: Sequence[str]) -> list[tuple[str, str]]:
    """BPE merges that build each word right to left: ``("n", "g</w>")``, ``("i", "ng</w>")``, ..."""
    merges: list[tuple[str, str]] = []
    for word in words:
        if not word.isalpha() or not word.islower() or not word.isascii():
            raise ValueError(f"tokenizer words must be lower-case ASCII letters, got {word!r}")
        suffix = word[-1] + "</w>"
        for char in reversed(word[:-1]):
            if (char, suffix) not in merges:
                merges.append((char, suffix))
            suffix = char + suffix
    return merges


def _text_encoder(vocab_size: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=TEXT_DIM,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=TEXT_DIM,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
    )
    return CLIPTextModel(config)


def _vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(VAE_CHANNELS),
        up_block_types=("UpDecoderBlock2D",) * len(VAE_CHANNELS),
        block_out_channels=VAE_CHANNELS,
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=8,
        sample_size=64,
        scaling_factor=0.18215,
    )


def _scheduler():
    # SD-1.5's noise schedule with DDIM, the scheduler AnimateDiff uses.
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
    )


def _unet_kwargs(dims: str) -> dict:
    return dict(
        sample_size=16,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        down_block_types=(f"CrossAttnDownBlock{dims}", f"DownBlock{dims}"),
        up_block_types=(f"UpBlock{dims}", f"CrossAttnUpBlock{dims}"),
        block_out_channels=UNET_CHANNELS,
        layers_per_block=1,
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=8,
        norm_num_groups=16,
    )


def _unet2d():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**_unet_kwargs("2D"))


def _unet3d():
    from diffusers import UNet3DConditionModel

    return UNet3DConditionModel(**_unet_kwargs("3D"))


def _motion_adapter():
    from diffusers import MotionAdapter

    return MotionAdapter(
        block_out_channels=UNET_CHANNELS,
        motion_layers_per_block=1,
        motion_num_attention_heads=2,
        motion_norm_num_groups=16,
        motion_max_seq_length=32,
        use_motion_mid_block=False,
    )


def _shared_parts(tokenizer_dir: Path, words: Sequence[str] = ()) -> dict:
    tokenizer = build_tokenizer(tokenizer_dir, words=words)
    return {
        "vae": _vae(),
        "text_encoder": _text_encoder(len(tokenizer)),
        "tokenizer": tokenizer,
        "scheduler": _scheduler(),
    }


def build_t5_tokenizer(directory: Path, model_max_length: int = 512, words: Sequence[str] = ()):
    """A T5 (Unigram) tokenizer whose pieces are single characters, the UMT5 layout without its
    250k-piece SentencePiece model: ``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, then the word-start
    marker and every printable ASCII character, with and without it. Built offline.

    ``words`` each become one piece (with and without the word-start marker), scored above any
    spelling of them in characters, so the tokenizer keeps them whole as a real UMT5 keeps common words."""
    from transformers import T5Tokenizer

    chars = [chr(c) for c in range(ord("!"), ord("~") + 1)]
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(c, -3.0) for c in chars] + [("\u2581" + c, -2.5) for c in chars]
    pieces += [(piece, -1.0) for word in words for piece in ("\u2581" + word, word)]
    tokenizer = T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=model_max_length)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(directory))
    return tokenizer


def tiny_wan_transformer(**changes):
    """The tiny ``WanTransformer3DModel`` (random init); ``changes`` override its config (e.g. width)."""
    from diffusers import WanTransformer3DModel

    config = {
        "patch_size": (1, 2, 2), "num_attention_heads": 2,
        "attention_head_dim": 12,  # rotary dims 4 + 4 + 4 (t, h, w)
        "in_channels": WAN_LATENT_CHANNELS, "out_channels": WAN_LATENT_CHANNELS, "text_dim": TEXT_DIM,
        "freq_dim": 32, "ffn_dim": 64, "num_layers": 2, "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads", "eps": 1e-6,
    }
    return WanTransformer3DModel(**{**config, **changes})


def _wan_parts(tokenizer_dir: Path, words: Sequence[str]) -> dict:
    import inspect

    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler
    from transformers import UMT5Config, UMT5EncoderModel

    tokenizer = build_t5_tokenizer(tokenizer_dir, words=words)
    text_encoder = UMT5EncoderModel(UMT5Config(
        vocab_size=len(tokenizer), d_model=TEXT_DIM, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    ))
    # The per-channel latent statistics are the published Wan 2.1 VAE's (the class defaults), cut to 4 channels.
    defaults = inspect.signature(AutoencoderKLWan.__init__).parameters
    vae = AutoencoderKLWan(
        base_dim=8, z_dim=WAN_LATENT_CHANNELS, dim_mult=[1, 2, 2], num_res_blocks=1, temperal_downsample=[True, True],
        latents_mean=defaults["latents_mean"].default[:WAN_LATENT_CHANNELS],
        latents_std=defaults["latents_std"].default[:WAN_LATENT_CHANNELS],
        scale_factor_spatial=4, scale_factor_temporal=4,
    )
    transformer = tiny_wan_transformer()
    # The published Wan 2.1 1.3B shift, as the Euler scheduler the trainer reads it as.
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=published.wan21_scheduler()["flow_shift"])
    return {"tokenizer": tokenizer, "text_encoder": text_encoder, "vae": vae, "transformer": transformer,
            "scheduler": scheduler}


def _tiny_t5(tokenizer):
    """A 2-layer T5 v1.1 encoder (gated-GELU feed-forward) over ``tokenizer``'s pieces."""
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(
        vocab_size=len(tokenizer), d_model=TEXT_DIM, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, feed_forward_proj="gated-gelu",
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    ))


def _cogvideox_parts(tokenizer_dir: Path, words: Sequence[str]) -> dict:
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel

    max_text = published.cogvideox_2b_transformer()["max_text_seq_length"]  # 226, CogVideoXPipeline's padding
    tokenizer = build_t5_tokenizer(tokenizer_dir, model_max_length=max_text, words=words)
    text_encoder = _tiny_t5(tokenizer)
    vae = AutoencoderKLCogVideoX(
        down_block_types=("CogVideoXDownBlock3D",) * 3, up_block_types=("CogVideoXUpBlock3D",) * 3,
        block_out_channels=VAE_CHANNELS, latent_channels=COGVIDEOX_LATENT_CHANNELS, layers_per_block=1,
        norm_num_groups=8, temporal_compression_ratio=4, sample_height=32, sample_width=32,
        scaling_factor=published.cogvideox_2b_vae()["scaling_factor"],
    )
    # sample_* are the latent size the sinusoidal position table is built for (recomputed for others).
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=COGVIDEOX_LATENT_CHANNELS,
        out_channels=COGVIDEOX_LATENT_CHANNELS, time_embed_dim=32, text_embed_dim=TEXT_DIM, num_layers=2,
        sample_width=8, sample_height=8, sample_frames=9, patch_size=2, max_text_seq_length=max_text,
    )
    scheduler = CogVideoXDDIMScheduler.from_config(published.cogvideox_2b_scheduler())
    return {"tokenizer": tokenizer, "text_encoder": text_encoder, "vae": vae, "transformer": transformer,
            "scheduler": scheduler}


def _ltx_parts(tokenizer_dir: Path, words: Sequence[str]) -> dict:
    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXVideoTransformer3DModel

    tokenizer = build_t5_tokenizer(tokenizer_dir, model_max_length=128, words=words)  # LTXPipeline's max_sequence_length
    # The published block layout (4x4 patches, three spatio-temporal halvings: 32x / 8x), narrow and one
    # layer deep.
    vae = AutoencoderKLLTXVideo(
        latent_channels=LTX_LATENT_CHANNELS, block_out_channels=(8, 16, 32, 32),
        decoder_block_out_channels=(8, 16, 32, 32), layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
    )
    # Per-channel statistics other than 0 / 1 (the real ones ship in the VAE's weights), so that the
    # latents' normalisation is exercised.
    with torch.no_grad():
        vae.latents_mean.copy_(torch.linspace(-0.2, 0.2, LTX_LATENT_CHANNELS))
        vae.latents_std.copy_(torch.linspace(0.6, 1.4, LTX_LATENT_CHANNELS))
    transformer = LTXVideoTransformer3DModel(
        in_channels=LTX_LATENT_CHANNELS, out_channels=LTX_LATENT_CHANNELS, num_attention_heads=2,
        attention_head_dim=12, cross_attention_dim=24, num_layers=2, caption_channels=TEXT_DIM,
    )
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(published.ltx_video_scheduler())
    return {"tokenizer": tokenizer, "text_encoder": _tiny_t5(tokenizer), "vae": vae, "transformer": transformer,
            "scheduler": scheduler}


# The transformer backbones: their pipeline class and how to build its parts.
_TRANSFORMER_PIPELINES = {"wan": ("WanPipeline", _wan_parts), "cogvideox": ("CogVideoXPipeline", _cogvideox_parts),
                          "ltx": ("LTXPipeline", _ltx_parts)}


def make_tiny(kind: BackboneKind, out: str | os.PathLike, seed: int = 0, words: Sequence[str] = ()) -> Path:
    """Write a random-init model of ``kind`` to ``out`` (atomically) and return it.

    ``words`` become whole-word tokens of its tokenizer (see ``build_tokenizer``, ``build_t5_tokenizer``).
    """
    if kind not in BACKBONE_KINDS:
        raise ValueError(f"kind must be one of {BACKBONE_KINDS}, got {kind!r}")
    out = Path(out)
    torch.manual_seed(seed)
    with atomic_directory(out) as tmp:
        if kind in _TRANSFORMER_PIPELINES:
            import diffusers

            pipeline_class, parts = _TRANSFORMER_PIPELINES[kind]
            getattr(diffusers, pipeline_class)(**parts(tmp / ".tokenizer", words)).save_pretrained(tmp)
        else:
            _write_unet_pipelines(kind, tmp, words)
        _remove_tree(tmp / ".tokenizer")
        (tmp / "seppo_tiny.json").write_text(json.dumps({"kind": kind, "seed": seed}))
    return out


def _write_unet_pipelines(kind: str, tmp: Path, words: Sequence[str]) -> None:
    from diffusers import StableDiffusionPipeline, TextToVideoSDPipeline

    parts = _shared_parts(tmp / ".tokenizer", words)
    if kind == "modelscope":
        TextToVideoSDPipeline(unet=_unet3d(), **parts).save_pretrained(tmp)
        return
    target = tmp / "sd" if kind == "animatediff" else tmp
    StableDiffusionPipeline(
        unet=_unet2d(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
        **parts,
    ).save_pretrained(target)
    if kind == "animatediff":
        _motion_adapter().save_pretrained(tmp / "motion_adapter")


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def default_cache_dir() -> Path:
    """Where tiny models built on first use are kept (``SEPPO_VIDEO_CACHE`` overrides)."""
    root = os.environ.get("SEPPO_VIDEO_CACHE") or Path.home() / ".cache" / "seppo_video"
    return Path(root)


def ensure_tiny(kind: BackboneKind, seed: int = 0) -> Path:
    """The cached tiny model of ``kind``, built on first use."""
    path = default_cache_dir() / f"tiny-v{TINY_LAYOUT_VERSION}" / f"{kind}-seed{seed}"
    if not (path / "seppo_tiny.json").exists():
        make_tiny(kind, path, seed=seed)
    return path
