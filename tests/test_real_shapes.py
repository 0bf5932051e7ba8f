"""Real-shape random-init models: the published configurations, loadable with the standard classes.

The expected numbers below are written out here from the published config.json files (the repository is
named above each group), independently of ``seppo_video.models.published``, so that a typo there fails.
Building and loading the real shapes takes minutes and GBs: those tests are ``slow``. The tiny layout's
check and the CLI's argument checks are fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from seppo_video.cli import REAL_VARIANTS, main
from seppo_video.models.real import VARIANTS, VariantError, resolve_variant
from seppo_video.models.tiny import build_tokenizer

REPO = Path(__file__).resolve().parents[1]
SD_DOWN = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]
SD_UP = ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]
CHANNELS = [320, 640, 1280, 1280]

# ---------------------------------------------------------------- the published key facts

# runwayml/stable-diffusion-v1-5: unet/, vae/, text_encoder/ (CLIP ViT-L/14), scheduler/
SD15 = {
    "unet/config.json": {
        "_class_name": "UNet2DConditionModel", "sample_size": 64, "in_channels": 4, "out_channels": 4,
        "block_out_channels": CHANNELS, "layers_per_block": 2, "attention_head_dim": 8,
        "cross_attention_dim": 768, "down_block_types": SD_DOWN, "up_block_types": SD_UP,
        "norm_num_groups": 32, "use_linear_projection": False, "upcast_attention": False,
    },
    "vae/config.json": {
        "_class_name": "AutoencoderKL", "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2,
        "latent_channels": 4, "sample_size": 512, "scaling_factor": 0.18215, "norm_num_groups": 32,
    },
    "text_encoder/config.json": {
        "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072, "hidden_act": "quick_gelu",
        "max_position_embeddings": 77, "vocab_size": 49408, "num_hidden_layers": 2,  # depth cut from 12
        "bos_token_id": 49406, "eos_token_id": 49407,
    },
    "scheduler/scheduler_config.json": {
        "_class_name": "PNDMScheduler", "num_train_timesteps": 1000, "beta_schedule": "scaled_linear",
        "beta_start": 0.00085, "beta_end": 0.012, "steps_offset": 1, "skip_prk_steps": True,
        "set_alpha_to_one": False, "prediction_type": "epsilon",
    },
}
# OpenCLIP ViT-H/14 text tower, as in damo-vilab/text-to-video-ms-1.7b and stabilityai/stable-diffusion-2-1
OPENCLIP_H = {
    "hidden_size": 1024, "num_attention_heads": 16, "intermediate_size": 4096, "hidden_act": "gelu",
    "max_position_embeddings": 77, "vocab_size": 49408, "num_hidden_layers": 2,  # depth cut from 23
    "bos_token_id": 49406, "eos_token_id": 49407,
}
# stabilityai/stable-diffusion-2-1 (768-v)
SD21 = {
    "unet/config.json": {
        "_class_name": "UNet2DConditionModel", "sample_size": 96, "block_out_channels": CHANNELS,
        "layers_per_block": 2, "attention_head_dim": [5, 10, 20, 20], "cross_attention_dim": 1024,
        "use_linear_projection": True, "upcast_attention": True, "down_block_types": SD_DOWN,
        "up_block_types": SD_UP,
    },
    "vae/config.json": {"_class_name": "AutoencoderKL", "block_out_channels": [128, 256, 512, 512],
                        "sample_size": 768, "latent_channels": 4, "scaling_factor": 0.18215},
    "text_encoder/config.json": OPENCLIP_H,
    "scheduler/scheduler_config.json": {
        "_class_name": "DDIMScheduler", "prediction_type": "v_prediction", "beta_schedule": "scaled_linear",
        "beta_start": 0.00085, "beta_end": 0.012, "steps_offset": 1, "clip_sample": False,
        "set_alpha_to_one": False, "num_train_timesteps": 1000,
    },
}
# damo-vilab/text-to-video-ms-1.7b
MS17B = {
    "unet/config.json": {
        "_class_name": "UNet3DConditionModel", "sample_size": 32, "block_out_channels": CHANNELS,
        "layers_per_block": 2, "attention_head_dim": 64, "cross_attention_dim": 1024, "norm_num_groups": 32,
        "down_block_types": ["CrossAttnDownBlock3D"] * 3 + ["DownBlock3D"],
        "up_block_types": ["UpBlock3D"] + ["CrossAttnUpBlock3D"] * 3,
    },
    "vae/config.json": {"_class_name": "AutoencoderKL", "block_out_channels": [128, 256, 512, 512],
                        "sample_size": 512, "latent_channels": 4, "scaling_factor": 0.18215},
    "text_encoder/config.json": OPENCLIP_H,
    "scheduler/scheduler_config.json": {
        "_class_name": "DDIMScheduler", "beta_schedule": "scaled_linear", "beta_start": 0.00085,
        "beta_end": 0.012, "prediction_type": "epsilon", "steps_offset": 1, "clip_sample": False,
        "set_alpha_to_one": False,
    },
}
# guoyww/animatediff-motion-adapter-v1-5-2 and -v1-5-3
MOTION = {
    "_class_name": "MotionAdapter", "block_out_channels": CHANNELS, "motion_layers_per_block": 2,
    "motion_mid_block_layers_per_block": 1, "motion_num_attention_heads": 8, "motion_norm_num_groups": 32,
    "motion_max_seq_length": 32,
}
EXPECTED = {
    ("sd", "sd15"): SD15,
    ("sd", "sd21-v"): SD21,
    ("modelscope", "ms-1.7b"): MS17B,
    ("animatediff", "v1-5-2"): {
        **{f"sd/{name}": facts for name, facts in SD15.items()},
        "motion_adapter/config.json": {**MOTION, "use_motion_mid_block": True},
    },
    ("animatediff", "v3"): {
        **{f"sd/{name}": facts for name, facts in SD15.items()},
        "motion_adapter/config.json": {**MOTION, "use_motion_mid_block": False},
    },
}

# Parameter counts of the random-init models (exact, as built with diffusers 0.42), next to the
# published figures: SD-1.5 UNet 859.52 M, SD-2.1 UNet 865.91 M, VAE 83.65 M; ModelScope's UNet
# 5.65 GB of fp32 safetensors = 1.41 B; the motion adapters' fp32 safetensors 1.82 GB (v1-5-2) and
# 1.67 GB (v3) = 453 M and 417 M. Ours: 1.815 GB and 1.671 GB, the ModelScope UNet 5.645 GB.
UNET_PARAMS = {"sd15": 859_520_964, "sd21-v": 865_910_724, "ms-1.7b": 1_411_233_860}
VAE_PARAMS = 83_653_863
MOTION_PARAMS = {"v1-5-2": 453_209_280, "v3": 417_137_600}  # + 604_160 / 563_200 positional-encoding buffers in the files
TEXT_PARAMS = {768: 52_181_760, 1024: 75_867_136}  # 2 layers; the full 12-layer CLIP-L text tower is 123.06 M

ALL = sorted(EXPECTED)


# ---------------------------------------------------------------- fast: the tiny layout and the CLI

VOLATILE = {"_diffusers_version", "transformers_version", "_name_or_path"}


def _fingerprint(root: Path) -> dict:
    """Every JSON file (less library versions) and each weights file's tensor and parameter counts."""
    from safetensors import safe_open

    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if "tokenizer/" in rel:
            continue
        if path.suffix == ".json":
            data = json.loads(path.read_text())
            out[rel] = {k: v for k, v in data.items() if k not in VOLATILE} if isinstance(data, dict) else data
        elif path.suffix == ".safetensors":
            with safe_open(str(path), "pt") as handle:
                shapes = [handle.get_slice(key).get_shape() for key in handle.keys()]
            out[rel] = {"tensors": len(shapes), "parameters": sum(int(torch.Size(s).numel()) for s in shapes)}
    return out


