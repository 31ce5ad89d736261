"""Robust similarity fits of model coordinates to GPS positions (Umeyama with Huber weights)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HUBER_K = 2.0  # residuals beyond K robust sigmas get weight K sigma / r
MIN_SIGMA_M = 0.05  # never trust positions below 5 cm: keeps the weights finite on exact data


@dataclass(frozen=True)
class Similarity2d:
    """dst ~ scale * rotation @ src + translation, in the horizontal plane."""

    scale: float
    rotation: np.ndarray  # (2, 2)
    translation: np.ndarray  # (2,)
    weights: np.ndarray  # (N,) final Huber weights, 1 = inlier

    def apply(self, xy: np.ndarray) -> np.ndarray:
        return self.scale * xy @ self.rotation.T + self.translation


def umeyama(src: np.ndarray, dst: np.ndarray, weights: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Weighted least-squares similarity dst ~ s R src + t (Umeyama 1991), any dimension, no reflection."""
    w = weights / weights.sum()
    mu_s, mu_d = w @ src, w @ dst
    a, b = src - mu_s, dst - mu_d
    cov = (b * w[:, None]).T @ a
    u, d, vt = np.linalg.svd(cov)
    sign = np.ones(len(d))
    sign[-1] = np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0
    rotation = u @ np.diag(sign) @ vt
    var = float(w @ np.sum(a**2, axis=1))
    scale = float((d * sign).sum() / var) if var > 0 else 1.0
    return scale, rotation, mu_d - scale * rotation @ mu_s


def robust_similarity_2d(src_xy: np.ndarray, dst_xy: np.ndarray, iterations: int = 20) -> Similarity2d:
    """Similarity from src (N x 2, N >= 2) to dst, iteratively reweighted so outliers (a GPS jump) and
    drift weigh less than they would in least squares. Raises ValueError for fewer than 2 distinct points."""
    if len(src_xy) < 2 or np.ptp(src_xy, axis=0).max() <= 0:
        raise ValueError("a similarity needs at least two distinct positions")
    weights = np.ones(len(src_xy))
    for _ in range(iterations):
        scale, rotation, translation = umeyama(src_xy, dst_xy, weights)
        residuals = np.linalg.norm(scale * src_xy @ rotation.T + translation - dst_xy, axis=1)
        sigma = max(1.4826 * float(np.median(residuals)), MIN_SIGMA_M)
        new = np.minimum(1.0, HUBER_K * sigma / np.maximum(residuals, 1e-12))
        if np.allclose(new, weights, atol=1e-4):
            break
        weights = new
    return Similarity2d(scale, rotation, translation, weights)


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The weighted median of values (N,) with non-negative weights (N,)."""
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, 0.5 * cum[-1])])
