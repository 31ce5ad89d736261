"""Balanced k-means in metres for split-merge: compact clusters of at most ceil(N / k) * 1.2 photos.

ODM clusters photo positions with cv2.kmeans on latitude/longitude degrees (OpenSfM `create_submodels`,
KMEANS_PP_CENTERS, 20 attempts, 100 iterations) and does not balance, so a dense area gives one huge
submodel. Here: k-means++ and Lloyd's algorithm in metres from a fixed seed, then, when a cluster is too
big or empty, the size-capped assignment of least total squared distance (an optimal-transport linear
programme; its cells are power-diagram cells, hence convex and compact).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog
from scipy.spatial import cKDTree

SEED = 0  # k-means++ seeding: the same photos always give the same clusters
ATTEMPTS = 10  # k-means restarts, the lowest inertia kept (cv2.kmeans in ODM: 20)
ITERATIONS = 100  # Lloyd iterations per attempt (ODM: 100)
BALANCE_SLACK = 1.2  # a cluster holds at most floor(ceil(N / k) * 1.2) photos
CANDIDATES = 8  # clusters a photo may be assigned to when balancing: its nearest centres


def balanced_kmeans(xy_m: np.ndarray, k: int) -> np.ndarray:
    """(N,) cluster index in [0, k) of each (N, 2) position in metres; deterministic.

    Every cluster holds 1 .. floor(ceil(N / k) * 1.2) photos (k <= N). Clusters are numbered by their
    first photo in row order. Memory O(N k).
    """
    n = len(xy_m)
    if k <= 1 or n <= 1:
        return np.zeros(n, dtype=np.int64)
    if k > n:
        raise ValueError(f"{k} clusters for {n} photos")
    xy = xy_m - xy_m.mean(axis=0)  # UTM eastings are ~5e5: centre for numerical headroom
    centres = _kmeans(xy, k, np.random.default_rng(SEED))
    labels = _balance(squared_distances(xy, centres), math.floor(math.ceil(n / k) * BALANCE_SLACK))
    _, first = np.unique(labels, return_index=True)
    renumber = np.empty(k, dtype=np.int64)
    renumber[labels[np.sort(first)]] = np.arange(k)
    return renumber[labels]


def squared_distances(xy: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(N, k) squared distances between (N, 2) points and (k, 2) centres."""
    return (xy[:, 0, None] - centres[None, :, 0]) ** 2 + (xy[:, 1, None] - centres[None, :, 1]) ** 2


def _kmeans_pp(xy: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (Arthur & Vassilvitskii 2007, as cv2's KMEANS_PP_CENTERS)."""
    centres = [xy[rng.integers(len(xy))]]
    d2 = ((xy - centres[0]) ** 2).sum(axis=1)
    for _ in range(1, k):
        total = d2.sum()
        pick = rng.choice(len(xy), p=d2 / total) if total > 0 else rng.integers(len(xy))
        centres.append(xy[pick])
        d2 = np.minimum(d2, ((xy - xy[pick]) ** 2).sum(axis=1))
    return np.array(centres)


def _kmeans(xy: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """(k, 2) centres: Lloyd's algorithm from ATTEMPTS k-means++ seedings, the lowest inertia kept.
    An emptied cluster is re-seeded at the photo farthest from its centre."""
    best, best_inertia = np.empty((0, 2)), np.inf
    for _ in range(ATTEMPTS):
        centres = _kmeans_pp(xy, k, rng)
        for _ in range(ITERATIONS):
            dist, labels = cKDTree(centres).query(xy, k=1)
            counts = np.bincount(labels, minlength=k)
            sums = np.stack([np.bincount(labels, xy[:, a], minlength=k) for a in (0, 1)], axis=1)
            new = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centres)
            new[counts == 0] = xy[dist.argmax()]
            if np.allclose(new, centres, rtol=0, atol=1e-9):
                break
            centres = new
        inertia = (cKDTree(centres).query(xy, k=1)[0] ** 2).sum()
        if inertia < best_inertia:
            best, best_inertia = centres, inertia
    return best


def _balance(cost: np.ndarray, cap: int) -> np.ndarray:
    """(N,) labels, every cluster holding 1..cap photos, from (N, k) squared distances to the centres.

    The nearest centre when that already fits; else the assignment of least total squared distance
    under the sizes (a transportation LP solved by HiGHS dual simplex, whose vertex solutions are
    integral), each photo restricted to its CANDIDATES nearest centres; `_repair` settles what the LP
    leaves (an infeasible restriction, a fractional value).
    """
    labels = cost.argmin(axis=1)
    sizes = np.bincount(labels, minlength=cost.shape[1])
    if sizes.max() <= cap and sizes.min() > 0:
        return labels
    n, k = cost.shape
    m = min(k, CANDIDATES)
    near = np.argsort(cost, axis=1, kind="stable")[:, :m]
    rows, cols, var = np.repeat(np.arange(n), m), near.ravel(), np.arange(n * m)
    per_photo = sp.csr_matrix((np.ones(n * m), (rows, var)), shape=(n, n * m))
    per_cluster = sp.csr_matrix((np.ones(n * m), (cols, var)), shape=(k, n * m))
    result = linprog(
        cost[rows, cols] / max(float(cost.max()), 1e-12),
        A_ub=sp.vstack([per_cluster, -per_cluster]),
        b_ub=np.concatenate([np.full(k, cap), -np.ones(k)]),
        A_eq=per_photo,
        b_eq=np.ones(n),
        bounds=(0, 1),
        method="highs-ds",
    )
    if result.status == 0:
        labels = near[np.arange(n), result.x.reshape(n, m).argmax(axis=1)]
    return _repair(labels, cost, cap)


def _repair(labels: np.ndarray, cost: np.ndarray, cap: int) -> np.ndarray:
    """Move one photo at a time, each the cheapest move (cost increase): out of an over-full cluster
    into one with room, or into an empty cluster from one with at least 2. Ends: every move lowers the
    total excess or the number of empty clusters, and k <= N <= k * cap."""
    labels = labels.copy()
    k = cost.shape[1]
    while True:
        sizes = np.bincount(labels, minlength=k)
        delta = cost - cost[np.arange(len(labels)), labels][:, None]
        if sizes.max() > cap:
            movable = labels == int(sizes.argmax())
            targets = sizes < cap
        elif sizes.min() == 0:
            movable = sizes[labels] >= 2
            targets = sizes == 0
        else:
            return labels
        delta[~movable] = np.inf
        delta[:, ~targets] = np.inf
        p, c = np.unravel_index(int(delta.argmin()), delta.shape)
        labels[p] = c
