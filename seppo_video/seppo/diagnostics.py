"""How reliable is the AAF sign? (ALGORITHM.md section 4)

The flipper decides from one ``(t, eps)`` draw whether the policy or the
reference fits a winner better. Its *precision* is how often that
single-draw sign agrees with the sign of the anchor's expectation over many
draws; 0.5 would mean the flipper is a coin toss.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from seppo_video.seppo.loss import per_sample_error
from seppo_video.seppo.noise import draw_pair_noise


def sign_agreement(anchors: torch.Tensor) -> torch.Tensor:
    """``anchors [draws, samples]`` -> per sample, the fraction of draws whose sign
    equals the sign of the mean over draws."""
    expected = torch.sign(anchors.mean(dim=0))
    return (torch.sign(anchors) == expected).float().mean(dim=0)


@torch.no_grad()
def anchor_draws(
    predict: Callable[[torch.Tensor, torch.Tensor, Callable], torch.Tensor],
    policy: Callable,
    reference: Callable,
    x_w: torch.Tensor,
    noise_scheduler,
    draws: int,
    seed: int = 0,
) -> torch.Tensor:
    """``a = e_ref(x_w) - e_theta(x_w)`` for ``draws`` independent ``(t, eps)``: ``[draws, B]``.

    ``predict(noisy, t, unet)`` returns noise predictions (the caller binds
    the prompt embeddings), so this works for any backbone.
    """
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(draws):
        t, eps = draw_pair_noise(noise_scheduler, x_w, generator)
        noisy = noise_scheduler.add_noise(x_w, eps, t)
        rows.append(per_sample_error(predict(noisy, t, reference), eps) - per_sample_error(predict(noisy, t, policy), eps))
    return torch.stack(rows)
