"""``seppo-video calibrate-beta``: what it measures, and that the measurement does what the docs say."""

from __future__ import annotations

import statistics

import pytest

from seppo_video.calibrate import calibrate_beta
from seppo_video.cli import main
from seppo_video.config import load_config
from seppo_video.seppo.loss import SATURATION_INSIDE

FAST = ["data.num_frames=4", "data.resolution=32", "data.batch_size=2", "seppo.ref_sample_steps=2",
        "train.log_with=none", "sample.prompts=[]"]


def test_the_one_step_change_is_measured_from_an_exact_theta_0_and_does_not_depend_on_beta(tmp_path):
    low = calibrate_beta(load_config(None, [*FAST, f"output_dir={tmp_path / 'a'}", "seppo.beta=2.5"]), batches=2)
    high = calibrate_beta(load_config(None, [*FAST, f"output_dir={tmp_path / 'b'}", "seppo.beta=250"]), batches=2)
    assert low.at_theta_0 == 0.0 and len(low.changes) == 4 and min(low.changes) >= 0 < max(low.changes)
    # Adam's first step is ~ lr * sign(gradient): scaling beta (and so the gradient) by 100 moves the same way.
    assert low.changes == pytest.approx(high.changes, rel=0.05, abs=1e-7)
    median = sorted(low.changes)[1:3]  # four pairs: the median is the mean of the middle two
    assert low.recommended_beta * 1000 * sum(median) / 2 == pytest.approx(1.0)
    assert low.inside_after_one_step(low.beta) == pytest.approx(2.5 * 1000 * statistics.median(low.changes))


def test_the_command_prints_the_measurement_and_the_recommendation(tmp_path, capsys):
    assert main(["calibrate-beta", "--batches", "1", "--target", "0.5", *FAST, f"output_dir={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "measured on 2 held-out pairs" in out and "recommended seppo.beta" in out
    assert f"saturated beyond {SATURATION_INSIDE:.3g}" in out and "median |inside| 0.5 after one step" in out


def test_the_command_refuses_sft_and_bad_flags(tmp_path, capsys):
    assert main(["calibrate-beta", "seppo.method=sft", f"output_dir={tmp_path}"]) == 2
    assert "seppo.method: 'sft' has no beta" in capsys.readouterr().err
    assert main(["calibrate-beta", "--batches", "0", f"output_dir={tmp_path}"]) == 2
    assert "--batches must be >= 1" in capsys.readouterr().err
