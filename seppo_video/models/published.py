"""The published configurations of the real backbones, as plain numbers (no weights).

One function per published component; each returns a fresh dict of the
constructor arguments of the standard diffusers / transformers class, with
the value of every key as it stands in the model's published ``config.json``
(``scheduler_config.json`` for schedulers), and the repository and file it
comes from in the comment above it. ``seppo_video.models.real`` builds
random-init models from these; nothing here is downloaded.

Where a file was not read directly, the comment says what the value was
checked against instead.
"""

from __future__ import annotations

from typing import Any

CLIP_VOCAB_SIZE = 49408  # every CLIP / OpenCLIP text tower below (vocab_size in their text_encoder/config.json)

_SD_DOWN_2D = ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
_SD_UP_2D = ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")


# ---------------------------------------------------------------- Stable Diffusion 1.5


def sd15_unet() -> dict[str, Any]:
    # runwayml/stable-diffusion-v1-5, unet/config.json (sample_size 64 since the hub fix
    # "Correct sample_size of Stable Diffusion 1's unet").
    return {
        "sample_size": 64,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": _SD_DOWN_2D,
        "up_block_types": _SD_UP_2D,
        "block_out_channels": (320, 640, 1280, 1280),
        "layers_per_block": 2,
        "attention_head_dim": 8,
        "cross_attention_dim": 768,
        "norm_num_groups": 32,
        "norm_eps": 1e-5,
        "act_fn": "silu",
        "center_input_sample": False,
        "downsample_padding": 1,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "mid_block_scale_factor": 1,
    }


def sd_vae(sample_size: int = 512) -> dict[str, Any]:
    # runwayml/stable-diffusion-v1-5, vae/config.json (sample_size 512); the same autoencoder in
    # damo-vilab/text-to-video-ms-1.7b, vae/config.json (sample_size 512) and
    # stabilityai/stable-diffusion-2-1, vae/config.json (sample_size 768).
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "block_out_channels": (128, 256, 512, 512),
        "layers_per_block": 2,
        "latent_channels": 4,
        "norm_num_groups": 32,
        "act_fn": "silu",
        "sample_size": sample_size,
        "scaling_factor": 0.18215,
    }


def clip_vit_l14_text() -> dict[str, Any]:
    # runwayml/stable-diffusion-v1-5, text_encoder/config.json (openai/clip-vit-large-patch14's text tower).
    # Its bos/eos/pad ids (0, 2, 1) are a known legacy mismatch with the CLIP tokenizer (49406, 49407);
    # seppo_video.models.real sets them from the tokenizer it builds.
    return {
        "vocab_size": CLIP_VOCAB_SIZE,
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "max_position_embeddings": 77,
        "hidden_act": "quick_gelu",
        "layer_norm_eps": 1e-5,
        "projection_dim": 768,
        "attention_dropout": 0.0,
        "dropout": 0.0,
        "initializer_factor": 1.0,
        "initializer_range": 0.02,
    }


def sd15_scheduler() -> dict[str, Any]:
    # runwayml/stable-diffusion-v1-5, scheduler/scheduler_config.json (prediction_type is not written
    # there: the class default, epsilon, is what SD-1.5 was trained with).
    return {
        "_class_name": "PNDMScheduler",
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "trained_betas": None,
        "skip_prk_steps": True,
        "set_alpha_to_one": False,
        "steps_offset": 1,
        "prediction_type": "epsilon",
    }


# ---------------------------------------------------------------- AnimateDiff motion adapters (SD-1.5)


