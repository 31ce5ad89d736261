"""The ground's colour at ~20 cm: fields with crop rows and hedges, roads, trees with shadows, noise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from odm_core.synthetic.texture import band_noise

GROUND_RES_M = 0.2
PARCEL_SIZE_M = (42.0, 29.0)
FIELD_RGB = np.array(
    [
        [0.36, 0.50, 0.25],  # grass
        [0.24, 0.40, 0.17],  # dark crop
        [0.74, 0.66, 0.42],  # wheat
        [0.54, 0.43, 0.32],  # bare soil
        [0.62, 0.61, 0.41],  # dry grass
        [0.39, 0.31, 0.24],  # ploughed
        [0.50, 0.58, 0.30],  # meadow
    ],
    np.float32,
)
HEDGE_RGB = np.array([0.20, 0.30, 0.13], np.float32)
ASPHALT_RGB = np.array([0.40, 0.40, 0.42], np.float32)
GRAVEL_RGB = np.array([0.66, 0.62, 0.55], np.float32)
TREE_RGB = np.array([0.16, 0.30, 0.12], np.float32)


@dataclass(frozen=True)
class Road:
    """A straight road through `point` along `angle_rad` (from the x axis)."""

    x: float
    y: float
    angle_rad: float
    width_m: float

    def coords(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(distance along, signed distance across) the road centre line."""
        c, s = np.cos(self.angle_rad), np.sin(self.angle_rad)
        dx, dy = x - self.x, y - self.y
        return c * dx + s * dy, -s * dx + c * dy


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _fields(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, theta: float) -> np.ndarray:
    """Parcels on a rotated, row-shifted grid; each with a crop colour, rows and some hedged edges."""
    n = 64
    cls = rng.integers(0, len(FIELD_RGB), (n, n))
    jitter = 1.0 + 0.07 * rng.standard_normal((n, n, 3)).astype(np.float32)
    shift = rng.uniform(0, 1, n)
    period = rng.uniform(1.6, 3.2, (n, n))
    amp = rng.uniform(0.03, 0.12, (n, n))
    along_u = rng.random((n, n)) < 0.5
    hedged = rng.random((n, n)) < 0.4
    pw, ph = PARCEL_SIZE_M
    u = np.cos(theta) * x + np.sin(theta) * y
    v = -np.sin(theta) * x + np.cos(theta) * y
    pc = np.floor(u / pw).astype(np.int64)
    vs = v + shift[pc % n] * ph
    pr = np.floor(vs / ph).astype(np.int64)
    key = (pc % n, pr % n)
    rgb = FIELD_RGB[cls[key]] * jitter[key]
    w = np.where(along_u[key], u, vs)
    rgb *= (1.0 + amp[key] * np.sin(2 * np.pi * w / period[key])).astype(np.float32)[..., None]
    edge = np.minimum(
        np.minimum(u - pc * pw, (pc + 1) * pw - u), np.minimum(vs - pr * ph, (pr + 1) * ph - vs)
    )
    hedge = (_smoothstep(1.1, 0.7, edge) * hedged[key]).astype(np.float32)[..., None]
    return rgb * (1 - hedge) + HEDGE_RGB * hedge


def _paint_roads(rgb: np.ndarray, x: np.ndarray, y: np.ndarray, roads: tuple[Road, ...]) -> None:
    for road in roads:
        s, d = road.coords(x, y)
        ad = np.abs(d)
        half = road.width_m / 2
        gravel = _smoothstep(half + 1.0, half + 0.7, ad)[..., None]
        asphalt = _smoothstep(half + 0.1, half - 0.1, ad)[..., None]
        dash = (_smoothstep(0.25, 0.1, ad) * (np.mod(s, 6.0) < 3.0))[..., None]
        rgb[:] = rgb * (1 - gravel) + GRAVEL_RGB * gravel
        rgb[:] = rgb * (1 - asphalt) + ASPHALT_RGB * asphalt
        rgb[:] = rgb * (1 - dash) + 0.85 * dash


