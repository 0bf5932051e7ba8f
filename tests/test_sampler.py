"""The latent reference sampler reproduces the diffusers pipelines' own latents."""

from __future__ import annotations

import pytest
import torch

from seppo_video.config import ModelConfig
from seppo_video.export import load_pipeline
from seppo_video.models.adapters import load_adapter
from seppo_video.seppo.sampler import sample_latents

PROMPTS = ["a flower blooming, time-lapse", "ice melting on a table"]
SEEDS = [11, 12]


@pytest.mark.parametrize("kind,frames", [("animatediff", 8), ("modelscope", 8), ("sd", 1)])
def test_matches_pipeline_latents(kind, frames):
    adapter = load_adapter(ModelConfig(kind=kind, trainable="full"), configure=False)
    embeds, negative = adapter.encode_prompt(PROMPTS), adapter.encode_prompt([""])
    ours = sample_latents(adapter, embeds, negative, seeds=SEEDS, num_frames=frames, latent_size=(16, 16),
                          num_inference_steps=5, guidance_scale=7.5)
    pipe = load_pipeline(f"tiny:{kind}")
    generators = [torch.Generator().manual_seed(s) for s in SEEDS]
    extra = {"num_frames": frames} if kind != "sd" else {}
    out = pipe(prompt=PROMPTS, height=64, width=64, num_inference_steps=5, guidance_scale=7.5,
               generator=generators, output_type="latent", **extra)
    theirs = out.images.unsqueeze(2) if kind == "sd" else out.frames
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_sample_depends_on_its_seed_not_on_the_batch():
    adapter = load_adapter(ModelConfig(kind="animatediff", trainable="motion"), configure=False)
    embeds, negative = adapter.encode_prompt(PROMPTS), adapter.encode_prompt([""])
    kwargs = dict(num_frames=4, latent_size=(8, 8), num_inference_steps=3, guidance_scale=5.0, eta=0.5)
    pair = sample_latents(adapter, embeds, negative, seeds=SEEDS, **kwargs)
    alone = sample_latents(adapter, embeds[1:], negative, seeds=SEEDS[1:], **kwargs)
    torch.testing.assert_close(pair[1:], alone, rtol=1e-4, atol=1e-4)
    other_seed = sample_latents(adapter, embeds[1:], negative, seeds=[99], **kwargs)
    assert not torch.allclose(alone, other_seed)


def test_one_seed_per_sample():
    adapter = load_adapter(ModelConfig(kind="sd", trainable="full"), configure=False)
    embeds = adapter.encode_prompt(PROMPTS)
    with pytest.raises(ValueError, match="one seed per sample"):
        sample_latents(adapter, embeds, embeds[:1], seeds=[1], num_frames=1, latent_size=(8, 8),
                       num_inference_steps=2, guidance_scale=1.0)