def motion_adapter_v1_5_2() -> dict[str, Any]:
    # guoyww/animatediff-motion-adapter-v1-5-2, config.json (diffusers' conversion of mm_sd_v15_v2.ckpt).
    # The mid-block motion module and the 32-frame positional encoding are those of AnimateDiff v2:
    # guoyww/AnimateDiff, configs/inference/inference-v2.yaml (motion_module_mid_block: true,
    # temporal_position_encoding_max_len: 32, num_attention_heads: 8, num_transformer_block: 1).
    # Cross-check: the repository's fp32 diffusion_pytorch_model.safetensors is 1.82 GB (~453 M params),
    # 0.15 GB more than v1-5's and v3's 1.67 GB (no mid block): one 1280-channel motion module.
    return {
        "block_out_channels": (320, 640, 1280, 1280),
        "motion_layers_per_block": 2,
        "motion_mid_block_layers_per_block": 1,
        "motion_num_attention_heads": 8,
        "motion_norm_num_groups": 32,
        "motion_max_seq_length": 32,
        "use_motion_mid_block": True,
        "conv_in_channels": None,
    }


def motion_adapter_v3() -> dict[str, Any]:
    # guoyww/animatediff-motion-adapter-v1-5-3, config.json ("_diffusers_version": "0.25.0.dev0"):
    # no mid-block motion module, 32 frames. Agrees with guoyww/AnimateDiff,
    # configs/inference/inference-v3.yaml (motion_module_mid_block: false).
    return {
        "block_out_channels": (320, 640, 1280, 1280),
        "motion_layers_per_block": 2,
        "motion_mid_block_layers_per_block": 1,
        "motion_num_attention_heads": 8,
        "motion_norm_num_groups": 32,
        "motion_max_seq_length": 32,
        "use_motion_mid_block": False,
    }


# ---------------------------------------------------------------- ModelScope text-to-video-ms-1.7b


def ms17b_unet() -> dict[str, Any]:
    # damo-vilab/text-to-video-ms-1.7b (now ali-vilab/), unet/config.json. attention_head_dim 64 is
    # passed on by diffusers as the number of heads (a naming quirk of UNet3DConditionModel kept for
    # compatibility); the parameter count does not depend on it.
    return {
        "sample_size": 32,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ("CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"),
        "up_block_types": ("UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"),
        "block_out_channels": (320, 640, 1280, 1280),
        "layers_per_block": 2,
        "attention_head_dim": 64,
        "cross_attention_dim": 1024,
        "norm_num_groups": 32,
        "norm_eps": 1e-5,
        "act_fn": "silu",
    }


def openclip_h_text() -> dict[str, Any]:
    # damo-vilab/text-to-video-ms-1.7b, text_encoder/config.json; identical in
    # stabilityai/stable-diffusion-2-1, text_encoder/config.json (OpenCLIP ViT-H/14's text tower,
    # 23 of its 24 layers: SD-2 conditions on the penultimate layer).
    return {
        "vocab_size": CLIP_VOCAB_SIZE,
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_hidden_layers": 23,
        "num_attention_heads": 16,
        "max_position_embeddings": 77,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-5,
        "projection_dim": 512,
        "attention_dropout": 0.0,
        "dropout": 0.0,
        "initializer_factor": 1.0,
        "initializer_range": 0.02,
    }


def ms17b_scheduler() -> dict[str, Any]:
    # damo-vilab/text-to-video-ms-1.7b, scheduler/scheduler_config.json: DDIM on SD's scaled-linear schedule.
    return {
        "_class_name": "DDIMScheduler",
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "trained_betas": None,
        "clip_sample": False,
        "clip_sample_range": 1.0,
        "set_alpha_to_one": False,
        "steps_offset": 1,
        "prediction_type": "epsilon",
        "thresholding": False,
        "dynamic_thresholding_ratio": 0.995,
        "sample_max_value": 1.0,
    }


# ---------------------------------------------------------------- Stable Diffusion 2.1 (768-v)


def sd21_unet() -> dict[str, Any]:
    # stabilityai/stable-diffusion-2-1, unet/config.json (the 768x768 v-prediction model).
    return {
        "sample_size": 96,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": _SD_DOWN_2D,
        "up_block_types": _SD_UP_2D,
        "block_out_channels": (320, 640, 1280, 1280),
        "layers_per_block": 2,
        "attention_head_dim": (5, 10, 20, 20),
        "cross_attention_dim": 1024,
        "use_linear_projection": True,
        "upcast_attention": True,
        "norm_num_groups": 32,
        "norm_eps": 1e-5,
        "act_fn": "silu",
        "center_input_sample": False,
        "downsample_padding": 1,
        "dual_cross_attention": False,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "mid_block_scale_factor": 1,
        "only_cross_attention": False,
    }


