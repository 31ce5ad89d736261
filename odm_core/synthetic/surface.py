"""The colour of the surface at ray hits: albedo by surface kind, Lambert shading from a fixed sun.

Everything here is view-independent, so the true orthophoto and the photos agree up to exposure.
"""

from __future__ import annotations

import numpy as np

from odm_core.synthetic.raycast import GROUND, ROOF, WALL, Hits
from odm_core.synthetic.scene import Building, Scene

SKY_RGB = np.array([0.70, 0.80, 0.95], np.float32)
WINDOW_RGB = np.array([0.17, 0.21, 0.27], np.float32)
_AMBIENT = 0.35
_FLOOR_M, _WINDOW_PITCH_M, _WINDOW_HALF = 3.0, 2.8, (0.65, 0.75)


def _soft_inside(margin: np.ndarray, footprint_m: np.ndarray) -> np.ndarray:
    """Coverage of a pixel of width footprint_m by a region whose signed inner distance is margin."""
    return np.clip(0.5 + margin / np.maximum(footprint_m, 1e-6), 0.0, 1.0).astype(np.float32)


def detail(scene: Scene, x: np.ndarray, y: np.ndarray, footprint_m: np.ndarray) -> np.ndarray:
    """Brightness modulation (N,) of the fine texture, footprint-filtered."""
    out = np.ones(len(x), np.float32)
    for tile in scene.detail:
        out *= tile.sample(x, y, footprint_m)[:, 0]
    return out


def _roof(scene: Scene, b: Building, p: np.ndarray, fp: np.ndarray) -> np.ndarray:
    u, v = b.local(p[:, 0], p[:, 1])
    gain = np.ones(len(p), np.float32)
    for iu, iv, hu, hv, g in b.roof_items:
        a = _soft_inside(np.minimum(hu - np.abs(u - iu), hv - np.abs(v - iv)), fp)
        gain *= 1.0 + (g - 1.0) * a
    rim = 1.0 - _soft_inside(np.minimum(b.half_u - np.abs(u), b.half_v - np.abs(v)) - 0.3, fp)
    gain *= 1.0 - 0.35 * rim
    d = 1.0 + 0.6 * (detail(scene, p[:, 0], p[:, 1], fp) - 1.0)
    return np.asarray(b.roof_rgb, np.float32) * (gain * d)[:, None]


def _wall(scene: Scene, b: Building, s: np.ndarray, z: np.ndarray, fp: np.ndarray) -> np.ndarray:
    h = z - (b.roof_z - b.height_m)
    ws = np.mod(s, _WINDOW_PITCH_M) - _WINDOW_PITCH_M / 2
    wh = np.mod(h, _FLOOR_M) - _FLOOR_M / 2 - 0.2
    margin = np.minimum(_WINDOW_HALF[0] - np.abs(ws), _WINDOW_HALF[1] - np.abs(wh))
    window = _soft_inside(margin, fp) * ((h > 0.8) & (h < b.height_m - 1.0))
    base = np.asarray(b.wall_rgb, np.float32) * detail(scene, s, z, fp)[:, None]
    return base * (1 - window[:, None]) + WINDOW_RGB * window[:, None]


def shading(scene: Scene, normals: np.ndarray) -> np.ndarray:
    """Lambert with ambient light, 1.0 on flat ground."""
    lit = np.maximum(normals @ scene.sun, 0.0) / scene.sun[2]
    return (_AMBIENT + (1 - _AMBIENT) * lit).astype(np.float32)


def surface_colour(scene: Scene, hits: Hits, footprint_m: np.ndarray) -> np.ndarray:
    """Linear RGB in [0, ~1] (N x 3, float32) of each hit, textures filtered to footprint_m."""
    out = np.tile(SKY_RGB, (len(hits.t), 1))
    p, fp = hits.points, footprint_m
    g = np.flatnonzero(hits.kind == GROUND)
    out[g] = scene.ground.sample(p[g, 0], p[g, 1], fp[g]) * detail(scene, p[g, 0], p[g, 1], fp[g])[:, None]
    for i, b in enumerate(scene.buildings):
        r = np.flatnonzero((hits.building == i) & (hits.kind == ROOF))
        out[r] = _roof(scene, b, p[r], fp[r])
        w = np.flatnonzero((hits.building == i) & (hits.kind == WALL))
        out[w] = _wall(scene, b, hits.wall_s[w], p[w, 2], fp[w])
    solid = hits.kind != -1
    out[solid] *= shading(scene, hits.normals[solid])[:, None]
    return out


def pixel_footprint_m(hits: Hits, dirs: np.ndarray, cos_axis: np.ndarray, focal_px: float) -> np.ndarray:
    """Size on the surface of one pixel (geometric mean of its two sides) along each ray."""
    incidence = np.maximum(np.abs(np.sum(hits.normals * dirs, axis=1)), 0.15)
    t = np.where(np.isfinite(hits.t), hits.t, 1.0)
    return t * cos_axis**1.5 / focal_px / np.sqrt(incidence)
