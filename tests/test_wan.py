"""The Wan 2.1 backbone: flow-matching SePPO by hand, reference sampling against WanPipeline,
exports loaded by WanPipeline itself, resumption, and the frame / resolution checks.

The by-hand loss is independent of the trainer's code: the reference is a deep copy of the
policy with the snapshot loaded, the reference sample comes from a flow-matching Euler + CFG
loop written here from the scheduler's formulas, x_t = (1 - s) x0 + s eps and the velocity
target are spelled out, and the transformer is called directly. Only the random draws are
shared: u, eps and the per-sample seeds come from the trainer's keyed generators.
"""

from __future__ import annotations

import itertools
import json

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

from seppo_video.config import ConfigError, load_config
from seppo_video.models.adapters import check_model_fits, load_adapter
from seppo_video.seppo.sampler import sample_latents

WAN = ["model.kind=wan", "model.trainable=lora", "data.num_frames=5", "data.resolution=32", "data.batch_size=2",
       "train.log_with=none", "train.policy_dropout=false"]
STEPS, GUIDANCE, T = 3, 3.0, 1000


def _shift(v: torch.Tensor, k: float) -> torch.Tensor:
    return k * v / (1 + (k - 1) * v)


def _velocity(transformer, x, t, embeds):
    return transformer(hidden_states=x, timestep=t, encoder_hidden_states=embeds).sample


def _euler_cfg_sample(transformer, k, embeds, negative, seeds, shape) -> torch.Tensor:
    """FlowMatchEulerDiscreteScheduler.set_timesteps(STEPS) + step, written out: the unshifted
    levels run linearly from 1 to the training table's last (already shifted) sigma, are shifted,
    and end at 0; each step moves x by (s_next - s) * v."""
    last = _shift(torch.tensor(1 / T, dtype=torch.float64), k)
    sigmas = torch.cat([_shift(torch.linspace(1, float(last), STEPS, dtype=torch.float64), k), torch.zeros(1)])
    x = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds]).double()
    for s, s_next in itertools.pairwise(sigmas):
        t = torch.full((len(seeds),), float(s * T))
        with torch.no_grad():
            uncond = _velocity(transformer, x.float(), t, negative.expand_as(embeds)).double()
            cond = _velocity(transformer, x.float(), t, embeds).double()
        x = x + (s_next - s) * (uncond + GUIDANCE * (cond - uncond))
    return x.float()


@pytest.mark.parametrize("sampling,checkpointing", [("uniform", False), ("logit_normal", False), ("uniform", True)])
def test_flow_matching_seppo_loss_equals_the_hand_computation(sampling, checkpointing, tmp_path):
    density = [f"model.noise_scheduler.timestep_sampling={sampling}",
               "model.noise_scheduler.logit_mean=0.5"]  # off-centre, so the direction of u matters
    run = hand_test_run(tmp_path, [*WAN, *density], checkpointing, STEPS, GUIDANCE)
    adapter = run.adapter
    k = adapter.scheduler_config["shift"]
    assert k != 1  # the shift is exercised
    ours = trainer_loss(run)

    # ---- by hand
    reference = reference_copy(run)
    x_w, embeds, negative = encoded_batch(run, ours)
    x_ref = _euler_cfg_sample(reference, k, embeds, negative, reference_seeds(run, ours), x_w.shape[1:])
    generator = noise_generator(run, ours)
    if sampling == "uniform":
        u = torch.rand(2, generator=generator)
    else:
        u = torch.sigmoid(torch.normal(0.5, 1.0, (2,), generator=generator))
    eps = torch.randn(x_w.shape, generator=generator)
    index = ((1 - u) * T).long().clamp(max=T - 1)
    # The table entry whose unshifted level is u rounded up, in float32 as the scheduler builds its table.
    t = _shift((T - index).float() / T, k) * T
    s = (t.double() / T).view(-1, 1, 1, 1, 1)
    errors = hand_errors(lambda model, x: _velocity(model, x, t, embeds), run, reference, x_w, x_ref,
                         lambda x0: ((1 - s) * x0 + s * eps, eps - x0))  # x_t and the velocity
    assert_sign_aaf_loss_matches(run, ours, errors)