def sd21_scheduler() -> dict[str, Any]:
    # stabilityai/stable-diffusion-2-1, scheduler/scheduler_config.json: DDIM, v-prediction
    # (stabilityai/stable-diffusion-2 switched "velocity" to "v_prediction" in the hub commit
    # "Update config for v-prediction"; 2-1 ships it so).
    return {
        "_class_name": "DDIMScheduler",
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "trained_betas": None,
        "clip_sample": False,
        "set_alpha_to_one": False,
        "skip_prk_steps": True,
        "steps_offset": 1,
        "prediction_type": "v_prediction",
    }


# ---------------------------------------------------------------- Wan 2.1 T2V 1.3B (Wan-AI/Wan2.1-T2V-1.3B-Diffusers)

UMT5_VOCAB_SIZE = 256384  # google/umt5-xxl, the Wan 2.1 text encoder's vocab_size


def wan21_t2v_1_3b_transformer() -> dict[str, Any]:
    # Wan-AI/Wan2.1-T2V-1.3B-Diffusers, transformer/config.json; the same numbers as diffusers'
    # scripts/convert_wan_to_diffusers.py ("Wan-T2V-1.3B") and Wan2.1's wan/configs/wan_t2v_1_3B.py
    # (dim 1536 = 12 heads x 128, ffn_dim 8960, 30 layers, qk_norm, cross_attn_norm, eps 1e-6).
    return {
        "patch_size": (1, 2, 2),
        "num_attention_heads": 12,
        "attention_head_dim": 128,
        "in_channels": 16,
        "out_channels": 16,
        "text_dim": 4096,
        "freq_dim": 256,
        "ffn_dim": 8960,
        "num_layers": 30,
        "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads",
        "eps": 1e-6,
        "image_dim": None,
        "added_kv_proj_dim": None,
        "rope_max_seq_len": 1024,
    }


def wan21_vae() -> dict[str, Any]:
    # Wan-AI/Wan2.1-T2V-1.3B-Diffusers, vae/config.json (Wan2.1_VAE.pth: 4x8x8 compression,
    # wan/configs vae_stride (4, 8, 8)). latents_mean / latents_std are AutoencoderKLWan's
    # defaults, which are that file's 16 per-channel statistics.
    return {
        "base_dim": 96,
        "z_dim": 16,
        "dim_mult": [1, 2, 4, 4],
        "num_res_blocks": 2,
        "attn_scales": [],
        "temperal_downsample": [False, True, True],
        "dropout": 0.0,
    }


def umt5_xxl_encoder() -> dict[str, Any]:
    # Wan-AI/Wan2.1-T2V-1.3B-Diffusers, text_encoder/config.json (google/umt5-xxl's encoder).
    return {
        "vocab_size": UMT5_VOCAB_SIZE,
        "d_model": 4096,
        "d_kv": 64,
        "d_ff": 10240,
        "num_layers": 24,
        "num_heads": 64,
        "relative_attention_num_buckets": 32,
        "relative_attention_max_distance": 128,
        "feed_forward_proj": "gated-gelu",
        "dropout_rate": 0.1,
        "layer_norm_epsilon": 1e-6,
    }


