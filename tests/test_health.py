"""The collapse alarm's rule (seppo_video.seppo.health) on hand-made step statistics."""

from __future__ import annotations

import pytest

from seppo_video.seppo.health import COLLAPSE_SATURATED, COLLAPSE_WINDOW, collapse_alarm


def _steps(saturated: list[float], d_w_rel: list[float]) -> list[dict[str, float]]:
    return [{"saturated": s, "d_w_rel": d, "d_ref_rel": 4 * d} for s, d in zip(saturated, d_w_rel, strict=True)]


def test_fires_when_saturated_pairs_dominate_and_the_winner_got_worse_at_every_step():
    window = _steps([1.0] * COLLAPSE_WINDOW, [0.01] * COLLAPSE_WINDOW)
    alarm = collapse_alarm(12, window)
    assert alarm is not None and alarm.step == 12
    assert alarm.saturated == pytest.approx(1.0) and alarm.d_w_rel == pytest.approx(0.01)
    assert alarm.d_ref_rel == pytest.approx(0.04)
    assert "step 12" in alarm.message(2.5, 1000, 0.0, 1e-4) and "seppo.sft_weight" in alarm.message(2.5, 1000, 0.0, 1e-4)


def test_saturation_alone_is_learning_not_collapse():
    # The policy fits the winners better than the reference (d_w < 0): saturated, but no alarm.
    assert collapse_alarm(9, _steps([1.0] * COLLAPSE_WINDOW, [-0.01] * COLLAPSE_WINDOW)) is None


def test_one_step_where_the_winner_improved_keeps_it_quiet():
    d_w = [0.01] * COLLAPSE_WINDOW
    d_w[2] = -0.001
    assert collapse_alarm(9, _steps([1.0] * COLLAPSE_WINDOW, d_w)) is None


def test_needs_a_full_window_and_a_dominant_saturated_share():
    assert collapse_alarm(3, _steps([1.0] * (COLLAPSE_WINDOW - 1), [0.01] * (COLLAPSE_WINDOW - 1))) is None
    below = COLLAPSE_SATURATED - 0.01
    assert collapse_alarm(9, _steps([below] * COLLAPSE_WINDOW, [0.01] * COLLAPSE_WINDOW)) is None
    at = collapse_alarm(9, _steps([COLLAPSE_SATURATED] * COLLAPSE_WINDOW, [0.01] * COLLAPSE_WINDOW))
    assert at is not None


def test_a_skipped_step_with_nan_statistics_does_not_count():
    d_w = [0.01] * COLLAPSE_WINDOW
    d_w[-1] = float("nan")
    assert collapse_alarm(9, _steps([1.0] * COLLAPSE_WINDOW, d_w)) is None
