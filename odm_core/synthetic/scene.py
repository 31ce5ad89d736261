"""The scene in a local frame (x east, y north, z up, metres; z = 0 is the mean ground under the block).

The true surface is max(terrain, roof of the building whose footprint holds (x, y)): a bilinear
heightfield plus boxes with flat roofs and vertical walls.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from odm_core.synthetic.landcover import GROUND_RES_M, Road, ground_layer, road_distance
from odm_core.synthetic.targets import BORDER_M, Target, paint_targets, place_targets, target_half_m
from odm_core.synthetic.texture import Pyramid, band_noise, detail_tile

TERRAIN_RES_M = 0.5
SUN_ENU = np.array([0.3, -0.3 * np.sqrt(3.0), 0.8])  # unit vector: azimuth 150 deg, elevation 53 deg
ROOF_RGB = np.array(
    [[0.62, 0.33, 0.25], [0.50, 0.50, 0.52], [0.33, 0.33, 0.36], [0.47, 0.33, 0.26], [0.76, 0.73, 0.68]]
)
WALL_RGB = np.array([[0.82, 0.77, 0.68], [0.70, 0.66, 0.60], [0.60, 0.37, 0.29], [0.75, 0.74, 0.70]])

Box = tuple[float, float, float, float]  # (xmin, ymin, xmax, ymax), metres
Rgb = tuple[float, float, float]


def _rgb(palette: np.ndarray, rng: np.random.Generator) -> Rgb:
    """One colour drawn from a palette's rows."""
    r, g, b = (float(v) for v in palette[rng.integers(len(palette))])
    return r, g, b


