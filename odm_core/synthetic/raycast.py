"""Exact ray casting into the scene: the terrain by Lipschitz-safe marching, buildings by slab tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from odm_core.synthetic.camera import CameraPose, Intrinsics
from odm_core.synthetic.scene import Building, Scene, Terrain

SKY, GROUND, ROOF, WALL = -1, 0, 1, 2
_TOL_M = 5e-5  # the march stops within this height above the terrain
_MAX_STEPS = 300


@dataclass(frozen=True, eq=False)
class Hits:
    """First surface along each ray (world frame)."""

    t: np.ndarray  # distance along the unit ray; inf for the sky
    points: np.ndarray  # (N, 3)
    normals: np.ndarray  # (N, 3), unit, facing the ray's origin side
    kind: np.ndarray  # SKY, GROUND, ROOF or WALL
    building: np.ndarray  # index into scene.buildings, -1 for ground or sky
    wall_s: np.ndarray  # horizontal position along the hit wall (m), 0 elsewhere


def march_terrain(terrain: Terrain, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Distance to the first terrain crossing of each unit ray (inf when it never descends).

    Each step is the height gap divided by the fastest the gap can shrink (|dz| + L |dxy|, L the
    slope bound), so no step passes through the surface and the first crossing is found.
    """
    t_out = np.full(len(dirs), np.inf)
    idx = np.flatnonzero(dirs[:, 2] < -1e-6)
    d = dirs[idx]
    rate = -d[:, 2] + terrain.lipschitz * np.hypot(d[:, 0], d[:, 1])
    t = np.maximum((origin[2] - terrain.z_max) / -d[:, 2], 0.0)
    for _ in range(_MAX_STEPS):
        x, y = origin[0] + t * d[:, 0], origin[1] + t * d[:, 1]
        gap = origin[2] + t * d[:, 2] - terrain.height(x, y)
        done = gap < _TOL_M
        t_out[idx[done]] = t[done]
        keep = ~done
        idx, d, rate, t = idx[keep], d[keep], rate[keep], t[keep] + gap[keep] / rate[keep]
        if not len(idx):
            break
    t_out[idx] = t
    return t_out


def _candidates(b: Building, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Rays that may meet the building's bounding sphere."""
    centre = np.array([b.cx, b.cy, 0.5 * (b.base_z + b.roof_z)])
    radius = np.sqrt(b.half_u**2 + b.half_v**2 + (0.5 * (b.roof_z - b.base_z)) ** 2)
    to_c = centre - origin
    dist = float(np.linalg.norm(to_c))
    if dist <= radius:
        return np.arange(len(dirs))
    cos_max = np.sqrt(1.0 - (radius / dist) ** 2)
    return np.flatnonzero(dirs @ (to_c / dist) >= cos_max - 1e-9)


def hit_box(b: Building, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slab test: (t entering the box or inf, face axis 0=u 1=v 2=z, sign of the face's outward normal)."""
    c, s = np.cos(b.angle_rad), np.sin(b.angle_rad)
    ox, oy = origin[0] - b.cx, origin[1] - b.cy
    o = np.array([c * ox + s * oy, -s * ox + c * oy, origin[2]])
    d = np.column_stack([c * dirs[:, 0] + s * dirs[:, 1], -s * dirs[:, 0] + c * dirs[:, 1], dirs[:, 2]])
    d = np.where(np.abs(d) < 1e-12, 1e-12, d)
    lo = np.array([-b.half_u, -b.half_v, b.base_z])
    hi = np.array([b.half_u, b.half_v, b.roof_z])
    t1, t2 = (lo - o) / d, (hi - o) / d
    t_min, t_max = np.minimum(t1, t2), np.maximum(t1, t2)
    axis = np.argmax(t_min, axis=1)
    t_near = t_min[np.arange(len(d)), axis]
    hit = (t_near <= t_max.min(axis=1)) & (t_near > 0)
    sign = -np.sign(d[np.arange(len(d)), axis])
    return np.where(hit, t_near, np.inf), axis, sign


def cast_rays(scene: Scene, origin: np.ndarray, dirs: np.ndarray) -> Hits:
    """First hit of unit rays `dirs` (N x 3) from `origin` with the terrain and the buildings."""
    n = len(dirs)
    t = march_terrain(scene.terrain, origin, dirs)
    building = np.full(n, -1, np.int64)
    axis = np.zeros(n, np.int64)
    sign = np.zeros(n)
    for i, b in enumerate(scene.buildings):
        cand = _candidates(b, origin, dirs)
        tb, ax, sg = hit_box(b, origin, dirs[cand])
        closer = tb < t[cand]
        sel = cand[closer]
        t[sel], building[sel], axis[sel], sign[sel] = tb[closer], i, ax[closer], sg[closer]
    finite = np.isfinite(t)
    points = origin + np.where(finite, t, 0.0)[:, None] * dirs
    kind = np.where(finite, GROUND, SKY)
    normals = np.zeros((n, 3))
    normals[:, 2] = 1.0
    ground = finite & (building < 0)
    normals[ground] = scene.terrain.normal(points[ground, 0], points[ground, 1])
    wall_s = np.zeros(n)
    for i, b in enumerate(scene.buildings):
        on = building == i
        roof = on & (axis == 2)
        wall = on & (axis != 2)
        kind[roof], kind[wall] = ROOF, WALL
        c, s = np.cos(b.angle_rad), np.sin(b.angle_rad)
        su = sign[wall] * (axis[wall] == 0)
        sv = sign[wall] * (axis[wall] == 1)
        normals[wall] = np.column_stack([c * su - s * sv, s * su + c * sv, np.zeros(len(su))])
        u, v = b.local(points[wall, 0], points[wall, 1])
        wall_s[wall] = np.where(axis[wall] == 0, v, u) + 50.0 * (axis[wall] + sign[wall] + 1)
    return Hits(t, points, normals, kind, building, wall_s)


def visible(
    scene: Scene, pose: CameraPose, intr: Intrinsics, points: np.ndarray, tol_m: float = 0.02
) -> np.ndarray:
    """Whether each world point lies inside the photo and is the first surface seen along its ray."""
    cam = pose.cam_from_world(points)
    in_front = cam[:, 2] > 1e-6
    pix = intr.project(np.where(in_front[:, None], cam, 1.0))
    inside = in_front & (pix[:, 0] >= 0) & (pix[:, 0] < intr.width) & (pix[:, 1] >= 0)
    inside &= pix[:, 1] < intr.height
    to_p = points - pose.centre
    dist = np.linalg.norm(to_p, axis=1)
    hits = cast_rays(scene, pose.centre, to_p / dist[:, None])
    return inside & (hits.t >= dist - tol_m)