def road_distance(roads: tuple[Road, ...], x: float, y: float) -> float:
    """Distance from (x, y) to the nearest road edge (negative on a road)."""
    if not roads:
        return np.inf
    return min(abs(float(r.coords(np.array(x), np.array(y))[1])) - r.width_m / 2 for r in roads)


def _paint_trees(
    rgb: np.ndarray,
    rng: np.random.Generator,
    origin: tuple[float, float],
    roads: tuple[Road, ...],
    sun: np.ndarray,
) -> None:
    """Round crowns, lit from the sun's side, each with its shadow cast on the ground beside it."""
    rows, cols = rgb.shape[:2]
    count = int(rows * cols * GROUND_RES_M**2 / 220.0)
    shadow_dir = -sun[:2] / max(sun[2], 0.2)  # ground offset per metre of height
    for _ in range(count):
        r_m = rng.uniform(0.6, 3.2)
        cx = origin[0] + rng.uniform(0, cols * GROUND_RES_M)
        cy = origin[1] + rng.uniform(0, rows * GROUND_RES_M)
        tint = TREE_RGB * rng.uniform(0.75, 1.3, 3).astype(np.float32)
        if road_distance(roads, cx, cy) < r_m + 1.0:
            continue
        for k, (ox, oy) in enumerate((r_m * shadow_dir, (0.0, 0.0))):
            rad = (r_m + 1.0) / GROUND_RES_M
            c0 = int((cx + ox - origin[0]) / GROUND_RES_M)
            r0 = int((cy + oy - origin[1]) / GROUND_RES_M)
            rs = slice(max(r0 - int(rad), 0), min(r0 + int(rad) + 1, rows))
            cs = slice(max(c0 - int(rad), 0), min(c0 + int(rad) + 1, cols))
            yy = (np.arange(rs.start, rs.stop)[:, None] + 0.5) * GROUND_RES_M + origin[1] - cy - oy
            xx = (np.arange(cs.start, cs.stop)[None, :] + 0.5) * GROUND_RES_M + origin[0] - cx - ox
            a = _smoothstep(r_m + 0.15, r_m - 0.15, np.hypot(xx, yy))[..., None].astype(np.float32)
            if k == 0:
                rgb[rs, cs] *= 1 - 0.45 * a
            else:
                lit = (1.0 + 0.35 * (xx * sun[0] + yy * sun[1]) / r_m)[..., None].astype(np.float32)
                rgb[rs, cs] = rgb[rs, cs] * (1 - a) + tint * lit * a


def ground_layer(
    rng: np.random.Generator,
    bounds: tuple[float, float, float, float],
    theta: float,
    roads: tuple[Road, ...],
    sun: np.ndarray,
) -> np.ndarray:
    """Ground albedo (rows x cols x 3, float32) on GROUND_RES_M cells from (xmin, ymin), row 0 south."""
    xmin, ymin, xmax, ymax = bounds
    cols = int(np.ceil((xmax - xmin) / GROUND_RES_M))
    rows = int(np.ceil((ymax - ymin) / GROUND_RES_M))
    x = (xmin + (np.arange(cols, dtype=np.float32) + 0.5) * GROUND_RES_M)[None, :]
    y = (ymin + (np.arange(rows, dtype=np.float32) + 0.5) * GROUND_RES_M)[:, None]
    x, y = np.broadcast_to(x, (rows, cols)), np.broadcast_to(y, (rows, cols))
    rgb = _fields(rng, x, y, theta)
    shape = (rows, cols)
    rgb *= (1.0 + 0.10 * band_noise(rng, shape, 3.0, 25.0))[..., None]
    rgb *= (1.0 + 0.12 * band_noise(rng, shape, 25.0, 400.0))[..., None]
    for ch in range(3):
        rgb[..., ch] += 0.02 * band_noise(rng, shape, 40.0, 400.0)
    _paint_roads(rgb, x, y, roads)
    _paint_trees(rgb, rng, (xmin, ymin), roads, sun)
    return np.clip(rgb, 0.02, 1.0)