def wan21_scheduler() -> dict[str, Any]:
    # Wan-AI/Wan2.1-T2V-1.3B-Diffusers, scheduler/scheduler_config.json: UniPC in its flow mode with
    # flow_shift 3.0 (diffusers' Wan docs: 3.0 for 480p, 5.0 for 720p). seppo-video trains and samples
    # references with FlowMatchEulerDiscreteScheduler at this shift (models.adapters._flow_match_config).
    return {
        "_class_name": "UniPCMultistepScheduler",
        "num_train_timesteps": 1000,
        "beta_start": 0.0001,
        "beta_end": 0.02,
        "beta_schedule": "linear",
        "solver_order": 2,
        "prediction_type": "flow_prediction",
        "predict_x0": True,
        "solver_type": "bh2",
        "lower_order_final": True,
        "disable_corrector": [],
        "use_flow_sigmas": True,
        "flow_shift": 3.0,
        "timestep_spacing": "linspace",
        "steps_offset": 0,
        "final_sigmas_type": "zero",
    }


# ---------------------------------------------------------------- CogVideoX-2b (THUDM/CogVideoX-2b)

T5_VOCAB_SIZE = 32128  # google/t5-v1_1-xxl, the CogVideoX text encoder's vocab_size


def cogvideox_2b_transformer() -> dict[str, Any]:
    # THUDM/CogVideoX-2b, transformer/config.json: diffusers' scripts/convert_cogvideox_to_diffusers.py
    # builds it as CogVideoXTransformer3DModel's defaults with 30 layers, 30 heads and no rotary
    # embeddings ("For CogVideoX-2B, num_layers is 30 ... use_rotary_positional_embeddings is False");
    # the defaults below are that class's (dim 1920 = 30 x 64, 49 frames of 60 x 90 latents, 226 text tokens).
    return {
        "num_attention_heads": 30,
        "attention_head_dim": 64,
        "in_channels": 16,
        "out_channels": 16,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "time_embed_dim": 512,
        "text_embed_dim": 4096,
        "num_layers": 30,
        "dropout": 0.0,
        "attention_bias": True,
        "sample_width": 90,
        "sample_height": 60,
        "sample_frames": 49,
        "patch_size": 2,
        "temporal_compression_ratio": 4,
        "max_text_seq_length": 226,
        "activation_fn": "gelu-approximate",
        "timestep_activation_fn": "silu",
        "norm_elementwise_affine": True,
        "norm_eps": 1e-5,
        "spatial_interpolation_scale": 1.875,
        "temporal_interpolation_scale": 1.0,
        "use_rotary_positional_embeddings": False,
        "use_learned_positional_embeddings": False,
    }


def cogvideox_2b_vae() -> dict[str, Any]:
    # THUDM/CogVideoX-2b, vae/config.json: AutoencoderKLCogVideoX's defaults (8x spatial, 4x temporal
    # compression, 16 latent channels) with the 2B's scaling_factor 1.15258426 (the 5B's is 0.7), as
    # diffusers' scripts/convert_cogvideox_to_diffusers.py writes it.
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ("CogVideoXDownBlock3D",) * 4,
        "up_block_types": ("CogVideoXUpBlock3D",) * 4,
        "block_out_channels": (128, 256, 256, 512),
        "latent_channels": 16,
        "layers_per_block": 3,
        "act_fn": "silu",
        "norm_eps": 1e-6,
        "norm_num_groups": 32,
        "temporal_compression_ratio": 4,
        "sample_height": 480,
        "sample_width": 720,
        "scaling_factor": 1.15258426,
        "force_upcast": True,
        "use_quant_conv": False,
        "use_post_quant_conv": False,
    }


def t5_v1_1_xxl_encoder() -> dict[str, Any]:
    # THUDM/CogVideoX-2b, text_encoder/config.json: google/t5-v1_1-xxl's encoder (the conversion script
    # loads it from there); google-research's t5.1.1.xxl.gin: d_model 4096, d_ff 10240, 64 heads, 24 layers,
    # gated-GELU feed-forward.
    return {
        "vocab_size": T5_VOCAB_SIZE,
        "d_model": 4096,
        "d_kv": 64,
        "d_ff": 10240,
        "num_layers": 24,
        "num_heads": 64,
        "relative_attention_num_buckets": 32,
        "relative_attention_max_distance": 128,
        "feed_forward_proj": "gated-gelu",
        "dropout_rate": 0.1,
        "layer_norm_epsilon": 1e-6,
    }


