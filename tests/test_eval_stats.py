"""Bootstrap intervals, the benchmark's merge rule and paired comparisons."""

from __future__ import annotations

import numpy as np
import pytest

from seppo_video.evaluation.frechet import frechet_distance
from seppo_video.evaluation.stats import (
    bootstrap_distribution,
    merged_mean,
    paired_bootstrap_distribution,
    paired_difference,
    summarize,
)


def scores(prompts: int, seeds: int, rng: np.random.Generator, seed_sd: float = 1.0) -> np.ndarray:
    """Per-video scores: a prompt effect, a seed (set) effect and noise."""
    prompt_effect = rng.normal(size=(prompts, 1))
    seed_effect = rng.normal(scale=seed_sd, size=(1, seeds))
    return 3.0 + prompt_effect + seed_effect + rng.normal(scale=0.5, size=(prompts, seeds))


def test_merge_is_mean_over_videos_then_over_sets():
    matrix = np.array([[1.0, 10.0], [3.0, np.nan]])
    assert merged_mean(matrix) == pytest.approx((2.0 + 10.0) / 2)  # not the pooled mean 14/3


def test_summary_statistics_and_interval_contain_the_mean():
    rng = np.random.default_rng(0)
    matrix = scores(30, 3, rng)
    summary = summarize(matrix, confidence=0.95, n_boot=500, seed=0)
    assert summary.ci_low < summary.mean < summary.ci_high
    assert summary.mean == pytest.approx(matrix.mean())
    assert summary.median == pytest.approx(np.median(matrix))
    assert summary.std == pytest.approx(matrix.std(ddof=1))
    assert summary.n_prompts == 30 and summary.n_sets == 3 and summary.n_videos == 90
    np.testing.assert_allclose(summary.per_set, matrix.mean(axis=0))


def test_interval_is_reproducible_and_narrows_with_more_seeds():
    rng = np.random.default_rng(1)
    widths = {2: [], 10: []}
    for _ in range(5):
        full = scores(20, 10, rng)
        for seeds, found in widths.items():
            summary = summarize(full[:, :seeds], n_boot=400, seed=0)
            found.append(summary.ci_high - summary.ci_low)
    assert np.mean(widths[10]) < np.mean(widths[2])
    matrix = scores(10, 3, rng)
    assert summarize(matrix, n_boot=200, seed=7) == summarize(matrix, n_boot=200, seed=7)


def test_paired_difference_removes_shared_prompt_variation():
    rng = np.random.default_rng(2)
    base = scores(40, 3, rng)
    better = base + 0.2 + rng.normal(scale=0.05, size=base.shape)
    diff = paired_difference(better, base, n_boot=500, seed=0)
    assert diff.mean == pytest.approx((better - base).mean())
    assert diff.ci_low > 0  # a consistent +0.2 is detected ...
    separate = summarize(better, n_boot=500, seed=0)
    assert diff.ci_high - diff.ci_low < (separate.ci_high - separate.ci_low) / 5  # ... far more tightly
    self_diff = paired_difference(base, base, n_boot=100, seed=0)
    assert self_diff.mean == 0.0 and self_diff.ci_low == 0.0 and self_diff.ci_high == 0.0


def test_distribution_bootstrap_brackets_the_estimate():
    rng = np.random.default_rng(3)
    reference = [rng.normal(size=(1, 3)) for _ in range(30)]
    sets = [[rng.normal(loc=0.5, size=(1, 3)) for _ in range(30)] for _ in range(2)]

    def estimator(resampled):
        ref = np.concatenate(reference)
        return float(np.mean([frechet_distance(np.concatenate(videos), ref) for videos in resampled]))

    point = estimator(sets)
    low, high, samples = bootstrap_distribution(estimator, sets, n_boot=60, seed=0, confidence=0.95)
    assert len(samples) == 60 and low < point < high
    low, high, samples = paired_bootstrap_distribution(estimator, sets, sets, n_boot=20, seed=0, confidence=0.95)
    assert low == high == 0.0
