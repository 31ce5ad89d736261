"""The dense plan: every registered view at depth-map size, its depth range and its neighbour views.

Neighbours are scored from the sparse model as OpenMVS and COLMAP do: shared tie points, weighted by their
triangulation angle (too small gives poor depth, too large gives distorted matches).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pycolmap
from scipy.ndimage import maximum_filter

from odm_core.camera.view import ViewCamera
from odm_core.dense.stereo import rectify

STEREO_NEIGHBOURS = 4
FUSION_NEIGHBOURS = 8
MIN_SHARED_POINTS = 15
GOOD_ANGLE_DEG = (6.0, 30.0)
DEPTH_GRID_COLS = 10  # the local depth bound's grid: cells a tenth of the depth map's width
LOCAL_DEPTH_MARGIN = 1.15  # a depth may lie this far beyond the farthest tie point around its cell

# ODM's depth-map size ratios (opendm/utils.py get_depthmap_resolution, --pc-quality).
PC_QUALITY_RATIO: dict[str, float] = {
    "ultra": 0.5,
    "high": 0.25,
    "medium": 0.125,
    "low": 0.0675,
    "lowest": 0.03375,
}
MIN_DEPTHMAP_SIZE_PX = 320


def depthmap_size(width: int, height: int, quality: str) -> int:
    """ODM's depth-map size (longest side, px) for a photo and --pc-quality (get_depthmap_resolution)."""
    max_dim = max(width, height)
    megapixels = width * height / 1e6
    multiplier = 2.0 if megapixels < 6 else 0.5 if megapixels > 42 else 1.0
    size = max(MIN_DEPTHMAP_SIZE_PX, int(max_dim * PC_QUALITY_RATIO[quality] * multiplier))
    return min(size, max_dim)


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


def view_cameras(rec: pycolmap.Reconstruction, images: Path, quality: str) -> list[ViewCamera]:
    """Each registered image as a ViewCamera, in name order, with its depth range from its tie points."""
    views = []
    for index, image in enumerate(
        sorted((i for i in rec.images.values() if i.has_pose), key=lambda i: i.name)
    ):
        cam = rec.cameras[image.camera_id]
        size = depthmap_size(cam.width, cam.height, quality)
        scale = size / max(cam.width, cam.height)
        pose = image.cam_from_world()
        matrix = np.hstack([pose.rotation.matrix(), pose.translation[:, None]])
        depth_min, depth_max = _depth_range(rec, image, matrix)
        view = ViewCamera(
            index=index,
            name=image.name,
            photo=str(images / image.name),
            model=cam.model_name,
            params=tuple(float(p) for p in cam.params),
            width=cam.width,
            height=cam.height,
            cam_from_world=tuple(float(v) for v in matrix.ravel()),
            dm_width=max(1, round(cam.width * scale)),
            dm_height=max(1, round(cam.height * scale)),
            dm_focal_px=float(cam.mean_focal_length()) * scale,
            depth_min=depth_min,
            depth_max=depth_max,
        )
        bound = _local_depth_max(rec, image, view)
        views.append(replace(view, local_depth_max=bound, local_depth_cols=DEPTH_GRID_COLS))
    return views


def _depth_range(
    rec: pycolmap.Reconstruction, image: pycolmap.Image, matrix: np.ndarray
) -> tuple[float, float]:
    ids = [p.point3D_id for p in image.points2D if p.has_point3D()]
    if len(ids) < 10:
        raise ValueError(f"{image.name} sees only {len(ids)} tie points: too few to bound its depths")
    xyz = np.array([rec.points3D[i].xyz for i in ids])
    z = xyz @ matrix[:, :3].T[:, 2] + matrix[2, 3]
    z = z[z > 0]
    lo, hi = np.percentile(z, [1, 99])
    return float(0.75 * lo), float(1.3 * hi)


def _local_depth_max(
    rec: pycolmap.Reconstruction, image: pycolmap.Image, view: ViewCamera
) -> tuple[float, ...]:
    """ViewCamera's local bound: per grid cell, LOCAL_DEPTH_MARGIN x the farthest tie point seen in the
    cell or its 8 neighbours, capped by depth_max; depth_max where none lies that near.

    The global range lets through false matches far behind the surface (a pit under a tree whose
    crown repeats itself); tie points bound the depth where the view has them."""
    xyz = np.array([rec.points3D[p.point3D_id].xyz for p in image.points2D if p.has_point3D()])
    u, v, z = view.project(xyz)
    rows = max(1, round(DEPTH_GRID_COLS * view.dm_height / view.dm_width))
    ok = view.in_depth_map(u, v, z)
    r = (v[ok] * rows // view.dm_height).astype(int)
    c = (u[ok] * DEPTH_GRID_COLS // view.dm_width).astype(int)
    farthest = np.zeros((rows, DEPTH_GRID_COLS))
    np.maximum.at(farthest, (r, c), z[ok])
    near = maximum_filter(farthest, size=3, mode="constant", cval=0.0)
    bound = np.where(near > 0, np.minimum(near * LOCAL_DEPTH_MARGIN, view.depth_max), view.depth_max)
    return tuple(float(b) for b in bound.ravel())


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
