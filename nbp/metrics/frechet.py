"""The Fréchet distance between two Gaussians, and Gaussian statistics from running sums.

FVD = |mu_r - mu_g|^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)), computed in float64 with
`scipy.linalg.sqrtm` (Schur method), as StyleGAN-V and the NBP evaluation do. Where
that fails (a nearly rank-deficient product, as from a few clips) the trace of the root
comes from an eigendecomposition instead: the same value, without the failure.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg


def gaussian_from_sums(count: float, total: np.ndarray, outer: np.ndarray, ddof: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of features from their count, sum and sum of outer products.

    ddof=0 divides by N (StyleGAN-V), ddof=1 by N - 1 (np.cov, tfgan, MAGVIT, NBP).
    """
    if ddof not in (0, 1):
        raise ValueError(f"ddof must be 0 or 1, got {ddof}")
    if count <= ddof:
        raise ValueError(f"need more than {ddof} feature vectors for a covariance, got {count:g}")
    total = np.asarray(total, dtype=np.float64)
    outer = np.asarray(outer, dtype=np.float64)
    mean = total / count
    # sum (x - mu)(x - mu)^T = sum x x^T - N mu mu^T
    scatter = outer - count * np.outer(mean, mean)
    return mean, scatter / (count - ddof)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"incompatible statistics: means {mu1.shape} {mu2.shape}, covariances {sigma1.shape} {sigma2.shape}")
    diff = mu1 - mu2
    # The product of two PSD matrices has a real non-negative spectrum, so any
    # imaginary part of its root is round-off; keep the real part as StyleGAN-V does.
    with warnings.catch_warnings():
        # Fewer samples than feature dimensions make the product singular; its root is
        # still well defined, so do not alarm users (StyleGAN-V passes disp=False for this).
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = np.real(scipy.linalg.sqrtm(sigma1 @ sigma2))
    trace_covmean = np.trace(covmean)
    if not np.isfinite(trace_covmean):
        # The Schur method can fail outright (all NaN) on a product that is numerically of rank
        # one or two, e.g. covariances of a handful of clips. The trace is still well defined.
        trace_covmean = trace_sqrt_product(sigma1, sigma2)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_covmean)


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr (S1 S2)^(1/2) for symmetric PSD S1, S2, through the symmetric PSD matrix S1^(1/2) S2 S1^(1/2),
    which has the same eigenvalues as S1 S2; round-off below zero is clipped."""
    values, vectors = np.linalg.eigh(sigma1)
    root = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    middle = root @ sigma2 @ root
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2.0)
    return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())
