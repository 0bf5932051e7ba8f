"""SePPO's objective on per-sample errors (ALGORITHM.md section 3).

Pure functions of 1-D tensors of per-sample, frame-averaged squared errors:
no model, no scheduler. That keeps the objective testable by hand.

    d_w   = e_theta(x_w)   - e_ref(x_w)
    d_ref = e_theta(x_ref) - e_ref(x_ref)
    a     = e_ref(x_w) - e_theta(x_w)        (the anchor; no gradient)
    L     = -log sigmoid(-beta * T * (d_w - s(a) * d_ref))   per sample, then the batch mean
          + sft_weight * mean e_theta(x_w)                     (optional SFT term on the winners)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

AAF_MODES = ("sign", "indicator", "none")

# A pair is saturated when the loss has (almost) no gradient left for it. The derivative of
# log sigmoid(x) is sigmoid(-x), which falls below SATURATION_GRADIENT once the inside term
# exceeds log(1 / SATURATION_GRADIENT - 1) = ln 999 ~ 6.9. Only that side saturates: for a
# very negative inside term the loss is linear and its gradient is ~1.
SATURATION_GRADIENT = 1e-3
SATURATION_INSIDE = math.log(1 / SATURATION_GRADIENT - 1)


@dataclass
class PreferenceStats:
    """Batch means reported with every preference step (already plain floats)."""

    d_w: float
    d_ref: float
    flip_rate: float  # fraction of pairs whose reference sample was not treated as a loser (s <= 0)
    implicit_acc: float  # fraction of pairs the policy already ranks as the loss wants (inside term > 0)
    # The two terms apart, per pair in units of the reference's own error on that sample:
    # d_w / e_ref(x_w) and d_ref / e_ref(x_ref). Positive: the policy got worse than the reference there.
    d_w_rel: float
    d_ref_rel: float
    inside_abs: float  # mean |inside term|: how far along the log-sigmoid the pairs sit
    inside_std: float  # spread of the inside term over the pairs (population std; 0 for one pair)
    saturated: float  # fraction of pairs with inside > SATURATION_INSIDE (gradient below SATURATION_GRADIENT)
    err_w: float  # the policy's plain denoising error on the winners, mean e_theta(x_w)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def per_sample_error(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every axis but the batch: ``[B, C, F, H, W] -> [B]``.

    For video this is the frame-averaged error. Computed in float32 so that
    fp16/bf16 predictions do not lose the small differences DPO works on.
    """
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ")
    squared = (prediction.float() - target.float()).pow(2)
    return squared.flatten(start_dim=1).mean(dim=1)


def aaf_sign(policy_err_w: torch.Tensor, ref_err_w: torch.Tensor, aaf: str) -> torch.Tensor:
    """The Anchor-based Adaptive Flipper ``s`` per pair (never carries gradient).

    ``a > 0`` (the policy fits the winner better than the reference): the
    reference sample is a loser, ``s = +1``. ``a < 0``: the reference is the
    better model here, so its sample is another winner (``sign``: ``s = -1``)
    or ignored (``indicator``: ``s = 0``). ``none`` is plain iterative DPO.
    """
    anchor = (ref_err_w - policy_err_w).detach()
    if aaf == "sign":
        return torch.sign(anchor)
    if aaf == "indicator":
        return (anchor > 0).to(anchor.dtype)
    if aaf == "none":
        return torch.ones_like(anchor)
    raise ValueError(f"aaf must be one of {AAF_MODES}, got {aaf!r}")


def preference_loss(
    policy_err_w: torch.Tensor,
    policy_err_ref: torch.Tensor,
    ref_err_w: torch.Tensor,
    ref_err_ref: torch.Tensor,
    *,
    beta: float,
    num_train_timesteps: int,
    aaf: str,
    sft_weight: float = 0.0,
) -> tuple[torch.Tensor, PreferenceStats]:
    """SePPO / Diffusion-DPO loss (scalar) and its statistics.

    ``*_ref`` arguments are errors on the second sample of each pair: the
    reference model's own sample for SePPO, a real loser for Diffusion-DPO.
    ``beta * num_train_timesteps`` multiplies the error differences (2.5 *
    1000 = 2500 reproduces Diffusion-DPO's released SD-1.5 setting).
    Reference errors are detached: only the policy gets gradient. ``sft_weight`` adds
    that multiple of the winners' plain denoising loss (a brake on loser-dominant collapse,
    ALGORITHM.md section 8).
    """
    for name, tensor in (("policy_err_w", policy_err_w), ("policy_err_ref", policy_err_ref),
                         ("ref_err_w", ref_err_w), ("ref_err_ref", ref_err_ref)):
        if tensor.ndim != 1:
            raise ValueError(f"{name} must be a 1-D tensor of per-sample errors, got shape {tuple(tensor.shape)}")
    ref_err_w, ref_err_ref = ref_err_w.detach(), ref_err_ref.detach()
    sign = aaf_sign(policy_err_w, ref_err_w, aaf)
    d_w = policy_err_w - ref_err_w
    d_ref = policy_err_ref - ref_err_ref
    inside = -beta * num_train_timesteps * (d_w - sign * d_ref)
    # log-sigmoid per pair, *then* the batch mean (not the mean inside).
    loss = -F.logsigmoid(inside).mean()
    if sft_weight:
        loss = loss + sft_weight * sft_loss(policy_err_w)
    with torch.no_grad():
        stats = PreferenceStats(
            d_w=d_w.mean().item(),
            d_ref=d_ref.mean().item(),
            flip_rate=(sign <= 0).float().mean().item(),
            implicit_acc=(inside > 0).float().mean().item(),
            d_w_rel=_relative(d_w, ref_err_w),
            d_ref_rel=_relative(d_ref, ref_err_ref),
            inside_abs=inside.abs().mean().item(),
            inside_std=inside.std(correction=0).item(),
            saturated=(inside > SATURATION_INSIDE).float().mean().item(),
            err_w=policy_err_w.mean().item(),
        )
    return loss, stats


def _relative(difference: torch.Tensor, reference_error: torch.Tensor) -> float:
    """Batch mean of ``difference / reference_error`` per pair (a zero error would be a perfect
    reference: clamp it to the smallest normal float instead of dividing by zero)."""
    return (difference / reference_error.clamp_min(torch.finfo(reference_error.dtype).tiny)).mean().item()


def sft_loss(policy_err_w: torch.Tensor) -> torch.Tensor:
    """Plain denoising loss on the winners (SFT^w): the batch mean of per-sample errors."""
    return policy_err_w.mean()
