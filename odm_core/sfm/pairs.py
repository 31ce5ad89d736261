"""Which photo pairs to match: all of them for small or non-geotagged sets, GPS neighbours otherwise."""

from __future__ import annotations

import numpy as np
from scipy.spatial import Delaunay, QhullError, cKDTree

# Up to this many photos every pair is matched (ODM's matchers also fall back to brute force on tiny sets).
EXHAUSTIVE_MAX_PHOTOS = 12


def gps_pairs(xy_m: np.ndarray, neighbors: int) -> set[tuple[int, int]]:
    """Index pairs (i < j) to match from photo positions (N x 2 metres).

    neighbors > 0: each photo with its N nearest photos (ODM's --matcher-neighbors).
    neighbors == 0: the edges of a Delaunay triangulation of the positions and their two-hop neighbours,
    ODM's default triangulation-based graph, which adapts to the flight pattern without a fixed count.
    """
    n = len(xy_m)
    if neighbors > 0:
        k = min(neighbors + 1, n)
        _, idx = cKDTree(xy_m).query(xy_m, k=k)
        return {(min(i, int(j)), max(i, int(j))) for i, row in enumerate(idx) for j in row if i != j}
    try:
        tri = Delaunay(xy_m)
    except QhullError:  # collinear positions (a single flight line): fall back to nearest neighbours
        return gps_pairs(xy_m, 8)
    ring1: list[set[int]] = [set() for _ in range(n)]
    for simplex in tri.simplices:
        for a in simplex:
            ring1[a].update(int(b) for b in simplex if b != a)
    pairs: set[tuple[int, int]] = set()
    for i in range(n):
        for j in ring1[i] | {k for nb in ring1[i] for k in ring1[nb]}:
            if i != j:
                pairs.add((min(i, j), max(i, j)))
    return pairs


def exhaustive_pairs(n: int) -> set[tuple[int, int]]:
    """Every pair of n photos."""
    return {(i, j) for i in range(n) for j in range(i + 1, n)}
