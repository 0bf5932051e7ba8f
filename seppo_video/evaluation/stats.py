"""Point estimates and bootstrap confidence intervals over prompts and seeds.

Per-video scores form a matrix ``[prompts, sets]`` (``NaN`` where a video is
missing). The benchmark's merge is the mean over videos within each set,
then over sets; the same estimator is used on every bootstrap resample.

The bootstrap is *crossed*: each resample draws prompts with replacement
and, independently, sets (seeds) with replacement, because both are random
factors: an interval from prompts alone would ignore seed-to-seed variation,
and with one set the interval reflects prompts only (reported as such via
``n_sets``). Resamples use a seeded generator, so reports are reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class Summary:
    """One metric of one run (or one paired difference)."""

    mean: float  # the benchmark merge: mean over videos per set, then over sets
    std: float  # of the per-video values (pooled over sets)
    median: float  # of the per-video values (robust for reciprocal scores such as CHScore)
    ci_low: float
    ci_high: float
    confidence: float
    n_prompts: int
    n_sets: int
    n_videos: int
    per_set: list[float]  # the set means
    set_std: float  # between set means (seed-to-seed spread)

    def to_dict(self) -> dict[str, float | int | list[float]]:
        return asdict(self)


def merged_mean(matrix: np.ndarray) -> float:
    """Mean over videos within each set (column), then over sets with any video."""
    with np.errstate(all="ignore"):
        set_means = _column_means(matrix)
    set_means = set_means[~np.isnan(set_means)]
    return float(set_means.mean()) if set_means.size else float("nan")


def _column_means(matrix: np.ndarray) -> np.ndarray:
    counts = (~np.isnan(matrix)).sum(axis=0)
    sums = np.nansum(matrix, axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def crossed_resamples(n_rows: int, n_cols: int, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row (prompt) and column (set) indices of ``n_boot`` crossed bootstrap resamples."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_rows, size=(n_boot, n_rows)), rng.integers(0, n_cols, size=(n_boot, n_cols))


def bootstrap_means(matrix: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """The merged mean of ``n_boot`` crossed resamples of ``matrix [prompts, sets]``."""
    rows, cols = crossed_resamples(*matrix.shape, n_boot, seed)
    return np.array([merged_mean(matrix[r][:, c]) for r, c in zip(rows, cols)])


def percentile_interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` percentile interval of bootstrap ``samples`` (NaNs ignored)."""
    samples = samples[~np.isnan(samples)]
    if samples.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(samples, [tail, 100.0 - tail])
    return float(low), float(high)


def summarize(matrix: np.ndarray, confidence: float = 0.95, n_boot: int = 1000, seed: int = 0) -> Summary:
    """Mean, spread and a crossed-bootstrap interval of per-video values ``[prompts, sets]``."""
    matrix = np.asarray(matrix, dtype=np.float64)
    values = matrix[~np.isnan(matrix)]
    if values.size == 0:
        raise ValueError("no values to summarise")
    low, high = percentile_interval(bootstrap_means(matrix, n_boot, seed), confidence)
    set_means = _column_means(matrix)
    kept_sets = set_means[~np.isnan(set_means)]
    return Summary(
        mean=merged_mean(matrix),
        std=float(values.std(ddof=1)) if values.size > 1 else 0.0,
        median=float(np.median(values)),
        ci_low=low,
        ci_high=high,
        confidence=confidence,
        n_prompts=int((~np.isnan(matrix)).any(axis=1).sum()),
        n_sets=int(kept_sets.size),
        n_videos=int(values.size),
        per_set=[float(x) for x in set_means],
        set_std=float(kept_sets.std(ddof=1)) if kept_sets.size > 1 else 0.0,
    )


def paired_difference(a: np.ndarray, b: np.ndarray, confidence: float = 0.95, n_boot: int = 1000, seed: int = 0) -> Summary:
    """``a - b`` on the (prompt, set) cells both runs have, with a crossed-bootstrap interval.

    Pairing removes the prompt-to-prompt variation both runs share, so the
    interval of the difference is much narrower than the two separate ones.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired runs need the same [prompts, sets] layout, got {a.shape} and {b.shape}")
    diff = a - b  # NaN wherever either is missing
    return summarize(diff, confidence, n_boot, seed)


# ---------------------------------------------------------------- distribution metrics

# One video's features [k, D] per entry; a set is a list over prompts (None where missing).
FeatureSet = Sequence[np.ndarray | None]
Estimator = Callable[[list[list[np.ndarray]]], float]


def estimate(estimator: Estimator, sets: Sequence[FeatureSet]) -> float:
    """Apply a set-level estimator to the videos present in each set."""
    return estimator([[v for v in videos if v is not None] for videos in sets])


def bootstrap_distribution(
    estimator: Estimator, sets: Sequence[FeatureSet], n_boot: int, seed: int, confidence: float
) -> tuple[float, float, np.ndarray]:
    """Crossed bootstrap of a distance computed from features (FID, FVD, UMT-FVD).

    Each resample draws prompts and sets with replacement (the same scheme
    as :func:`bootstrap_means`) and recomputes the distance against the
    fixed reference inside ``estimator``.
    """
    rows, cols = crossed_resamples(len(sets[0]), len(sets), n_boot, seed)
    samples = np.array([estimate(estimator, [[sets[c][r] for r in rr] for c in cc]) for rr, cc in zip(rows, cols)])
    low, high = percentile_interval(samples, confidence)
    return low, high, samples


def paired_bootstrap_distribution(
    estimator: Estimator, sets_a: Sequence[FeatureSet], sets_b: Sequence[FeatureSet], n_boot: int, seed: int,
    confidence: float,
) -> tuple[float, float, np.ndarray]:
    """Crossed bootstrap of ``estimate(a) - estimate(b)``, both runs resampled with the same indices.

    ``sets_a`` and ``sets_b`` must be aligned: the same prompts (rows) and
    sets (seeds) in the same order.
    """
    if len(sets_a) != len(sets_b) or len(sets_a[0]) != len(sets_b[0]):
        raise ValueError("paired runs need the same prompts and sets")
    rows, cols = crossed_resamples(len(sets_a[0]), len(sets_a), n_boot, seed)
    samples = np.array([
        estimate(estimator, [[sets_a[c][r] for r in rr] for c in cc])
        - estimate(estimator, [[sets_b[c][r] for r in rr] for c in cc])
        for rr, cc in zip(rows, cols)
    ])
    low, high = percentile_interval(samples, confidence)
    return low, high, samples
