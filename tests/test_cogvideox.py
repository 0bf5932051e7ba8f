"""The CogVideoX backbone: v-prediction SePPO by hand on CogVideoX's own schedule, reference sampling
against CogVideoXPipeline, exports loaded by CogVideoXPipeline itself, resumption, the latent cache, and
the frame / resolution / folder checks.

The by-hand loss is independent of the trainer's code: alphas_cumprod are rebuilt here from the
formula (scaled-linear betas, the SNR shift ``abar / (k + (1 - k) abar)``, then the zero-terminal-SNR
rescale of sqrt(abar)), the reference is a deep copy of the policy with the snapshot loaded, its
sample comes from a DDIM + CFG loop written here (trailing timesteps, v-prediction), q(x, t, eps) and
the v target are spelled out, and the transformer is called directly in its frames-first layout.
Only the random draws are shared: t, eps and the per-sample seeds come from the trainer's keyed
generators.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from video_transformers import (
    assert_export_predicts_like_the_policy,
    assert_resume_reproduces_a_straight_run,
    assert_sign_aaf_loss_matches,
    encoded_batch,
    exported_pipeline,
    hand_errors,
    hand_test_run,
    noise_generator,
    reference_copy,
    reference_seeds,
    trainer_loss,
)

import seppo_video.train as recipe
from seppo_video.config import ConfigError, load_config
from seppo_video.models.adapters import check_model_fits, load_adapter
from seppo_video.models.tiny import ensure_tiny
from seppo_video.seppo.sampler import sample_latents

COG = ["model.kind=cogvideox", "model.trainable=lora", "data.num_frames=9", "data.resolution=32",
       "data.batch_size=2", "train.log_with=none", "train.policy_dropout=false"]
STEPS, GUIDANCE, T = 4, 6.0, 1000


def _alphas_cumprod(snr_shift: float = 3.0) -> torch.Tensor:
    """CogVideoX-2b's schedule from its formula, in float64."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, T, dtype=torch.float64) ** 2
    abar = torch.cumprod(1 - betas, dim=0)
    abar = abar / (snr_shift + (1 - snr_shift) * abar)  # the SNR divided by snr_shift
    root = abar.sqrt()
    root = (root - root[-1]) * root[0] / (root[0] - root[-1])  # zero terminal SNR, first value kept
    return root**2


def _v(transformer, x, t, embeds):
    """The transformer on [B, C, F, H, W] latents (it takes them frames first)."""
    return transformer(hidden_states=x.transpose(1, 2), encoder_hidden_states=embeds, timestep=t).sample.transpose(1, 2)


def _ddim_cfg_sample(transformer, abar, embeds, negative, seeds, shape) -> torch.Tensor:
    """CogVideoXDDIMScheduler with trailing spacing, written out: t_i = round(T - i T / n) - 1, the
    previous level t - T // n (abar = 1 past the end), x0 = sqrt(abar) x - sqrt(1 - abar) v, and
    x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev) (x - sqrt(abar) x0) / sqrt(1 - abar)."""
    channels, frames, height, width = shape
    # CogVideoXPipeline draws each sample's noise frames first
    x = torch.stack([torch.randn((frames, channels, height, width), generator=torch.Generator().manual_seed(s))
                     for s in seeds]).transpose(1, 2).double()
    for i in range(STEPS):
        t = round(T - i * T / STEPS) - 1
        prev = t - T // STEPS
        a, a_prev = abar[t], (abar[prev] if prev >= 0 else torch.tensor(1.0, dtype=torch.float64))
        steps = torch.full((len(seeds),), t, dtype=torch.long)
        with torch.no_grad():
            uncond = _v(transformer, x.float(), steps, negative.expand_as(embeds)).double()
            cond = _v(transformer, x.float(), steps, embeds).double()
        v = uncond + GUIDANCE * (cond - uncond)
        x0 = a.sqrt() * x - (1 - a).sqrt() * v
        x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * (x - a.sqrt() * x0) / (1 - a).sqrt()
    return x.float()