@pytest.mark.parametrize("kind", ["animatediff", "modelscope", "sd"])
def test_tiny_shape_is_unchanged(kind, tmp_path):
    """``--shape tiny`` (the default) writes exactly the layout of TINY_LAYOUT_VERSION 1 (recorded before
    real shapes existed): same configs, same tensors, the 514-id byte tokenizer."""
    from transformers import CLIPTokenizer

    golden = json.loads((REPO / "tests" / "data" / "tiny_layout_v1.json").read_text())[kind]
    assert main(["make-tiny", "--kind", kind, "--out", str(tmp_path / kind), "--shape", "tiny"]) == 0
    assert _fingerprint(tmp_path / kind) == golden
    sd = tmp_path / kind / "sd" if kind == "animatediff" else tmp_path / kind
    assert len(CLIPTokenizer.from_pretrained(sd / "tokenizer")) == 514


def test_padded_tokenizer_has_clip_ids(tmp_path):
    tokenizer = build_tokenizer(tmp_path, vocab_size=49408)
    assert len(tokenizer) == 49408
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id) == (49406, 49407)
    ids = tokenizer("a red ball, time-lapse").input_ids
    assert ids[0] == 49406 and ids[-1] == 49407 and max(ids[1:-1]) < 512


def test_cli_and_module_agree_on_variants():
    assert REAL_VARIANTS == VARIANTS
    assert resolve_variant("animatediff", None) == "v1-5-2"
    assert resolve_variant("sd", None) == "sd15"
    with pytest.raises(VariantError, match="sd15, sd21-v"):
        resolve_variant("sd", "v3")