def test_reference_sampler_matches_wan_pipeline_latents():
    from diffusers import WanPipeline

    from seppo_video.models.tiny import ensure_tiny

    adapter = load_adapter(load_config(None, WAN).model, configure=False)
    prompts, seeds = ["a flower blooming, time-lapse", "ice  melting on a table"], [11, 12]
    embeds, negative = adapter.encode_prompt(prompts), adapter.encode_prompt([""])
    ours = sample_latents(adapter, embeds, negative, seeds=seeds, num_frames=2, latent_size=(8, 8),
                          num_inference_steps=4, guidance_scale=5.0)
    pipe = WanPipeline.from_pretrained(ensure_tiny("wan"))
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(prompt=prompts, height=32, width=32, num_frames=5, num_inference_steps=4, guidance_scale=5.0,
                  generator=[torch.Generator().manual_seed(s) for s in seeds], output_type="latent").frames
    assert theirs.shape == ours.shape == (2, 4, 2, 8, 8)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("trainable", ["lora", "full"])
def test_export_loads_in_wan_pipeline_with_the_trained_prediction(trainable, tmp_path):
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel

    run, pipe = exported_pipeline(tmp_path, WAN, trainable, WanPipeline, WanTransformer3DModel,
                                  FlowMatchEulerDiscreteScheduler)
    assert pipe.scheduler.config.shift == run.adapter.scheduler_config["shift"]
    assert_export_predicts_like_the_policy(
        run, lambda x, t, embeds: pipe.transformer(hidden_states=x, timestep=t, encoder_hidden_states=embeds).sample,
        torch.randn(1, 4, 2, 8, 8), torch.tensor([321.5]))
    assert "flow matching" in (tmp_path / "export" / "README.md").read_text()


def test_resume_reproduces_the_uninterrupted_trajectory(tmp_path):
    assert_resume_reproduces_a_straight_run(tmp_path, WAN)


@pytest.mark.parametrize("override,message", [
    ("data.num_frames=7", r"data.num_frames: 7 is not 1 \+ 4k.*use 5 or 9"),
    ("data.resolution=36", r"data.resolution: 36 is not a multiple of 8.*use 32 or 40"),
    ("model.noise_scheduler.beta_schedule=linear",
     r"model.noise_scheduler.beta_schedule: .* flow-matching FlowMatchEulerDiscreteScheduler.*allowed here: shift"),
    ("seppo.ref_eta=0.5", r"seppo.ref_eta: 0.5.*deterministic"),
])
def test_model_fit_errors_name_the_key_and_the_valid_values(override, message):
    with pytest.raises(ConfigError, match=message):
        check_model_fits(load_config(None, [*WAN, override]))


def test_flow_settings_are_refused_on_a_ddpm_backbone_and_motion_on_wan():
    with pytest.raises(ConfigError, match=r"model.noise_scheduler.shift: .* DDPM-style.*allowed here: beta_schedule"):
        check_model_fits(load_config(None, ["model.kind=sd", "model.trainable=lora", "data.num_frames=1",
                                            "model.noise_scheduler.shift=2.0"]))
    with pytest.raises(ConfigError, match="model.trainable: 'motion'.*'lora' or 'full'"):
        load_config(None, [*WAN, "model.trainable=motion"])


def test_shift_override_reaches_training_and_sampling():
    config = load_config(None, [*WAN, "model.noise_scheduler.shift=5.0"])
    check_model_fits(config)
    adapter = load_adapter(config.model, configure=False)
    assert adapter.scheduler_config["shift"] == 5.0
    assert adapter.sampling_scheduler().config.shift == 5.0
    assert "timestep_sampling" not in adapter.scheduler_config  # a training setting, not the scheduler's


