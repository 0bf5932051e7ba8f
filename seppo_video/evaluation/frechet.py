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
