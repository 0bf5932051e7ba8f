"""``seppo-video calibrate-beta``: a measured scale for ``seppo.beta`` (docs/training_health.md).

At theta_0 the policy *is* the reference (the trainer keeps theta_0 exact), so
``d_w = d_ref = 0`` and the inside term ``-beta * T * (d_w - s * d_ref)`` carries no scale
at all. What decides how soon pairs saturate is how far one optimizer step moves
``d_w - s * d_ref``. That is measured here: from theta_0, one step of the configured
optimizer at the configured peak learning rate on one batch, then ``d_w - s * d_ref`` of the
moved policy against theta_0 on another batch (other clips, their own (t, eps)), back to
theta_0, and again on the following batches. The held-out pairs are also measured at
theta_0 with the same draws, which must give exactly 0. Adam's first step is about
``lr * sign(gradient)`` per weight whatever beta is, so the measurement does not depend on
the beta it starts from. The recommendation is the beta that puts the median pair at
``|inside| = target`` after that one step.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from seppo_video.checkpoint import TrainerState
from seppo_video.config import Config, ConfigError
from seppo_video.seppo.loss import SATURATION_GRADIENT, SATURATION_INSIDE, aaf_sign
from seppo_video.train import Run, compute_loss, iterate_batches, make_optimizer, pair_errors, setup

# |inside| = 1 after one step: sigmoid(-1) = 27% of the full gradient is left, and a pair that
# keeps drifting the same way takes about ln(999) ~ 7 such steps to saturate.
DEFAULT_TARGET = 1.0


@dataclass(frozen=True)
class BetaCalibration:
    """``|d_w - s * d_ref|`` per held-out pair after one optimizer step from theta_0, and what it implies."""

    changes: tuple[float, ...]  # |d_w - s * d_ref| per pair
    at_theta_0: float  # the largest |d_w - s * d_ref| of the same pairs before the step (0 when theta_0 is exact)
    ref_err_w: float  # the reference's mean error on the winners: the target's own scale (eps, v or x0)
    beta: float  # the configured seppo.beta
    num_train_timesteps: int
    learning_rate: float
    target: float

    @property
    def median(self) -> float:
        return statistics.median(self.changes)

    @property
    def recommended_beta(self) -> float:
        """The beta that puts the median pair at ``|inside| = target`` after one step."""
        return self.target / (self.num_train_timesteps * self.median)

    def inside_after_one_step(self, beta: float) -> float:
        return beta * self.num_train_timesteps * self.median

    def report(self) -> str:
        deciles = statistics.quantiles(self.changes, n=10, method="inclusive") if len(self.changes) > 1 else [self.median]
        low, high = deciles[0], deciles[-1]
        saturating = SATURATION_INSIDE / (self.num_train_timesteps * self.median)
        lines = [
            (f"measured on {len(self.changes)} held-out pairs, each after one optimizer step from theta_0 at "
             f"lr {self.learning_rate:g} (the same pairs at theta_0: max |d_w - s*d_ref| = {self.at_theta_0:.3g}):"),
            (f"  |d_w - s*d_ref|: median {self.median:.3g}, 10-90% range [{low:.3g}, {high:.3g}], "
             f"std {statistics.pstdev(self.changes):.3g}"),
            (f"  reference error on the winners: {self.ref_err_w:.3g} (median change = "
             f"{100 * self.median / self.ref_err_w:.3g}% of it)"),
            (f"  configured seppo.beta {self.beta:g} (beta*T {self.beta * self.num_train_timesteps:g}): median "
             f"|inside| {self.inside_after_one_step(self.beta):.3g} after one step "
             f"(saturated beyond {SATURATION_INSIDE:.3g}, where the gradient is below {SATURATION_GRADIENT:g})"),
            f"  a beta above {saturating:.3g} saturates the median pair in one step",
            (f"recommended seppo.beta = {self.recommended_beta:.3g} (beta*T = "
             f"{self.recommended_beta * self.num_train_timesteps:.3g}): median |inside| {self.target:g} after one step"),
        ]
        return "\n".join(lines)


def calibrate_beta(config: Config, batches: int = 4, target: float = DEFAULT_TARGET) -> BetaCalibration:
    """Measure ``|d_w - s * d_ref|`` after one step from theta_0 on ``batches`` held-out batches."""
    if config.seppo.method == "sft":
        raise ConfigError("seppo.method: 'sft' has no beta to calibrate (use seppo, dpo, spin or ditto)")
    if batches < 1 or not (math.isfinite(target) and target > 0):
        raise ValueError(f"batches must be >= 1 and target positive, got {batches} and {target}")
    run = setup(config)
    run.pool.add(0, run.adapter.trainable_state())  # the reference is theta_0, as at a run's first step
    theta_0 = {name: p.detach().clone() for name, p in run.adapter.named_trainable_parameters()}
    state, changes, before, ref_errors = TrainerState(), [], [], []
    stream = iterate_batches(run, state)
    for _ in tqdm(range(batches), desc="calibrate-beta", unit="batch"):
        held_out, key = next(stream), state.batches_seen
        state.batches_seen += 1
        before += _held_out_change(run, held_out, key)[0]
        _one_step(run, next(stream), state)
        change, ref_err = _held_out_change(run, held_out, key)  # the same draws and second samples
        changes += change
        ref_errors += ref_err
        _restore(run, theta_0)
    if statistics.median(changes) == 0:
        raise ConfigError(f"train.learning_rate: one optimizer step at {config.train.learning_rate:g} left the errors "
                          "of most held-out pairs unchanged, so there is no scale to calibrate; raise it")
    return BetaCalibration(tuple(changes), max(before), statistics.fmean(ref_errors), config.seppo.beta,
                           config.seppo.num_train_timesteps, config.train.learning_rate, target)


def _one_step(run: Run, batch: dict, state: TrainerState) -> None:
    """One step of a fresh optimizer, as the trainer's first step (clipped, at the peak learning rate)."""
    params = [p for _, p in run.adapter.named_trainable_parameters()]
    optimizer = make_optimizer(run.config, params)
    loss, _, _ = compute_loss(run, batch, state)
    state.batches_seen += 1  # the next draws are fresh
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, run.config.train.max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


@torch.no_grad()
def _held_out_change(run: Run, batch: dict, key: int) -> tuple[list[float], list[float]]:
    """``|d_w - s * d_ref|`` and ``e_ref(x_w)`` per pair of a batch the step did not see; ``key`` is the
    batch counter that keys its (t, eps) and second samples, so two calls see the same pairs."""
    errors = pair_errors(run, batch, TrainerState(batches_seen=key))
    sign = aaf_sign(errors.policy_w, errors.ref_w, run.method.aaf)
    change = (errors.policy_w - errors.ref_w) - sign * (errors.policy_ref - errors.ref_ref)
    return change.abs().tolist(), errors.ref_w.tolist()


def _restore(run: Run, weights: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, param in run.adapter.named_trainable_parameters():
            param.copy_(weights[name])
