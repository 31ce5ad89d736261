"""Compare a DSM with another engine's cloud gridded the same way, as the difference of two rasters.

The reference cloud (ODM's, for Brighton) is gridded onto our DSM's own grid (highest point per cell, with
the same search radii as the DSM's); the differences are then reported raw, after removing their median (a
constant vertical offset) and after removing a fitted plane (offset and tilt: what GPS-only
georeferencing of two SfM solutions leaves between them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio

from odm_core.dem import gridding as dr


@dataclass(frozen=True)
class DemComparison:
    cells_compared: int
    share_of_ours_compared: float
    median_raw_m: float
    offset_xyz_m: tuple[float, float, float]  # the constant shift of ours onto the reference
    median_after_offset_m: float
    plane_tilt_deg: float
    plane_gradient: tuple[float, float]  # d(ours - reference)/dx, /dy of the fitted plane (x east, y north)
    median_after_plane_m: float
    p90_after_plane_m: float


def grid_highest(
    xyz: np.ndarray, transform: rasterio.Affine, shape: tuple[int, int], radius_px: float
) -> np.ndarray:
    """The highest point per cell of a grid, grown to radius_px where a cell has none (NaN: none)."""
    col = np.floor((xyz[:, 0] - transform.c) / transform.a).astype(np.int64)
    row = np.floor((xyz[:, 1] - transform.f) / transform.e).astype(np.int64)
    inside = (col >= 0) & (col < shape[1]) & (row >= 0) & (row < shape[0])
    cells = dr.highest(shape, row[inside] * shape[1] + col[inside], xyz[inside, 2])
    return dr.first_valid([cells, dr.max_within(cells, radius_px)])


def compare_dsm(dsm: Path, reference_xyz: np.ndarray) -> DemComparison:
    """Our DSM (GeoTIFF) against the reference cloud gridded on its grid; cells both have."""
    with rasterio.open(dsm) as src:
        ours = src.read(1, masked=True).filled(np.nan).astype(np.float64)
        transform = src.transform
    reference = grid_highest(reference_xyz, transform, ours.shape, 1.5)
    shift_r, shift_c = _best_shift(ours, reference)
    ours = np.roll(ours, (shift_r, shift_c), axis=(0, 1))  # wrapped rows/cols lie in the nodata margin
    both = np.isfinite(ours) & np.isfinite(reference)
    rows, cols = np.nonzero(both)
    diff = ours[both] - reference[both]
    offset = float(np.median(diff))
    x = transform.c + (cols + 0.5) * transform.a
    y = transform.f + (rows + 0.5) * transform.e
    design = np.column_stack([x - x.mean(), y - y.mean(), np.ones_like(x)])
    coef = _robust_plane(design, diff)
    residual = diff - design @ coef
    raw = ours_raw_diff(dsm, reference)
    return DemComparison(
        cells_compared=int(both.sum()),
        share_of_ours_compared=float(both.sum() / max(1, np.isfinite(ours).sum())),
        median_raw_m=raw,
        offset_xyz_m=(shift_c * transform.a, shift_r * transform.e, -offset),
        median_after_offset_m=float(np.median(np.abs(diff - offset))),
        plane_tilt_deg=float(np.degrees(np.arctan(np.hypot(coef[0], coef[1])))),
        plane_gradient=(float(coef[0]), float(coef[1])),
        median_after_plane_m=float(np.median(np.abs(residual))),
        p90_after_plane_m=float(np.percentile(np.abs(residual), 90)),
    )


def ours_raw_diff(dsm: Path, reference: np.ndarray) -> float:
    """Median |ours - reference| over the cells both have, before any offset is removed."""
    with rasterio.open(dsm) as src:
        ours = src.read(1, masked=True).filled(np.nan)
    both = np.isfinite(ours) & np.isfinite(reference)
    return float(np.median(np.abs(ours[both] - reference[both])))


def _best_shift(ours: np.ndarray, reference: np.ndarray, reach_px: int = 40) -> tuple[int, int]:
    """The whole-cell shift of ours (rows, cols) that best matches the reference, coarse to fine: the
    median absolute difference, less its median, over a sample of cells."""
    rng = np.random.default_rng(0)
    rows, cols = np.nonzero(np.isfinite(ours))
    pick = rng.choice(len(rows), min(len(rows), 50_000), replace=False)
    rows, cols = rows[pick], cols[pick]
    best = (0, 0)
    for step in (8, 4, 2, 1):
        span = reach_px if step == 8 else 2 * step
        candidates = [
            (best[0] + dr_, best[1] + dc)
            for dr_ in range(-span, span + 1, step)
            for dc in range(-span, span + 1, step)
        ]
        best = min(candidates, key=lambda s: _spread(ours, reference, rows, cols, s))
    return best


def _spread(
    ours: np.ndarray, reference: np.ndarray, rows: np.ndarray, cols: np.ndarray, shift: tuple
) -> float:  # noqa: E501
    """Median |difference| left after a fitted plane, for one shift (the plane takes offset and tilt, so
    the shift is not bent to imitate a tilt on sloping ground)."""
    r, c = rows + shift[0], cols + shift[1]
    ok = (r >= 0) & (r < reference.shape[0]) & (c >= 0) & (c < reference.shape[1])
    diff = ours[rows[ok], cols[ok]] - reference[r[ok], c[ok]]
    good = np.isfinite(diff)
    if good.sum() < 1000:
        return np.inf
    design = np.column_stack([r[ok][good], c[ok][good], np.ones(good.sum())]).astype(float)
    residual = diff[good] - design @ _robust_plane(design, diff[good], rounds=2)
    return float(np.median(np.abs(residual)))


def _robust_plane(design: np.ndarray, diff: np.ndarray, rounds: int = 5) -> np.ndarray:
    """Least squares plane, refitted on the cells within 3 median deviations (trees, edges left out)."""
    keep = np.ones(len(diff), bool)
    coef = np.zeros(3)
    for _ in range(rounds):
        coef = np.linalg.lstsq(design[keep], diff[keep], rcond=None)[0]
        residual = np.abs(diff - design @ coef)
        keep = residual <= 3 * max(np.median(residual), 1e-3)
    return coef
