"""How reliable is the AAF sign? (ALGORITHM.md section 4)

The flipper decides from one ``(t, eps)`` draw whether the policy or the
reference fits a winner better. Its *precision* is how often that
single-draw sign agrees with the sign of the anchor's expectation over many
draws; 0.5 would mean the flipper is a coin toss.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from seppo_video.seppo.loss import per_sample_error
from seppo_video.seppo.noise import NoiseProcess, noise_process, noise_winners


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
    process: NoiseProcess,
    draws: int,
    seed: int = 0,
) -> torch.Tensor:
    """``a = e_ref(x_w) - e_theta(x_w)`` for ``draws`` independent ``(t, eps)``: ``[draws, B]``.

    ``predict(noisy, t, unet)`` returns the model output (noise, v or x0) (the caller binds
    the prompt embeddings), so this works for any backbone.
    """
    return pool_anchor_draws(predict, policy, [reference], x_w, process, draws, seed)[0]


@torch.no_grad()
def pool_anchor_draws(
    predict: Callable[[torch.Tensor, torch.Tensor, Callable], torch.Tensor],
    policy: Callable,
    references: Sequence[Callable],
    x_w: torch.Tensor,
    process: NoiseProcess,
    draws: int,
    seed: int = 0,
) -> torch.Tensor:
    """``anchor_draws`` against several references on the same draws: ``[K, draws, B]``.

    The policy's errors are computed once per draw and shared by every reference.
    """
    generator = torch.Generator().manual_seed(seed)
    anchors: list[list[torch.Tensor]] = [[] for _ in references]
    for _ in range(draws):
        noised = noise_winners(process, x_w, generator)
        policy_error = per_sample_error(predict(noised.noisy, noised.timesteps, policy), noised.target)
        for rows, reference in zip(anchors, references):
            rows.append(per_sample_error(predict(noised.noisy, noised.timesteps, reference), noised.target) - policy_error)
    return torch.stack([torch.stack(rows) for rows in anchors])


def pool_precision(adapter, pool, x_w: torch.Tensor, prompt_embeds: torch.Tensor, draws: int, *,
                   policy_step: int, seed: int = 0) -> list[dict[str, float]]:
    """For each earlier snapshot in ``pool``: its step, the mean anchor of the adapter's
    current policy (trained for ``policy_step`` steps) against it over winners ``x_w`` and
    draws (> 0: the policy fits them better), and the AAF precision (``sign_agreement``
    averaged over winners).

    A snapshot taken at ``policy_step`` is the policy itself: its anchors are all 0, which
    would count as perfect agreement, so it is left out."""
    from seppo_video.seppo.reference import SwappedModule

    def predict(noisy, t, unet):
        return adapter.predict(noisy, t, prompt_embeds, unet=unet)

    earlier = [(index, step) for index, step in enumerate(pool.steps) if step != policy_step]
    references = [SwappedModule(adapter.unet, pool.get(index)) for index, _ in earlier]
    process = noise_process(adapter.scheduler_config)
    anchors = pool_anchor_draws(predict, adapter.unet, references, x_w, process, draws, seed)
    return [
        {"ref_step": step, "mean_anchor": float(a.mean()), "precision": float(sign_agreement(a).mean())}
        for (_, step), a in zip(earlier, anchors)
    ]