def cogvideox_2b_scheduler() -> dict[str, Any]:
    # THUDM/CogVideoX-2b, scheduler/scheduler_config.json, as diffusers' scripts/convert_cogvideox_to_diffusers.py
    # writes it: CogVideoXDDIMScheduler, scaled-linear betas 0.00085 to 0.012, SNR shift 3.0, zero terminal
    # SNR, trailing spacing, v-prediction; set_alpha_to_one, no clipping.
    return {
        "_class_name": "CogVideoXDDIMScheduler",
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "clip_sample": False,
        "set_alpha_to_one": True,
        "steps_offset": 0,
        "prediction_type": "v_prediction",
        "timestep_spacing": "trailing",
        "rescale_betas_zero_snr": True,
        "snr_shift_scale": 3.0,
    }


# ---------------------------------------------------------------- LTX-Video 0.9 (Lightricks/LTX-Video)


def ltx_video_transformer() -> dict[str, Any]:
    # Lightricks/LTX-Video, transformer/config.json: diffusers' scripts/convert_ltx_to_diffusers.py builds
    # it as LTXVideoTransformer3DModel's defaults, which are these (dim 2048 = 32 heads x 64, 28 blocks,
    # 128 latent channels unpatched, T5-XXL captions of 4096).
    return {
        "in_channels": 128,
        "out_channels": 128,
        "patch_size": 1,
        "patch_size_t": 1,
        "num_attention_heads": 32,
        "attention_head_dim": 64,
        "cross_attention_dim": 2048,
        "num_layers": 28,
        "activation_fn": "gelu-approximate",
        "qk_norm": "rms_norm_across_heads",
        "norm_elementwise_affine": False,
        "norm_eps": 1e-6,
        "caption_channels": 4096,
        "attention_bias": True,
        "attention_out_bias": True,
    }


def ltx_video_vae() -> dict[str, Any]:
    # Lightricks/LTX-Video (0.9.0), vae/config.json: diffusers' scripts/convert_ltx_to_diffusers.py,
    # get_vae_config("0.9.0"): 4x4 pixel patches and three spatio-temporal halvings (32x space, 8x time),
    # 128 latent channels, a non-causal decoder without timestep conditioning.
    return {
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": 128,
        "block_out_channels": (128, 256, 512, 512),
        "decoder_block_out_channels": (128, 256, 512, 512),
        "layers_per_block": (4, 3, 3, 3, 4),
        "decoder_layers_per_block": (4, 3, 3, 3, 4),
        "spatio_temporal_scaling": (True, True, True, False),
        "decoder_spatio_temporal_scaling": (True, True, True, False),
        "decoder_inject_noise": (False, False, False, False, False),
        "upsample_residual": (False, False, False, False),
        "upsample_factor": (1, 1, 1, 1),
        "patch_size": 4,
        "patch_size_t": 1,
        "resnet_norm_eps": 1e-6,
        "scaling_factor": 1.0,
        "encoder_causal": True,
        "decoder_causal": False,
        "timestep_conditioning": False,
    }


def ltx_video_scheduler() -> dict[str, Any]:
    # Lightricks/LTX-Video, scheduler/scheduler_config.json, as diffusers' scripts/convert_ltx_to_diffusers.py
    # writes it: flow-matching Euler with a dynamic shift (mu from 0.95 at 1024 to 2.05 at 4096 latent tokens)
    # stretched to end at 0.1; the exponential time shift is the class default.
    return {
        "_class_name": "FlowMatchEulerDiscreteScheduler",
        "num_train_timesteps": 1000,
        "shift": 1.0,
        "use_dynamic_shifting": True,
        "base_shift": 0.95,
        "max_shift": 2.05,
        "base_image_seq_len": 1024,
        "max_image_seq_len": 4096,
        "shift_terminal": 0.1,
        "time_shift_type": "exponential",
    }
