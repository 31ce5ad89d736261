"""The dense plan: every registered view at depth-map size, its depth range and its neighbour views.

Neighbours are scored from the sparse model as OpenMVS and COLMAP do: shared tie points, weighted by their
triangulation angle (too small gives poor depth, too large gives distorted matches).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pycolmap

from odm_core.camera.view import ViewCamera
from odm_core.dense.stereo import rectify

STEREO_NEIGHBOURS = 4
FUSION_NEIGHBOURS = 8
MIN_SHARED_POINTS = 15
GOOD_ANGLE_DEG = (6.0, 30.0)


@dataclass(frozen=True)
class ViewUnit:
    """One view's work: the view, the neighbours it uses, the depth maps it reads and the file it writes."""

    kind: str  # "depth", "geometric" or "fused"
    view: ViewCamera
    neighbours: tuple[ViewCamera, ...]
    sources: tuple[str, ...]  # own input first, then one per neighbour (depth-map paths; empty for "depth")
    out: str
    key: str
    min_views: int = 2


@dataclass(frozen=True)
class UnitResult:
    """What a unit did: reused its checkpoint or computed, how many pixels or points, time and memory."""

    kind: str
    view: str
    reused: bool
    n_valid: int
    seconds: float
    peak_rss_mb: float


def _pair_stats(rec: pycolmap.Reconstruction, by_id: dict[int, int], centres: np.ndarray) -> dict:
    """(i, j) -> (shared tie points, median triangulation angle in degrees) over view indices i < j."""
    angles: dict[tuple[int, int], list[float]] = defaultdict(list)
    for point in rec.points3D.values():
        ids = sorted({by_id[e.image_id] for e in point.track.elements if e.image_id in by_id})
        if len(ids) < 2:
            continue
        rays = point.xyz - centres[ids]
        rays /= np.linalg.norm(rays, axis=1, keepdims=True)
        cos = np.clip(rays @ rays.T, -1.0, 1.0)
        for a in range(len(ids)):
            for b in range(a + 1, len(ids)):
                angles[(ids[a], ids[b])].append(float(cos[a, b]))
    return {k: (len(v), float(np.degrees(np.arccos(np.median(v))))) for k, v in angles.items()}


def _stereo_weight(angle_deg: float) -> float:
    lo, hi = GOOD_ANGLE_DEG
    if angle_deg < lo:
        return (angle_deg / lo) ** 2
    return 1.0 if angle_deg <= hi else float(np.exp(-(((angle_deg - hi) / 10.0) ** 2)))


def neighbours(
    rec: pycolmap.Reconstruction, views: list[ViewCamera]
) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    """For each view index: its stereo partners (best first) and its fusion neighbours (symmetric)."""
    index = {v.name: v.index for v in views}
    by_id = {image.image_id: index[image.name] for image in rec.images.values() if image.name in index}
    stats = _pair_stats(rec, by_id, np.array([v.centre for v in views]))
    stereo: dict[int, list[int]] = {}
    fusion: dict[int, set[int]] = {v.index: set() for v in views}
    for v in views:
        scored = []
        for (i, j), (shared, angle) in stats.items():
            if v.index in (i, j) and shared >= MIN_SHARED_POINTS and angle > 1.0:
                scored.append((shared, angle, j if i == v.index else i))
        by_shared = sorted(scored, reverse=True)
        for _, _, other in by_shared[:FUSION_NEIGHBOURS]:
            fusion[v.index].add(other)
            fusion[other].add(v.index)
        ranked = sorted(scored, key=lambda s: -s[0] * _stereo_weight(s[1]))
        stereo[v.index] = [other for _, _, other in ranked if rectify(v, views[other]) is not None][
            :STEREO_NEIGHBOURS
        ]
    return stereo, {i: sorted(n) for i, n in fusion.items()}
