"""The collapse alarm (ALGORITHM.md section 8): saturated pairs while the winner gets worse.

A preference loss can reach accuracy 1 and loss 0 by making the policy much worse on the
second sample of each pair while it also gets worse on the winner. Two step statistics show
it together (both cycle means, see ``PreferenceStats``):

- ``saturated``: the share of pairs whose log-sigmoid has no gradient left;
- ``d_w_rel``: the policy's error on the winners minus the reference's, in units of the latter.

The alarm fires when, over the last ``COLLAPSE_WINDOW`` optimizer steps, the mean saturated
share is at least ``COLLAPSE_SATURATED`` *and* ``d_w_rel > 0`` at every one of those steps.
Saturation alone is not collapse: a policy that fits the winners better (``d_w < 0``) than
the reference also saturates when beta is large, and that is learning, not collapse.
"""

from __future__ import annotations

from dataclasses import dataclass

COLLAPSE_WINDOW = 5  # optimizer steps: short enough to warn early, long enough that one noisy step cannot fire it
COLLAPSE_SATURATED = 0.5  # "dominate": at least half of the pairs, on average over the window
WATCHED = ("saturated", "d_w_rel", "d_ref_rel")


@dataclass(frozen=True)
class CollapseAlarm:
    step: int
    saturated: float  # means over the window
    d_w_rel: float
    d_ref_rel: float

    def as_dict(self) -> dict[str, float]:
        return {"step": self.step, "saturated": self.saturated, "d_w_rel": self.d_w_rel, "d_ref_rel": self.d_ref_rel}

    def message(self, beta: float, num_train_timesteps: int, sft_weight: float, learning_rate: float) -> str:
        return (
            f"collapse alarm at step {self.step}: over the last {COLLAPSE_WINDOW} steps {self.saturated:.0%} of the "
            f"pairs were saturated (log-sigmoid gradient < 1e-3) while the policy's error on the winners stayed above "
            f"the reference's (d_w {self.d_w_rel:+.2%} of the reference's error; second sample {self.d_ref_rel:+.2%}): "
            f"the loss is being won by making the second sample worse. Lower seppo.beta (now {beta:g}, "
            f"beta*T = {beta * num_train_timesteps:g}; `seppo-video calibrate-beta` measures a scale), add "
            f"seppo.sft_weight (now {sft_weight:g}; e.g. 1.0), or lower train.learning_rate (now {learning_rate:g}). "
            "See docs/training_health.md."
        )


def collapse_alarm(step: int, window: list[dict[str, float]]) -> CollapseAlarm | None:
    """The alarm for the statistics of the last ``COLLAPSE_WINDOW`` steps (oldest first), or None.

    A step with non-finite statistics (a skipped step) never counts towards collapse:
    NaN compares false.
    """
    if len(window) < COLLAPSE_WINDOW:
        return None
    recent = window[-COLLAPSE_WINDOW:]
    means = {key: sum(record[key] for record in recent) / COLLAPSE_WINDOW for key in WATCHED}
    winner_worse = all(record["d_w_rel"] > 0 for record in recent)
    if not (means["saturated"] >= COLLAPSE_SATURATED and winner_worse):
        return None
    return CollapseAlarm(step, means["saturated"], means["d_w_rel"], means["d_ref_rel"])
