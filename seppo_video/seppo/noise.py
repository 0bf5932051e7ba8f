"""Forward-process noise for training pairs: one ``(t, eps)`` per pair, shared by its two samples."""

from __future__ import annotations

import torch


def draw_pair_noise(noise_scheduler, x_w: torch.Tensor, generator: torch.Generator):
    """One timestep and one noise tensor per pair (shared by the pair's two samples)."""
    batch = x_w.shape[0]
    steps = noise_scheduler.config.num_train_timesteps
    t = torch.randint(0, steps, (batch,), generator=generator).to(x_w.device)
    eps = torch.randn(x_w.shape, generator=generator).to(x_w.device, x_w.dtype)
    return t, eps


def noise_pairs(noise_scheduler, x_w: torch.Tensor, x_other: torch.Tensor, generator: torch.Generator):
    """``q(x, t, eps)`` for winners and second samples stacked ``[x_w; x_other]``.

    Both members of pair ``i`` get the same ``t_i`` and ``eps_i``: otherwise
    ``d_w - d_ref`` would mostly measure the difference between two noise draws.
    """
    t, eps = draw_pair_noise(noise_scheduler, x_w, generator)
    t2, eps2 = torch.cat([t, t]), torch.cat([eps, eps])
    return noise_scheduler.add_noise(torch.cat([x_w, x_other]), eps2, t2), t2, eps2
