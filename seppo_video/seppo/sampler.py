"""Reference samples ``x_ref`` in latent space: DDIM with batched classifier-free guidance.

The sample never leaves latent space (no VAE decode / encode round trip).
Each sample has its own generator, so its latents depend on its seed alone,
not on which other prompts share the batch. Conditional and unconditional
rows go through the UNet in one forward, in the order the diffusers
pipelines use ([uncond, cond]), so results match them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from diffusers import DDIMScheduler
from diffusers.utils.torch_utils import randn_tensor

from seppo_video.models.adapters import VideoDiffusionAdapter


@torch.no_grad()
def sample_latents(
    adapter: VideoDiffusionAdapter,
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
    the adapter's policy UNet by default.
    """
    batch = prompt_embeds.shape[0]
    if len(seeds) != batch:
        raise ValueError(f"need one seed per sample: {len(seeds)} seeds for {batch} prompts")
    device = prompt_embeds.device
    scheduler = DDIMScheduler.from_config(adapter.scheduler_config)
    scheduler.set_timesteps(num_inference_steps, device=device)
    generators = [torch.Generator(device="cpu").manual_seed(int(seed)) for seed in seeds]
    shape = (batch, adapter.latent_channels, num_frames, *latent_size)
    latents = randn_tensor(shape, generator=generators, device=device, dtype=prompt_embeds.dtype)
    latents = latents * scheduler.init_noise_sigma
    embeds = torch.cat([negative_embeds.expand(batch, -1, -1), prompt_embeds])
    use_cfg = guidance_scale > 1.0
    for t in scheduler.timesteps:
        model_input = torch.cat([latents, latents]) if use_cfg else latents
        model_input = scheduler.scale_model_input(model_input, t)
        noise = adapter.predict_noise(
            model_input, t.expand(model_input.shape[0]), embeds if use_cfg else prompt_embeds, unet=unet
        )
        if use_cfg:
            uncond, cond = noise.chunk(2)
            noise = uncond + guidance_scale * (cond - uncond)
        latents = scheduler.step(noise, t, latents, eta=eta, generator=generators).prev_sample
    return latents
