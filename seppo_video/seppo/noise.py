"""Forward-process noise and training targets: one ``(t, eps)`` per pair, shared by its two samples.

The target is what the network is trained to output at ``(x_t, t)``, read from the
scheduler's ``prediction_type``: the noise ``eps``, the velocity
``v = sqrt(alpha_bar_t) * eps - sqrt(1 - alpha_bar_t) * x0``, or ``x0`` itself. Every loss
(SePPO, Diffusion-DPO, SFT) and the AAF anchor compare the model's output with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seppo_video.config import PREDICTION_TYPES


@dataclass
class NoisedBatch:
    """Noised latents, their timesteps, and the target the model should predict for them."""

    noisy: torch.Tensor
    timesteps: torch.Tensor
    target: torch.Tensor


def draw_pair_noise(noise_scheduler, x_w: torch.Tensor, generator: torch.Generator):
    """One timestep and one noise tensor per pair (shared by the pair's two samples)."""
    batch = x_w.shape[0]
    steps = noise_scheduler.config.num_train_timesteps
    t = torch.randint(0, steps, (batch,), generator=generator).to(x_w.device)
    eps = torch.randn(x_w.shape, generator=generator).to(x_w.device, x_w.dtype)
    return t, eps


def training_target(noise_scheduler, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The scheduler's own regression target for ``q(x0, t, eps)``."""
    kind = noise_scheduler.config.prediction_type
    if kind == "epsilon":
        return eps
    if kind == "v_prediction":
        return noise_scheduler.get_velocity(x0, eps, t)
    if kind == "sample":
        return x0
    raise ValueError(f"prediction_type {kind!r} is not supported (allowed: {', '.join(PREDICTION_TYPES)})")


def noise_batch(noise_scheduler, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> NoisedBatch:
    """``q(x0, t, eps)`` and its target."""
    return NoisedBatch(noise_scheduler.add_noise(x0, eps, t), t, training_target(noise_scheduler, x0, eps, t))


def noise_winners(noise_scheduler, x_w: torch.Tensor, generator: torch.Generator) -> NoisedBatch:
    """One fresh ``(t, eps)`` per sample (SFT, and the AAF diagnostics)."""
    t, eps = draw_pair_noise(noise_scheduler, x_w, generator)
    return noise_batch(noise_scheduler, x_w, t, eps)


def noise_pairs(noise_scheduler, x_w: torch.Tensor, x_other: torch.Tensor, generator: torch.Generator) -> NoisedBatch:
    """``q(x, t, eps)`` for winners and second samples stacked ``[x_w; x_other]``.

    Both members of pair ``i`` get the same ``t_i`` and ``eps_i``: otherwise
    ``d_w - d_ref`` would mostly measure the difference between two noise draws.
    """
    t, eps = draw_pair_noise(noise_scheduler, x_w, generator)
    return noise_batch(noise_scheduler, torch.cat([x_w, x_other]), torch.cat([t, t]), torch.cat([eps, eps]))