def test_the_schedule_is_cogvideox_s_not_plain_ddpm():
    """The trainer's q(x, t, eps) and v target invert with the alphas rebuilt here, which are far from
    the plain scaled-linear DDPM alphas of the same betas."""
    from seppo_video.seppo.noise import noise_pairs, noise_process

    adapter_schedule = load_adapter(load_config(None, COG).model, configure=False).scheduler_config
    process = noise_process(adapter_schedule)
    abar = _alphas_cumprod()
    plain = torch.cumprod(1 - torch.linspace(0.00085**0.5, 0.012**0.5, T, dtype=torch.float64) ** 2, 0)
    assert (abar - plain).abs().max() > 0.1 and abar[-1] == 0
    x_w, x_ref = torch.randn(3, 4, 3, 8, 8), torch.randn(3, 4, 3, 8, 8)
    pairs = noise_pairs(process, x_w, x_ref, torch.Generator().manual_seed(4))
    generator = torch.Generator().manual_seed(4)
    t = torch.randint(0, T, (3,), generator=generator)  # t, then eps, from the one generator
    eps = torch.randn(x_w.shape, generator=generator).double().repeat(2, 1, 1, 1, 1)
    assert torch.equal(pairs.timesteps, t.repeat(2))
    a = abar[pairs.timesteps].view(-1, 1, 1, 1, 1)
    x0 = torch.cat([x_w, x_ref]).double()
    torch.testing.assert_close(pairs.noisy.double(), a.sqrt() * x0 + (1 - a).sqrt() * eps, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pairs.target.double(), a.sqrt() * eps - (1 - a).sqrt() * x0, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("checkpointing", [False, True])
def test_cogvideox_seppo_loss_equals_the_hand_computation(checkpointing, tmp_path):
    run = hand_test_run(tmp_path, COG, checkpointing, STEPS, GUIDANCE)
    adapter = run.adapter
    assert adapter.unet.gradient_checkpointing == checkpointing
    ours = trainer_loss(run)

    # ---- by hand
    reference = reference_copy(run)
    x_w, embeds, negative = encoded_batch(run, ours)
    abar = _alphas_cumprod()
    x_ref = _ddim_cfg_sample(reference, abar, embeds, negative, reference_seeds(run, ours), x_w.shape[1:])
    generator = noise_generator(run, ours)
    t = torch.randint(0, T, (2,), generator=generator)
    eps = torch.randn(x_w.shape, generator=generator).double()
    alpha, sigma = abar[t].sqrt().view(-1, 1, 1, 1, 1), (1 - abar[t]).sqrt().view(-1, 1, 1, 1, 1)
    errors = hand_errors(lambda model, x: _v(model, x, t, embeds), run, reference, x_w, x_ref,
                         lambda x0: (alpha * x0 + sigma * eps, alpha * eps - sigma * x0))  # x_t and v
    assert_sign_aaf_loss_matches(run, ours, errors)


def _rotary_copy(tmp_path):
    """The tiny model with 3D rotary embeddings instead of sinusoidal positions (the 5B's layout)."""
    root = tmp_path / "cog-rope"
    shutil.copytree(ensure_tiny("cogvideox"), root)
    file = root / "transformer" / "config.json"
    file.write_text(json.dumps({**json.loads(file.read_text()), "use_rotary_positional_embeddings": True}))
    return root


@pytest.mark.parametrize("rotary", [False, True])
def test_reference_sampler_matches_cogvideox_pipeline_latents(rotary, tmp_path):
    from diffusers import CogVideoXPipeline

    root = _rotary_copy(tmp_path) if rotary else ensure_tiny("cogvideox")
    adapter = load_adapter(load_config(None, [*COG, f"model.pretrained={root}"]).model, configure=False)
    assert adapter.unet.config.use_rotary_positional_embeddings == rotary
    prompts, seeds = ["a flower blooming, time-lapse", "ice  melting on a table"], [11, 12]
    embeds, negative = adapter.encode_prompt(prompts), adapter.encode_prompt([""])
    width = 64 if rotary else 32  # not square: the rotary tables' crop region matters
    ours = sample_latents(adapter, embeds, negative, seeds=seeds, num_frames=3, latent_size=(8, width // 4),
                          num_inference_steps=STEPS, guidance_scale=GUIDANCE)
    pipe = CogVideoXPipeline.from_pretrained(root)
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(prompt=prompts, height=32, width=width, num_frames=9, num_inference_steps=STEPS,
                  guidance_scale=GUIDANCE, generator=[torch.Generator().manual_seed(s) for s in seeds],
                  output_type="latent").frames
    assert theirs.shape == (2, 3, 4, 8, width // 4)  # frames first
    torch.testing.assert_close(ours, theirs.transpose(1, 2), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("trainable", ["lora", "full"])
def test_export_loads_in_cogvideox_pipeline_with_the_trained_prediction(trainable, tmp_path):
    from diffusers import CogVideoXDDIMScheduler, CogVideoXPipeline, CogVideoXTransformer3DModel

    run, pipe = exported_pipeline(tmp_path, COG, trainable, CogVideoXPipeline, CogVideoXTransformer3DModel,
                                  CogVideoXDDIMScheduler)
    torch.testing.assert_close(pipe.scheduler.alphas_cumprod, _alphas_cumprod())
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert_export_predicts_like_the_policy(run, lambda x, t, embeds: _v(pipe.transformer, x, t, embeds),
                                           torch.randn(1, 4, 3, 8, 8), torch.tensor([321]))
    card = (tmp_path / "export" / "README.md").read_text()
    assert "SNR shift 3.0" in card and "CogVideoXDDIMScheduler" in card


def test_resume_reproduces_the_uninterrupted_trajectory(tmp_path):
    assert_resume_reproduces_a_straight_run(tmp_path, COG)
    summary = json.loads((tmp_path / "straight" / "summary.json").read_text())
    assert summary["noise_schedule"]["snr_shift_scale"] == 3.0 and summary["prediction_type"] == "v_prediction"


def test_latent_cache_holds_compressed_frames_and_trains(tmp_path):
    from seppo_video.data import LatentCacheDataset, build_dataset
    from seppo_video.data.latent_cache import cache_latents_from_config

    cache = tmp_path / "cache"
    config = load_config(None, [*COG, f"data.latent_cache={cache}", f"output_dir={tmp_path / 'run'}",
                                "train.max_steps=1", "sample.prompts=[]"])
    with pytest.raises(ConfigError, match="data.num_frames: 7 is not 1 \\+ 4k"):
        cache_latents_from_config(load_config(None, [*COG, "data.num_frames=7", f"data.latent_cache={cache}"]))
    cache_latents_from_config(config)
    dataset = build_dataset(config.data, config.model, pairs=False)
    assert isinstance(dataset, LatentCacheDataset)
    assert dataset[0]["latents"].shape == (4, 3, 8, 8)  # 9 frames: 1 + 8 / 4 latent frames
    assert dataset[0]["prompt_embeds"].shape == (226, 32)
    recipe.train(config)
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 1


@pytest.mark.parametrize("override,message", [
    ("data.num_frames=7", r"data.num_frames: 7 is not 1 \+ 4k, the clip lengths CogVideoX's.*use 5 or 9"),
    ("data.resolution=36", r"data.resolution: 36 is not a multiple of 8.*use 32 or 40"),
    ("model.noise_scheduler.shift=3.0", r"model.noise_scheduler.shift: .* DDPM-style.*allowed here: beta_schedule"),
    ("seppo.ref_eta=0.5", (r"seppo.ref_eta: 0.5, but CogVideoX samples references with the deterministic "
                           r"CogVideoXDDIMScheduler")),
])
def test_model_fit_errors_name_the_key_and_the_valid_values(override, message):
    with pytest.raises(ConfigError, match=message):
        check_model_fits(load_config(None, [*COG, override]))


def test_motion_and_xformers_are_refused():
    with pytest.raises(ConfigError, match="model.trainable: 'motion'.*model.kind='cogvideox' use 'lora' or 'full'"):
        load_config(None, [*COG, "model.trainable=motion"])
    adapter = load_adapter(load_config(None, COG).model, configure=False)
    with pytest.raises(ConfigError, match="model.attention: 'xformers' is not allowed for CogVideoX.*'sdpa'"):
        adapter.set_attention_backend("xformers")


def test_folders_of_another_kind_or_version_are_refused(tmp_path):
    wan_folder = r"model.pretrained: .* flow-matching .*'cogvideox' does not train.*CogVideoX"
    with pytest.raises(ConfigError, match=wan_folder):
        check_model_fits(load_config(None, [*COG, f"model.pretrained={ensure_tiny('wan')}"]))
    cogvideox_folder = r"model.pretrained: .* CogVideoX \(SNR-shifted DDPM\) CogVideoXDDIMScheduler.*'sd'"
    with pytest.raises(ConfigError, match=cogvideox_folder):
        check_model_fits(load_config(None, ["model.kind=sd", "model.trainable=lora", "data.num_frames=1",
                                            f"model.pretrained={ensure_tiny('cogvideox')}"]))
    root = tmp_path / "cog-1.5"
    shutil.copytree(ensure_tiny("cogvideox"), root)
    file = root / "transformer" / "config.json"
    file.write_text(json.dumps({**json.loads(file.read_text()), "patch_size_t": 2}))
    with pytest.raises(ConfigError, match="model.pretrained: .* CogVideoX 1.5 transformer.*2B, 5B"):
        check_model_fits(load_config(None, [*COG, f"model.pretrained={root}"]))


def test_a_dpm_scheduler_folder_trains_on_the_same_schedule(tmp_path):
    """CogVideoX-5B folders ship CogVideoXDPMScheduler: the same alphas, sampled with the DDIM one."""
    from seppo_video.seppo.noise import CogVideoXNoise, noise_process

    root = tmp_path / "cog-dpm"
    shutil.copytree(ensure_tiny("cogvideox"), root)
    file = root / "scheduler" / "scheduler_config.json"
    file.write_text(json.dumps({**json.loads(file.read_text()), "_class_name": "CogVideoXDPMScheduler"}))
    config = load_config(None, [*COG, f"model.pretrained={root}"])
    check_model_fits(config)
    adapter = load_adapter(config.model, configure=False)
    process = noise_process(adapter.scheduler_config)
    assert isinstance(process, CogVideoXNoise)
    torch.testing.assert_close(process.scheduler.alphas_cumprod, _alphas_cumprod())
    assert type(process.sampler(STEPS)).__name__ == "CogVideoXDDIMScheduler"
    assert type(adapter.sampling_scheduler()).__name__ == "CogVideoXDDIMScheduler"


def test_real_shape_cogvideox_has_the_published_architecture():
    """The published CogVideoX-2b components, built on the meta device (no memory, no weights).

    Expected figures are derived here from the published widths (THUDM/CogVideoX-2b transformer/config.json:
    30 blocks of 30 heads x 64 = 1920, time embedding 512, text 4096, 16 latent channels, 2x2 patches, q/k
    LayerNorms per head, 4x feed-forward), independently of seppo_video.models.published."""
    import diffusers
    from transformers import T5Config, T5EncoderModel

    from seppo_video.config import noise_family
    from seppo_video.models import published
    from seppo_video.models.real import resolve_variant

    assert resolve_variant("cogvideox", None) == "2b"
    with torch.device("meta"):
        transformer = diffusers.CogVideoXTransformer3DModel(**published.cogvideox_2b_transformer())
        vae = diffusers.AutoencoderKLCogVideoX(**published.cogvideox_2b_vae())
        encoder = T5EncoderModel(T5Config(**published.t5_v1_1_xxl_encoder()))
    dim, heads, head_dim, time, text, patch_out = 1920, 30, 64, 512, 4096, 2 * 2 * 16
    linear = lambda i, o: i * o + o
    layer_norm = 2 * dim
    block = (2 * (linear(time, 6 * dim) + layer_norm)  # the two adaptive LayerNorm-zero modulations
             + 4 * linear(dim, dim) + 2 * 2 * head_dim  # q, k, v, out; q / k LayerNorms over a head
             + linear(dim, 4 * dim) + linear(4 * dim, dim))  # feed-forward
    embeddings = (16 * 2 * 2 * dim + dim + linear(text, dim)  # patch (2x2 conv) and text projections
                  + linear(dim, time) + linear(time, time))  # timestep MLP
    head = layer_norm + linear(time, 2 * dim) + layer_norm + linear(dim, patch_out)  # final norm, AdaLN, out
    assert heads * head_dim == dim
    assert sum(p.numel() for p in transformer.parameters()) == 30 * block + embeddings + head
    assert round(sum(p.numel() for p in transformer.parameters()) / 1e9, 2) == 1.69
    # 8x spatial (three halvings), 4x temporal, 16 channels, the 2B's latent scale
    assert len(vae.config.block_out_channels) == 4 and vae.config.temporal_compression_ratio == 4
    assert vae.config.latent_channels == 16 and vae.config.scaling_factor == 1.15258426
    assert encoder.config.d_model == 4096 and encoder.config.num_layers == 24 and encoder.config.vocab_size == 32128
    scheduler = published.cogvideox_2b_scheduler()
    assert noise_family(scheduler) == "cogvideox" and scheduler["prediction_type"] == "v_prediction"