def test_real_shape_wan_has_the_published_architecture():
    """The published Wan 2.1 T2V 1.3B components, built on the meta device (no memory, no weights).

    Expected figures are derived here from the published widths (Wan-AI/Wan2.1-T2V-1.3B-Diffusers
    transformer/config.json: dim 1536 = 12 x 128, ffn 8960, 30 blocks, text 4096, freq 256, 16
    latent channels, patch 1x2x2), independently of seppo_video.models.published."""
    import diffusers
    from transformers import UMT5Config, UMT5EncoderModel

    from seppo_video.config import is_flow_matching
    from seppo_video.models import published
    from seppo_video.models.real import resolve_variant

    assert resolve_variant("wan", None) == "t2v-1.3b"
    with torch.device("meta"):
        transformer = diffusers.WanTransformer3DModel(**published.wan21_t2v_1_3b_transformer())
        vae = diffusers.AutoencoderKLWan(**published.wan21_vae())
        encoder = UMT5EncoderModel(UMT5Config(**published.umt5_xxl_encoder()))
    dim, ffn, blocks, text, freq, patch_out = 1536, 8960, 30, 4096, 256, 16 * 4
    linear = lambda i, o: i * o + o
    block = (8 * linear(dim, dim)  # self- and cross-attention q, k, v, out
             + 4 * dim  # q / k RMS norms of both attentions
             + 2 * dim  # the cross-attention LayerNorm (cross_attn_norm)
             + linear(dim, ffn) + linear(ffn, dim) + 6 * dim)  # feed-forward, modulation table
    embeddings = (16 * 4 * dim + dim  # patch embedding (1x2x2 conv)
                  + linear(text, dim) + linear(dim, dim)  # text projection
                  + linear(freq, dim) + linear(dim, dim) + linear(dim, 6 * dim))  # timestep MLP and projection
    head = linear(dim, patch_out) + 2 * dim
    assert sum(p.numel() for p in transformer.parameters()) == blocks * block + embeddings + head
    # The Wan report's "Wan-VAE ... 127M parameters"; UMT5-XXL's encoder: 24 layers of d_model 4096.
    assert round(sum(p.numel() for p in vae.parameters()) / 1e6) == 127
    assert encoder.config.d_model == 4096 and encoder.config.num_layers == 24 and encoder.config.vocab_size == 256384
    scheduler = published.wan21_scheduler()
    assert is_flow_matching(scheduler) and scheduler["_class_name"] == "UniPCMultistepScheduler"


def test_a_unipc_flow_folder_trains_and_samples_as_flow_matching_euler(tmp_path):
    """The published Wan 2.1 folders ship UniPC in flow mode: read as Euler at its flow_shift."""
    import shutil

    from seppo_video.models import published
    from seppo_video.models.tiny import ensure_tiny
    from seppo_video.seppo.noise import FlowMatchingNoise, noise_process

    root = tmp_path / "wan-unipc"
    shutil.copytree(ensure_tiny("wan"), root)
    unipc = {**published.wan21_scheduler(), "flow_shift": 5.0}
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps(unipc))
    config = load_config(None, [*WAN, f"model.pretrained={root}"])
    check_model_fits(config)
    adapter = load_adapter(config.model, configure=False)
    assert adapter.scheduler_config["_class_name"] == "FlowMatchEulerDiscreteScheduler"
    assert adapter.scheduler_config["shift"] == 5.0
    assert isinstance(noise_process(adapter.scheduler_config), FlowMatchingNoise)


def test_a_scheduler_of_the_other_kind_is_refused():
    from seppo_video.models.tiny import ensure_tiny

    with pytest.raises(ConfigError, match=r"model.pretrained: .* flow-matching FlowMatchEulerDiscreteScheduler.*'sd'"):
        check_model_fits(load_config(None, ["model.kind=sd", "model.trainable=lora", "data.num_frames=1",
                                            f"model.pretrained={ensure_tiny('wan')}"]))
