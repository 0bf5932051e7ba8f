"""The Fréchet distance between Gaussians fitted to two feature sets (FID, FVD, UMT-FVD).

``d² = |μ₁ - μ₂|² + tr Σ₁ + tr Σ₂ - 2 tr (Σ₁ Σ₂)^{1/2}``

The trace of the matrix square root is computed from the eigenvalues of the
symmetric matrix ``Σ₁^{1/2} Σ₂ Σ₁^{1/2}``, which has the same eigenvalues as
``Σ₁ Σ₂``. Unlike a general ``sqrtm`` this never produces complex parts and
stays accurate when the covariances are singular (fewer samples than
feature dimensions, the usual case for small prompt sets).
"""

from __future__ import annotations

import numpy as np


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of ``features [N, D]`` (float64)."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors [N, D], got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False, ddof=1).reshape(features.shape[1], -1)


def frechet_distance_from_stats(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """The squared Fréchet distance of two Gaussians (clipped at 0 against rounding)."""
    eigvals, eigvecs = np.linalg.eigh(sigma1)
    root1 = (eigvecs * np.sqrt(np.clip(eigvals, 0.0, None))) @ eigvecs.T
    middle = root1 @ sigma2 @ root1
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    distance = np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt
    return float(max(distance, 0.0))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The Fréchet distance between feature sets ``a [N, D]`` and ``b [M, D]``."""
    return frechet_distance_from_stats(*gaussian_stats(a), *gaussian_stats(b))


def population_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and *population* covariance (divided by N), as the benchmark's UMT-FVD accumulates them.

    Rows are cast to float32 first and accumulated in float64 (``Σx / N``,
    ``Σxxᵀ / N - μμᵀ``), so fp16 reference features enter as the official code reads them.
    """
    x = np.asarray(features, dtype=np.float32).astype(np.float64)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"need feature vectors [N, D], got shape {x.shape}")
    mean = x.sum(axis=0) / len(x)
    return mean, x.T @ x / len(x) - np.outer(mean, mean)


def frechet_distance_sqrtm(mu_gen: np.ndarray, sigma_gen: np.ndarray, mu_real: np.ndarray, sigma_real: np.ndarray) -> float:
    """UMT-FVD's distance: the real part of the formula with ``scipy.linalg.sqrtm(Σ_gen Σ_real)``.

    The benchmark uses this general square root (not the symmetric form of
    :func:`frechet_distance_from_stats`); on the singular covariances of small
    subsets the two can differ, so UMT-FVD keeps the benchmark's.
    """
    import warnings

    import scipy.linalg

    with warnings.catch_warnings():
        # Subsets smaller than the feature width always give singular products; the benchmark silences
        # this warning too (disp=False) and uses the result as it is.
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(sigma_gen @ sigma_real)
    value = np.sum(np.square(mu_gen - mu_real)) + np.trace(sigma_gen + sigma_real - 2.0 * root)
    return float(np.real(value))
