"""Photometric outlier removal: mvs-texturing's `gauss_clamping` (`texrecon -o gauss_clamping`, as ODM).

Per face, over the views that see it (their mean colours in YCbCr, 0-1): up to 10 times, the inliers'
mean and covariance (n - 1), then every view whose unnormalised Gaussian exp(-d^2/2) (d: Mahalanobis
distance) is below 6e-3 becomes an outlier. A face stops, keeping every view, when fewer than 4 inliers
remain or the covariance cannot be inverted; it stops, dropping its outliers, when every covariance term
is under 5e-4; after 10 rounds the outliers of the last round are dropped (here a face whose inliers
did not change in a round ends at once: every later round would repeat it). Read from
`calculate_data_costs.cpp` (`photometric_outlier_detection`); vectorised over faces here.

A consequence of the method (also texrecon's): a view inside the estimate is at most (n-1)/sqrt(n) from
the mean, so one odd view among n is only caught with n >= 13 views, or when the others agree so closely
that their covariance collapses (under 5e-4) once it is out.
"""

from __future__ import annotations

import numpy as np

GAUSS_THRESHOLD = 6e-3
MIN_COVARIANCE = 5e-4
ITERATIONS = 10
MIN_INLIERS = 4
CHUNK_FACES = 50_000  # faces per vectorised block (bounds memory: chunk x views x 3 x 3 doubles)


def gauss_clamping(face: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """(P,) bool: which (face, view) pairs are kept. face: (P,) face ids; colour: (P, 3) mean colours."""
    keep = np.ones(len(face), bool)
    if len(face) == 0:
        return keep
    order = np.argsort(face, kind="stable")
    sorted_face = face[order]
    starts = np.flatnonzero(np.r_[True, sorted_face[1:] != sorted_face[:-1]])
    counts = np.diff(np.r_[starts, len(face)])
    candidates = np.flatnonzero(counts >= MIN_INLIERS)  # fewer views: texrecon keeps them all
    for lo in range(0, len(candidates), CHUNK_FACES):
        groups = candidates[lo : lo + CHUNK_FACES]
        width = int(counts[groups].max())
        slot = np.arange(width)
        valid = slot[None, :] < counts[groups][:, None]  # (F, W)
        pair = np.where(valid, starts[groups][:, None] + slot[None, :], 0)
        dropped = _clamp_block(colour[order[pair]].astype(np.float64), valid)
        keep[order[pair[dropped & valid]]] = False
    return keep


def _clamp_block(colours: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(F, W) bool outliers to drop, for F faces' (F, W, 3) colours of which `valid` (F, W) are real."""
    inlier = valid.copy()
    active = np.ones(len(valid), bool)
    drop = np.zeros(len(valid), bool)  # faces that end by dropping their outliers
    for _ in range(ITERATIONS):
        n = inlier.sum(axis=1)
        active &= n >= MIN_INLIERS
        if not active.any():
            break
        weights = inlier[active][..., None]
        cols = colours[active]
        mean = (cols * weights).sum(axis=1) / n[active][:, None]
        centred = (cols - mean[:, None, :]) * weights
        cov = np.einsum("fwi,fwj->fij", centred, centred) / (n[active] - 1)[:, None, None]
        idx = np.flatnonzero(active)
        settled = np.abs(cov).max(axis=(1, 2)) < MIN_COVARIANCE
        drop[idx[settled]] = True
        eig = np.linalg.eigvalsh(cov)
        singular = ~settled & (eig[:, 0] <= 1e-12 * np.maximum(eig[:, 2], 1e-300))
        active[idx[settled | singular]] = False  # singular: texrecon gives up and keeps every view
        go = ~(settled | singular)
        if not go.any():
            break
        inv = np.linalg.inv(cov[go])
        diff = colours[idx[go]] - mean[go][:, None, :]
        d2 = np.einsum("fwi,fij,fwj->fw", diff, inv, diff)
        now = valid[idx[go]] & (np.exp(-0.5 * d2) >= GAUSS_THRESHOLD)
        same = (now == inlier[idx[go]]).all(axis=1)
        inlier[idx[go]] = now
        fixed = idx[go][same]  # the same inliers give the same rounds to the last: their outliers go now
        drop[fixed] = True
        active[fixed] = False
    drop |= active  # ran all rounds: the last round's outliers go
    return drop[:, None] & valid & ~inlier
