"""The LTX-Video backbone: flow-matching SePPO by hand with LTX-Video's dynamic shift, reference sampling
against LTXPipeline, exports loaded by LTXPipeline itself, resumption, and the frame / resolution checks.

The by-hand loss is independent of the trainer's code: the shift exponent mu is written here from its
formula (linear in the video's latent token count between the scheduler's base and max points), the
training sigma is ``e^mu / (e^mu + 1 / v - 1)`` of the unshifted level, the Euler + CFG loop builds
LTXPipeline's sigmas (``1 .. 1 / n``, shifted, stretched to ``shift_terminal``), the winners are
encoded with the VAE and normalised here, the text states and their mask come from the tokenizer and
the encoder as LTXPipeline computes them, and the transformer is called directly on packed latents.
Only the random draws are shared with the trainer.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from video_transformers import (
    assert_export_predicts_like_the_policy,
    assert_resume_reproduces_a_straight_run,
    assert_sign_aaf_loss_matches,
    exported_pipeline,
    hand_errors,
    hand_test_run,
    noise_generator,
    reference_copy,
    reference_seeds,
    trainer_loss,
)

from seppo_video.config import ConfigError, load_config
from seppo_video.models.adapters import check_model_fits, load_adapter
from seppo_video.models.tiny import ensure_tiny
from seppo_video.seppo.sampler import sample_latents

LTX = ["model.kind=ltx", "model.trainable=lora", "data.num_frames=9", "data.resolution=64", "data.batch_size=2",
       "train.log_with=none", "train.policy_dropout=false"]
STEPS, GUIDANCE, T = 4, 3.0, 1000
# Lightricks/LTX-Video's scheduler: mu from 0.95 at 1024 tokens to 2.05 at 4096, stretched to end at 0.1
BASE, TOP, BASE_LEN, TOP_LEN, TERMINAL = 0.95, 2.05, 1024, 4096, 0.1
ROPE = (8 / 25, 32, 32)  # temporal compression / LTXPipeline's frame rate 25, spatial compression


def _mu(tokens: int) -> float:
    return BASE + (TOP - BASE) * (tokens - BASE_LEN) / (TOP_LEN - BASE_LEN)


def _shifted(v: torch.Tensor, mu: float) -> torch.Tensor:
    return math.exp(mu) / (math.exp(mu) + 1 / v - 1)


def _text(adapter, prompts):
    """T5 states and the attention mask, as LTXPipeline computes them (no mask into the encoder)."""
    tokens = adapter.tokenizer(list(prompts), padding="max_length", max_length=128, truncation=True,
                               add_special_tokens=True, return_tensors="pt")
    with torch.no_grad():
        return adapter.text_encoder(tokens.input_ids)[0], tokens.attention_mask.bool()


def _velocity(transformer, x, t, text):
    """The transformer on [B, C, F, h, w] latents, packed into [B, F h w, C] tokens."""
    states, mask = text
    frames, height, width = x.shape[2:]
    out = transformer(hidden_states=x.flatten(2).transpose(1, 2), encoder_hidden_states=states, timestep=t,
                      encoder_attention_mask=mask, num_frames=frames, height=height, width=width,
                      rope_interpolation_scale=ROPE).sample
    return out.transpose(1, 2).reshape(x.shape)


def _euler_cfg_sample(transformer, text, negative, seeds, shape) -> torch.Tensor:
    """LTXPipeline's schedule and FlowMatchEulerDiscreteScheduler's step, written out."""
    mu = _mu(shape[1] * shape[2] * shape[3])
    sigmas = _shifted(torch.linspace(1, 1 / STEPS, STEPS, dtype=torch.float64), mu)
    one_minus = 1 - sigmas
    sigmas = 1 - one_minus / (one_minus[-1] / (1 - TERMINAL))  # stretched so that the last one is TERMINAL
    sigmas = torch.cat([sigmas, torch.zeros(1, dtype=torch.float64)])
    x = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds]).double()
    uncond_text = tuple(part.expand_as(full) for part, full in zip(negative, text))
    for s, s_next in itertools.pairwise(sigmas):
        t = torch.full((len(seeds),), float(s * T))
        with torch.no_grad():
            uncond = _velocity(transformer, x.float(), t, uncond_text).double()
            cond = _velocity(transformer, x.float(), t, text).double()
        x = x + (s_next - s) * (uncond + GUIDANCE * (cond - uncond))
    return x.float()


@pytest.mark.parametrize("checkpointing", [False, True])
def test_ltx_seppo_loss_equals_the_hand_computation(checkpointing, tmp_path):
    run = hand_test_run(tmp_path, LTX, checkpointing, STEPS, GUIDANCE)
    adapter = run.adapter
    ours = trainer_loss(run)

    # ---- by hand
    reference = reference_copy(run)
    vae = adapter.vae
    with torch.no_grad():
        z = torch.cat([vae.encode(video).latent_dist.mode() for video in ours.batch["pixels"].split(1)])
    mean, std = vae.latents_mean.view(1, -1, 1, 1, 1), vae.latents_std.view(1, -1, 1, 1, 1)
    assert not torch.equal(mean, torch.zeros_like(mean))  # the normalisation is exercised
    x_w = (z - mean) * vae.config.scaling_factor / std
    assert x_w.shape[2:] == (2, 2, 2)  # 9 frames at 64 px: 1 + 8 / 8 latent frames of 2 x 2
    text, negative = _text(adapter, ours.batch["prompt"]), _text(adapter, [""])
    x_ref = _euler_cfg_sample(reference, text, negative, reference_seeds(run, ours), x_w.shape[1:])
    generator = noise_generator(run, ours)
    u = torch.rand(2, generator=generator)
    eps = torch.randn(x_w.shape, generator=generator)
    level = (T - ((1 - u) * T).long().clamp(max=T - 1)).double() / T  # u rounded up to the 1/T grid
    s = _shifted(level, _mu(8))
    t = (s * T).float()
    s = s.view(-1, 1, 1, 1, 1)
    errors = hand_errors(lambda model, x: _velocity(model, x, t, text), run, reference, x_w, x_ref,
                         lambda x0: ((1 - s) * x0 + s * eps, eps - x0))  # x_t and the velocity
    assert_sign_aaf_loss_matches(run, ours, errors)


def test_reference_sampler_matches_ltx_pipeline_latents():
    from diffusers import LTXPipeline

    adapter = load_adapter(load_config(None, LTX).model, configure=False)
    prompts, seeds = ["a flower blooming, time-lapse", "ice  melting on a table"], [11, 12]
    embeds, negative = adapter.encode_prompt(prompts), adapter.encode_prompt([""])
    ours = sample_latents(adapter, embeds, negative, seeds=seeds, num_frames=2, latent_size=(2, 3),
                          num_inference_steps=STEPS, guidance_scale=GUIDANCE)
    pipe = LTXPipeline.from_pretrained(ensure_tiny("ltx"))
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(prompt=prompts, height=64, width=96, num_frames=9, num_inference_steps=STEPS,
                  guidance_scale=GUIDANCE, generator=[torch.Generator().manual_seed(s) for s in seeds],
                  output_type="latent").frames
    assert theirs.shape == (2, 2 * 2 * 3, 4)  # packed: [B, F h w, C]
    torch.testing.assert_close(ours, theirs.transpose(1, 2).reshape(ours.shape), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("trainable", ["lora", "full"])
def test_export_loads_in_ltx_pipeline_with_the_trained_prediction(trainable, tmp_path):
    from diffusers import FlowMatchEulerDiscreteScheduler, LTXPipeline, LTXVideoTransformer3DModel

    run, pipe = exported_pipeline(tmp_path, LTX, trainable, LTXPipeline, LTXVideoTransformer3DModel,
                                  FlowMatchEulerDiscreteScheduler)
    assert pipe.scheduler.config.use_dynamic_shifting and pipe.scheduler.config.max_shift == TOP
    text = _text(run.adapter, ["a candle melting"])
    assert_export_predicts_like_the_policy(run, lambda x, t, embeds: _velocity(pipe.transformer, x, t, text),
                                           torch.randn(1, 4, 2, 2, 2), torch.tensor([321.5]))
    assert "shift growing with the video's latent tokens" in (tmp_path / "export" / "README.md").read_text()


def test_resume_reproduces_the_uninterrupted_trajectory(tmp_path):
    assert_resume_reproduces_a_straight_run(tmp_path, LTX)


@pytest.mark.parametrize("override,message", [
    ("data.num_frames=7", r"data.num_frames: 7 is not 1 \+ 8k, the clip lengths LTX-Video's.*use 1 or 9"),
    ("data.resolution=48", r"data.resolution: 48 is not a multiple of 32.*use 32 or 64"),
    ("model.noise_scheduler.shift=3.0", r"model.noise_scheduler.shift: .* shifts dynamically.*leave it null"),
    ("seppo.ref_eta=0.5", r"seppo.ref_eta: 0.5, but LTX-Video samples references with the deterministic"),
])
def test_model_fit_errors_name_the_key_and_the_valid_values(override, message):
    with pytest.raises(ConfigError, match=message):
        check_model_fits(load_config(None, [*LTX, override]))


def test_motion_is_refused():
    with pytest.raises(ConfigError, match="model.trainable: 'motion'.*model.kind='ltx' use 'lora' or 'full'"):
        load_config(None, [*LTX, "model.trainable=motion"])


def test_real_shape_ltx_has_the_published_architecture():
    """LTX-Video 0.9's transformer on the meta device, counted from its published widths (Lightricks/LTX-Video
    transformer/config.json: 28 blocks of 32 heads x 64 = 2048, self- and cross-attention with q / k RMS
    norms across heads, 4x feed-forward, 128 latent channels, T5-XXL captions of 4096, a 6-row modulation
    table per block), independently of seppo_video.models.published; its VAE's factors."""
    import diffusers

    from seppo_video.models import published
    from seppo_video.models.real import resolve_variant

    assert resolve_variant("ltx", None) == "0.9.0"
    with torch.device("meta"):
        transformer = diffusers.LTXVideoTransformer3DModel(**published.ltx_video_transformer())
        vae = diffusers.AutoencoderKLLTXVideo(**published.ltx_video_vae())
    dim, latent, caption, freq = 2048, 128, 4096, 256
    linear = lambda i, o: i * o + o
    attention = 4 * linear(dim, dim) + 2 * dim  # q, k, v, out and the q / k RMS norms
    block = 2 * attention + linear(dim, 4 * dim) + linear(4 * dim, dim) + 6 * dim
    embeddings = (linear(latent, dim) + 2 * dim  # patch projection, output modulation table
                  + linear(freq, dim) + linear(dim, dim) + linear(dim, 6 * dim)  # timestep MLP, modulation
                  + linear(caption, dim) + linear(dim, dim))  # caption projection
    head = linear(dim, latent)
    assert sum(p.numel() for p in transformer.parameters()) == 28 * block + embeddings + head
    assert (vae.spatial_compression_ratio, vae.temporal_compression_ratio) == (32, 8)
    assert published.ltx_video_scheduler()["use_dynamic_shifting"]