@pytest.mark.parametrize(
    "args,allowed",
    [
        (["--kind", "sd", "--shape", "real", "--variant", "v3"], "sd15, sd21-v"),
        (["--kind", "animatediff", "--shape", "real", "--variant", "sd15"], "v1-5-2, v3"),
        (["--kind", "modelscope", "--shape", "real", "--variant", "ms-1.8b"], "ms-1.7b"),
        (["--kind", "sd", "--variant", "sd15"], "sd15, sd21-v"),  # --shape tiny has no variants
    ],
)
def test_cli_rejects_a_variant_the_kind_lacks(args, allowed, tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["make-tiny", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--variant" in err and allowed in err
    assert not out.exists()


def test_cli_rejects_an_unknown_shape(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["make-tiny", "--kind", "sd", "--out", str(tmp_path), "--shape", "huge"])
    assert "--shape" in capsys.readouterr().err


# ---------------------------------------------------------------- slow: build, compare, load


@pytest.fixture(scope="module", params=ALL, ids=["-".join(p) for p in ALL])
def real(request, real_shape_model):
    kind, variant = request.param
    return kind, variant, real_shape_model(kind, variant)


@pytest.mark.slow
@pytest.mark.real_shape
def test_saved_configs_are_the_published_numbers(real):
    kind, variant, root = real
    for name, facts in EXPECTED[(kind, variant)].items():
        saved = json.loads((root / name).read_text())
        assert {key: saved.get(key) for key in facts} == facts, name
    marker = json.loads((root / "seppo_real.json").read_text())
    assert (marker["kind"], marker["variant"], marker["text_encoder_layers"]) == (kind, variant, 2)


def _parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _check_pipeline(folder: Path, variant: str) -> None:
    """Each component through its standard class's ``from_pretrained``, with the expected size."""
    import diffusers
    from transformers import CLIPTextModel, CLIPTokenizer

    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == ("TextToVideoSDPipeline" if variant == "ms-1.7b" else "StableDiffusionPipeline")
    scheduler_class = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())["_class_name"]
    scheduler = getattr(diffusers, scheduler_class).from_pretrained(folder, subfolder="scheduler")
    assert scheduler.config.prediction_type == ("v_prediction" if variant == "sd21-v" else "epsilon")
    tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder")
    assert text_encoder.get_input_embeddings().num_embeddings == len(tokenizer) == 49408
    assert (text_encoder.config.bos_token_id, text_encoder.config.eos_token_id) == (
        tokenizer.bos_token_id, tokenizer.eos_token_id)
    assert _parameters(text_encoder) == TEXT_PARAMS[text_encoder.config.hidden_size]
    with torch.no_grad():
        hidden = text_encoder(tokenizer(["a red ball"], padding="max_length", return_tensors="pt").input_ids)[0]
    assert hidden.shape == (1, 77, text_encoder.config.hidden_size)
    del text_encoder
    assert _parameters(diffusers.AutoencoderKL.from_pretrained(folder, subfolder="vae")) == VAE_PARAMS
    unet_class = diffusers.UNet3DConditionModel if variant == "ms-1.7b" else diffusers.UNet2DConditionModel
    unet = unet_class.from_pretrained(folder, subfolder="unet")
    assert _parameters(unet) == UNET_PARAMS[variant]
    del unet


@pytest.mark.slow
@pytest.mark.real_shape
def test_loads_with_the_standard_classes(real):
    kind, variant, root = real
    if kind != "animatediff":
        _check_pipeline(root, variant)
        return
    from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel

    _check_pipeline(root / "sd", "sd15")
    adapter = MotionAdapter.from_pretrained(root / "motion_adapter", torch_dtype=torch.float16)
    assert _parameters(adapter) == MOTION_PARAMS[variant]
    assert (adapter.mid_block is not None) == (variant == "v1-5-2")
    # fp16 halves the peak (UNet2D + adapter + the UNetMotionModel built from them) to about 8 GB
    unet2d = UNet2DConditionModel.from_pretrained(root / "sd", subfolder="unet", torch_dtype=torch.float16)
    motion_unet = UNetMotionModel.from_unet2d(unet2d, adapter)
    del unet2d
    assert _parameters(motion_unet) == UNET_PARAMS["sd15"] + MOTION_PARAMS[variant]
    del motion_unet, adapter


@pytest.mark.slow
@pytest.mark.real_shape
def test_real_animatediff_steps_through_the_trainer_adapter(real_shape_model):
    """The v1-5-2 real shape behind seppo_video's own adapter: prompt, 8x8 latents, gradient on motion only."""
    from seppo_video.config import ModelConfig
    from seppo_video.models.adapters import load_adapter

    root = real_shape_model("animatediff", "v1-5-2")
    adapter = load_adapter(ModelConfig(kind="animatediff", pretrained=str(root / "sd"),
                                       motion_adapter=str(root / "motion_adapter"), trainable="motion"))
    embeds = adapter.encode_prompt(["a red ball", ""])
    assert embeds.shape == (2, 77, 768)
    latents = torch.randn(2, 4, 2, 8, 8)
    out = adapter.predict(latents, torch.tensor([3, 900]), embeds)
    assert out.shape == latents.shape and torch.isfinite(out).all()
    out.square().mean().backward()
    with_grad = {n for n, p in adapter.unet.named_parameters() if p.grad is not None}
    assert with_grad and all("motion_modules" in n for n in with_grad)
