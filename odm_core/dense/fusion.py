"""Fusion: each view's depths that other views confirm become points; every surface point is made once.

A pixel's point is projected into each neighbour; where the neighbour's depth there agrees (within
CONSISTENT_REL), that view confirms it. Points confirmed by at least min_views - 1 neighbours are kept,
averaged over the confirming views (position and colour). A pixel is left out where a pixel of a
lower-numbered neighbour lands within CLAIM_RADIUS_PX of its centre with a consistent depth (that view
emits the point), so views fuse independently (one Dask unit each); like OpenMVS's fusion, a later
view's pixels that fall between an earlier view's samples still add points, which densifies the cloud.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from odm_core.camera.view import ViewCamera
from odm_core.cloud.ply import empty_points
from odm_core.dense.depthmap import CONSISTENT_REL
from odm_core.dense.plan import ViewUnit
from odm_core.worker import load_arrays, save_arrays

CLAIM_RADIUS_PX = 0.25  # an earlier view's sample this close (L-inf, pixels) to a pixel centre absorbs it


def normals(view: ViewCamera, depth: np.ndarray) -> np.ndarray:
    """Unit surface normals from a depth map (H x W x 3, model frame), facing the camera."""
    world = view.world_points(depth)
    du = np.zeros_like(world)
    dv = np.zeros_like(world)
    du[:, 1:-1] = world[:, 2:] - world[:, :-2]
    dv[1:-1] = world[2:] - world[:-2]
    n = np.cross(du, dv)
    length = np.linalg.norm(n, axis=2, keepdims=True)
    to_camera = view.centre - world
    fallback = to_camera / np.maximum(np.linalg.norm(to_camera, axis=2, keepdims=True), 1e-9)
    valid = depth > 0
    ok = (length[..., 0] > 0) & valid
    ok[:, 1:-1] &= valid[:, 2:] & valid[:, :-2]
    ok[1:-1] &= valid[2:] & valid[:-2]
    n = np.where(ok[..., None], n / np.maximum(length, 1e-12), fallback)
    flip = np.sum(n * to_camera, axis=2) < 0
    n[flip] *= -1
    return n


def fuse_view(unit: ViewUnit) -> int:
    """Fuse one view's depth map with its neighbours'; writes its share of the dense cloud."""
    view = unit.view
    own = load_arrays(unit.sources[0])
    depth = own["depth"]
    rows, cols = np.nonzero(depth > 0)
    world = view.world_points(depth)[rows, cols]
    colour = own["image"][rows, cols].astype(np.float64)
    total_xyz, total_rgb = world.copy(), colour.copy()
    count = np.zeros(len(world), np.int32)
    claimed = np.zeros(depth.shape, bool)
    for nbr, path in zip(unit.neighbours, unit.sources[1:], strict=True):
        other = load_arrays(path)
        hit, nbr_world, nbr_rgb = _confirm(world, nbr, other["depth"], other["image"])
        total_xyz[hit] += nbr_world
        total_rgb[hit] += nbr_rgb
        count[hit] += 1
        if nbr.index < view.index:
            claimed |= _claimed(nbr, other["depth"], view, depth)
    keep = (count >= unit.min_views - 1) & ~claimed[rows, cols]
    views = count[keep] + 1
    points = empty_points(int(keep.sum()))
    xyz = total_xyz[keep] / views[:, None]
    rgb = np.clip(np.round(total_rgb[keep] / views[:, None]), 0, 255)
    normal = normals(view, depth)[rows[keep], cols[keep]]
    for i, axis in enumerate("xyz"):
        points[axis] = xyz[:, i]
        points[f"n{axis}"] = normal[:, i]
    for i, band in enumerate(("red", "green", "blue")):
        points[band] = rgb[:, i]
    points["views"] = np.minimum(views, 255)
    save_arrays(Path(unit.out), unit.key, points=points)
    return len(points)


def _confirm(
    world: np.ndarray, nbr: ViewCamera, nbr_depth: np.ndarray, nbr_image: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of points the neighbour confirms, with the neighbour's own points and colours for them."""
    u, v, z = nbr.project(world)
    iu, iv = np.floor(u), np.floor(v)
    inside = (z > 0) & (iu >= 0) & (iv >= 0) & (iu < nbr.dm_width) & (iv < nbr.dm_height)
    idx = np.nonzero(inside)[0]
    r, c = iv[idx].astype(np.intp), iu[idx].astype(np.intp)
    d = nbr_depth[r, c]
    ok = (d > 0) & (np.abs(d - z[idx]) <= CONSISTENT_REL * z[idx])
    idx, r, c, d = idx[ok], r[ok], c[ok], d[ok]
    rays = np.column_stack(
        [(c + 0.5 - nbr.dm_width / 2) / nbr.dm_focal_px, (r + 0.5 - nbr.dm_height / 2) / nbr.dm_focal_px,
         np.ones(len(r))]
    )  # fmt: skip
    nbr_world = (rays * d[:, None] - nbr.translation) @ nbr.rotation
    return idx, nbr_world, nbr_image[r, c].astype(np.float64)


def _claimed(src: ViewCamera, src_depth: np.ndarray, dst: ViewCamera, dst_depth: np.ndarray) -> np.ndarray:
    """Pixels of dst that a pixel of src lands on with a consistent depth (src makes that point).

    A src pixel claims the dst pixel it lands in when it lands within CLAIM_RADIUS_PX of its centre, or
    when that dst pixel lands back in it (the two confirm each other, and each would emit the same
    average). As in OpenMVS's fusion, one pixel of an earlier view absorbs at most one pixel of a later
    view, so where the later view samples the surface more finely its extra pixels still become points.
    """
    s_rows, s_cols = np.nonzero(src_depth > 0)
    u, v, z = dst.project(src.world_points(src_depth)[s_rows, s_cols])
    iu, iv = np.floor(u), np.floor(v)
    ok = (z > 0) & (iu >= 0) & (iv >= 0) & (iu < dst.dm_width) & (iv < dst.dm_height)
    s_rows, s_cols, u, v, z = s_rows[ok], s_cols[ok], u[ok], v[ok], z[ok]
    r, c = iv[ok].astype(np.intp), iu[ok].astype(np.intp)
    d = dst_depth[r, c]
    ok = (d > 0) & (np.abs(d - z) <= CONSISTENT_REL * z)
    s_rows, s_cols, u, v, r, c = s_rows[ok], s_cols[ok], u[ok], v[ok], r[ok], c[ok]
    near = (np.abs(u - c - 0.5) < CLAIM_RADIUS_PX) & (np.abs(v - r - 0.5) < CLAIM_RADIUS_PX)
    back_u, back_v, _ = src.project(dst.world_points(dst_depth)[r, c])
    mutual = (np.floor(back_u) == s_cols) & (np.floor(back_v) == s_rows)
    claimed = np.zeros(dst_depth.shape, bool)
    claimed[r[near | mutual], c[near | mutual]] = True
    return claimed


def merge_fused(paths: list[str]) -> np.ndarray:
    """Every view's fused points, in view order."""
    parts = [load_arrays(p)["points"] for p in paths]
    return np.concatenate(parts) if parts else empty_points(0)