@dataclass(frozen=True, eq=False)
class Terrain:
    """Heights on grid nodes: node (r, c) lies at (x0 + c * res_m, y0 + r * res_m); clamped outside."""

    z: np.ndarray
    x0: float
    y0: float
    res_m: float

    @cached_property
    def z_max(self) -> float:
        return float(self.z.max())

    @cached_property
    def lipschitz(self) -> float:
        """Bound on |grad z| of the bilinear surface."""
        gx = np.abs(np.diff(self.z, axis=1)).max(initial=0.0)
        gy = np.abs(np.diff(self.z, axis=0)).max(initial=0.0)
        return float(np.hypot(gx, gy) / self.res_m) * 1.01 + 1e-6

    def _cells(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows, cols = self.z.shape
        ci, ri = (x - self.x0) / self.res_m, (y - self.y0) / self.res_m
        c0 = np.clip(np.floor(ci), 0, cols - 2).astype(np.int64)
        r0 = np.clip(np.floor(ri), 0, rows - 2).astype(np.int64)
        return r0 * cols + c0, np.clip(ci - c0, 0.0, 1.0), np.clip(ri - r0, 0.0, 1.0)

    def height(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        k, fx, fy = self._cells(x, y)
        z, cols = self.z.ravel(), self.z.shape[1]
        bottom = z[k] + (z[k + 1] - z[k]) * fx
        top = z[k + cols] + (z[k + cols + 1] - z[k + cols]) * fx
        return bottom + (top - bottom) * fy

    @cached_property
    def _gradient(self) -> tuple[np.ndarray, np.ndarray]:
        gy, gx = np.gradient(self.z, self.res_m)
        return gx.ravel(), gy.ravel()

    def normal(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Smooth unit normals (N x 3) from central differences (for shading only)."""
        k, fx, fy = self._cells(x, y)
        cols = self.z.shape[1]
        n = np.empty((len(x), 3))
        for i, g in enumerate(self._gradient):
            bottom = g[k] + (g[k + 1] - g[k]) * fx
            top = g[k + cols] + (g[k + cols + 1] - g[k + cols]) * fx
            n[:, i] = -(bottom + (top - bottom) * fy)
        n[:, 2] = 1.0
        return n / np.linalg.norm(n, axis=1, keepdims=True)


@dataclass(frozen=True)
class Building:
    """A box with a flat roof: footprint centre, half sizes along its rotated axes, roof altitude."""

    cx: float
    cy: float
    half_u: float
    half_v: float
    angle_rad: float
    roof_z: float
    base_z: float  # bottom of the box, below the terrain everywhere under it
    height_m: float  # roof above the terrain at the footprint centre
    roof_rgb: tuple[float, float, float]
    wall_rgb: tuple[float, float, float]
    roof_items: tuple[tuple[float, float, float, float, float], ...]  # (u, v, half_u, half_v, gain)

    def local(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c, s = np.cos(self.angle_rad), np.sin(self.angle_rad)
        dx, dy = x - self.cx, y - self.cy
        return c * dx + s * dy, -s * dx + c * dy

    def inside(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        u, v = self.local(x, y)
        return (np.abs(u) <= self.half_u) & (np.abs(v) <= self.half_v)

    def corners(self) -> np.ndarray:
        """Footprint corners (4 x 2), counter-clockwise."""
        c, s = np.cos(self.angle_rad), np.sin(self.angle_rad)
        uv = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * [self.half_u, self.half_v]
        return np.column_stack([self.cx + c * uv[:, 0] - s * uv[:, 1], self.cy + s * uv[:, 0] + c * uv[:, 1]])


@dataclass(frozen=True, eq=False)
class Scene:
    terrain: Terrain
    buildings: tuple[Building, ...]
    roads: tuple[Road, ...]
    ground: Pyramid  # RGB ground albedo
    detail: tuple[Pyramid, ...]  # periodic brightness modulations, multiplied
    sun: np.ndarray  # unit vector toward the sun
    bounds: tuple[float, float, float, float]
    targets: tuple[Target, ...] = ()  # surveyed ground targets (GCPs and check points)

    def building_index(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Index of the building whose footprint holds each point, -1 for none."""
        idx = np.full(np.shape(x), -1, np.int64)
        for i, b in enumerate(self.buildings):
            idx[b.inside(x, y)] = i
        return idx

    def surface_height(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        z = self.terrain.height(x, y)
        for b in self.buildings:
            inside = b.inside(x, y)
            z[inside] = np.maximum(z[inside], b.roof_z)
        return z


def _terrain(rng: np.random.Generator, bounds: Box, block: Box, relief_m: float) -> Terrain:
    xmin, ymin, xmax, ymax = bounds
    xs = np.arange(xmin, xmax + TERRAIN_RES_M, TERRAIN_RES_M)
    ys = np.arange(ymin, ymax + TERRAIN_RES_M, TERRAIN_RES_M)
    x, y = np.meshgrid(xs, ys)
    span = max(block[2] - block[0], block[3] - block[1])
    z = 0.25 * band_noise(rng, x.shape, 12.0 / TERRAIN_RES_M, 80.0 / TERRAIN_RES_M).astype(np.float64)
    for _ in range(8):
        gx, gy = rng.uniform(block[0], block[2]), rng.uniform(block[1], block[3])
        sigma = rng.uniform(0.12, 0.35) * span
        z += rng.normal() * np.exp(-((x - gx) ** 2 + (y - gy) ** 2) / (2 * sigma**2))
    tilt = rng.uniform(0, 2 * np.pi)
    z += 0.01 * span * (np.cos(tilt) * x + np.sin(tilt) * y) / span
    under = (x >= block[0]) & (x <= block[2]) & (y >= block[1]) & (y <= block[3])
    z *= relief_m / max(float(np.ptp(z[under])), 1e-9)
    return Terrain(z - z[under].mean(), float(xs[0]), float(ys[0]), TERRAIN_RES_M)


def _roof_item(rng: np.random.Generator, hu: float, hv: float) -> tuple[float, float, float, float, float]:
    """A rooftop box or skylight: (u, v, half_u, half_v, brightness gain)."""
    u, v = rng.uniform(-0.6, 0.6) * hu, rng.uniform(-0.6, 0.6) * hv
    return u, v, rng.uniform(0.4, 1.3), rng.uniform(0.4, 1.3), float(rng.choice([0.45, 0.7, 1.35]))


def _building(rng: np.random.Generator, terrain: Terrain, cx: float, cy: float, theta: float) -> Building:
    hu, hv = rng.uniform(3.0, 8.0), rng.uniform(3.0, 7.0)
    angle = theta + rng.integers(0, 4) * np.pi / 2 + np.radians(rng.normal(0.0, 4.0))
    uu, vv = np.meshgrid(np.linspace(-hu, hu, 64), np.linspace(-hv, hv, 64))
    c, s = np.cos(angle), np.sin(angle)
    zs = terrain.height(cx + c * uu.ravel() - s * vv.ravel(), cy + s * uu.ravel() + c * vv.ravel())
    z_centre = float(terrain.height(np.array([cx]), np.array([cy]))[0])
    roof_z = float(zs.max()) + rng.uniform(4.0, 12.0)
    items = tuple(_roof_item(rng, hu, hv) for _ in range(rng.integers(2, 5)))
    roof_rgb = _rgb(ROOF_RGB, rng)
    wall_rgb = _rgb(WALL_RGB, rng)
    base_z = float(zs.min()) - 1.0
    return Building(cx, cy, hu, hv, angle, roof_z, base_z, roof_z - z_centre, roof_rgb, wall_rgb, items)


def _buildings(
    rng: np.random.Generator,
    terrain: Terrain,
    block: Box,
    roads: tuple[Road, ...],
    n: int,
    theta: float,
) -> tuple[Building, ...]:
    placed: list[Building] = []
    for _ in range(400 * max(n, 1)):
        if len(placed) == n:
            break
        cx, cy = rng.uniform(block[0], block[2]), rng.uniform(block[1], block[3])
        b = _building(rng, terrain, cx, cy, theta)
        radius = np.hypot(b.half_u, b.half_v)
        clear = all(
            np.hypot(cx - o.cx, cy - o.cy) > radius + np.hypot(o.half_u, o.half_v) + 4 for o in placed
        )
        if clear and road_distance(roads, cx, cy) > radius + 1.5:
            placed.append(b)
    return tuple(placed)


def _road(rng: np.random.Generator, block: Box, angle_rad: float) -> Road:
    """A road crossing the block near its centre, roughly along `angle_rad`."""
    fx, fy = rng.uniform(0.3, 0.7, 2)
    x = block[0] + fx * (block[2] - block[0])
    y = block[1] + fy * (block[3] - block[1])
    return Road(float(x), float(y), angle_rad + np.radians(rng.normal(0, 3)), rng.uniform(4.5, 6.5))


def make_scene(
    seed: int,
    bounds: Box,
    block: Box,
    relief_m: float,
    n_buildings: int,
    gsd_m: float,
    n_targets: tuple[int, int] = (0, 0),
) -> Scene:
    """Seeded scene over `bounds`; relief, buildings and `n_targets` (controls, checks) ground targets
    normalised/placed over the nadir `block`."""
    rng = np.random.default_rng([seed, 2])
    theta = rng.uniform(0, np.pi / 2)
    terrain = _terrain(rng, bounds, block, relief_m)
    roads = tuple(_road(rng, block, theta + k * np.pi / 2) for k in range(2))
    mx, my = 0.15 * (block[2] - block[0]), 0.15 * (block[3] - block[1])
    inner = (block[0] + mx, block[1] + my, block[2] - mx, block[3] - my)
    buildings = _buildings(rng, terrain, inner, roads, n_buildings, theta)
    ground_rgb = ground_layer(rng, bounds, theta, roads, SUN_ENU)
    targets = _targets(seed, bounds, block, terrain, buildings, gsd_m, n_targets, ground_rgb)
    ground = Pyramid.build(ground_rgb, GROUND_RES_M, (bounds[0], bounds[1]))
    # Two periodic detail tiles at GSD/2 scale, rotated and of incommensurate periods: their product
    # does not repeat within a photo, so fine features stay distinctive.
    detail = (
        Pyramid.build(detail_tile(rng), gsd_m / 2, (0.0, 0.0), 0.31, wrap=True),
        Pyramid.build(detail_tile(rng, 1024), gsd_m * 1.185, (7.0, 3.0), -0.83, wrap=True),
    )
    return Scene(terrain, buildings, roads, ground, detail, SUN_ENU, bounds, targets)


def _targets(
    seed: int,
    bounds: Box,
    block: Box,
    terrain: Terrain,
    buildings: tuple[Building, ...],
    gsd_m: float,
    n_targets: tuple[int, int],
    ground_rgb: np.ndarray,
) -> tuple[Target, ...]:
    """Place the ground targets on open terrain and paint them into the ground albedo."""
    if sum(n_targets) == 0:
        return ()
    half = target_half_m(gsd_m)

    def free(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        ok = np.ones(len(x), bool)
        for b in buildings:
            u, v = b.local(x, y)
            reach = BORDER_M + half
            ok &= (np.abs(u) > b.half_u + reach) | (np.abs(v) > b.half_v + reach)
        return ok

    origin = (bounds[0], bounds[1])
    placed = place_targets(np.random.default_rng([seed, 7]), block, origin, free, *n_targets)
    paint_targets(ground_rgb, origin, placed, half)
    z = terrain.height(np.array([p[1] for p in placed]), np.array([p[2] for p in placed]))
    return tuple(
        Target(name, float(x), float(y), float(zi), half, check)
        for (name, x, y, check), zi in zip(placed, z, strict=True)
    )
