"""Reference samples ``x_ref`` in latent space, with batched classifier-free guidance.

The sampler is the reverse process of the backbone's forward process (``noise.NoiseProcess.sampler``):
DDIM for the DDPM-trained UNets, ``CogVideoXDDIMScheduler`` for CogVideoX, flow-matching Euler
(``FlowMatchEulerDiscreteScheduler``, the scheduler in the config, shift included) for Wan. The
starting noise is drawn in the layout the backbone's pipeline draws it (``adapter.initial_noise``).

The sample never leaves latent space (no VAE decode / encode round trip).
Each sample has its own generator, so its latents depend on its seed alone,
not on which other prompts share the batch. Conditional and unconditional
rows go through the UNet in one forward, in the order the diffusers
pipelines use ([uncond, cond]), so results match them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from torch import nn

from seppo_video.seppo.noise import noise_process
from seppo_video.seppo.reference import eval_mode


class LatentDenoiser(Protocol):
    """What sampling needs of a backbone adapter (``seppo_video.models.adapters``)."""

    unet: nn.Module
    scheduler_config: dict
    latent_channels: int

    def predict(self, latents: torch.Tensor, timesteps: torch.Tensor, prompt_embeds: torch.Tensor,
                unet: Callable[..., Any] | None = None) -> torch.Tensor: ...

    def initial_noise(self, shape: tuple[int, ...], generators: list[torch.Generator], device: torch.device,
                      dtype: torch.dtype) -> torch.Tensor: ...


@torch.no_grad()
def sample_latents(
    adapter: LatentDenoiser,
    prompt_embeds: torch.Tensor,
    negative_embeds: torch.Tensor,
    *,
    seeds: Sequence[int],
    num_frames: int,
    latent_size: tuple[int, int],
    num_inference_steps: int,
    guidance_scale: float,
    eta: float = 0.0,
    unet: Callable[..., Any] | None = None,
) -> torch.Tensor:
    """Latents ``[B, C, F, h, w]`` sampled for ``prompt_embeds [B, L, D]``.

    ``negative_embeds`` is ``[1, L, D]`` (broadcast) or ``[B, L, D]``;
    ``unet`` is the model to sample with (a reference's swapped module),
    the adapter's policy UNet by default; either runs in eval mode (no dropout).
    The scheduler's ``prediction_type`` (eps or v) is what DDIM reads the output as; a flow-matching
    config samples with Euler steps on the predicted velocity (``eta`` must then be 0, as for
    CogVideoX's deterministic DDIM).
    """
    batch = prompt_embeds.shape[0]
    if len(seeds) != batch:
        raise ValueError(f"need one seed per sample: {len(seeds)} seeds for {batch} prompts")
    device = prompt_embeds.device
    process = noise_process(adapter.scheduler_config)
    shape = (batch, adapter.latent_channels, num_frames, *latent_size)
    scheduler = process.sampler(num_inference_steps, device, shape)
    generators = [torch.Generator(device="cpu").manual_seed(int(seed)) for seed in seeds]
    step_options = process.step_options(eta, generators)
    latents = adapter.initial_noise(shape, generators, device, prompt_embeds.dtype)
    # DDIM's initial noise scale (1); flow-matching Euler starts from unscaled noise at sigma 1.
    latents = latents * getattr(scheduler, "init_noise_sigma", 1.0)
    embeds = torch.cat([negative_embeds.expand(batch, -1, -1), prompt_embeds])
    use_cfg = guidance_scale > 1.0
    with eval_mode(adapter.unet):
        for t in scheduler.timesteps:
            latents = _denoise_step(adapter, scheduler, latents, t, embeds if use_cfg else prompt_embeds,
                                    guidance_scale if use_cfg else None, step_options, unet)
    return latents


def _denoise_step(adapter: LatentDenoiser, scheduler, latents, t, embeds, guidance_scale, step_options, unet):
    """One scheduler step; with ``guidance_scale``, ``embeds`` is [uncond; cond] and both go in one forward."""
    use_cfg = guidance_scale is not None
    model_input = torch.cat([latents, latents]) if use_cfg else latents
    if hasattr(scheduler, "scale_model_input"):  # DDIM's (identity); flow-matching Euler has none
        model_input = scheduler.scale_model_input(model_input, t)
    output = adapter.predict(model_input, t.expand(model_input.shape[0]), embeds, unet=unet)
    if use_cfg:
        uncond, cond = output.chunk(2)
        output = uncond + guidance_scale * (cond - uncond)
    return scheduler.step(output, t, latents, **step_options).prev_sample
