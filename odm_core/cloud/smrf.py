"""Ground points by the Simple Morphological Filter (Pingel, Clarke & McBride 2013), as PDAL's filters.smrf.

A minimum surface on a coarse grid (SMRF_CELL_M) is opened with disks of growing radius up to the window;
a cell whose opened height drops by more than slope x radius x cell is an object (building, tree). The
ground surface is the minimum surface without the objects, holes filled; a point is ground when it lies
within threshold + scalar x (local surface slope) of that surface. ODM's defaults: scalar 1.25, slope 0.15,
threshold 0.5 m, window 18 m.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from rasterio.fill import fillnodata

from odm_core.dem.gridding import bilinear

SMRF_CELL_M = 1.0  # PDAL's default cell size


@dataclass(frozen=True)
class SmrfParams:
    scalar: float = 1.25
    slope: float = 0.15
    threshold_m: float = 0.5
    window_m: float = 18.0


def _fill(values: np.ndarray) -> np.ndarray:
    """Holes (NaN) filled by GDAL's inverse-distance fill, reaching as far as the raster is wide."""
    hole = np.isnan(values)
    if not hole.any() or hole.all():
        return values
    reach = float(max(values.shape))
    return fillnodata(
        np.where(hole, 0, values).astype(np.float32),
        mask=(~hole).astype(np.uint8),
        max_search_distance=reach,
        smoothing_iterations=0,
    )


def ground_surface(x: np.ndarray, y: np.ndarray, z: np.ndarray, params: SmrfParams) -> tuple:
    """(surface, west, north) of the SMRF ground surface on a SMRF_CELL_M grid over the points."""
    west, north = float(x.min()), float(y.max())
    cols = int((x.max() - west) / SMRF_CELL_M) + 1
    rows = int((north - y.min()) / SMRF_CELL_M) + 1
    col = ((x - west) / SMRF_CELL_M).astype(np.int64)
    row = ((north - y) / SMRF_CELL_M).astype(np.int64)
    lowest = np.full(rows * cols, np.inf, np.float32)
    np.minimum.at(lowest, row * cols + col, z.astype(np.float32))
    lowest[np.isinf(lowest)] = np.nan
    surface = _fill(lowest.reshape(rows, cols))
    objects = np.zeros(surface.shape, bool)
    previous = surface
    for radius in range(1, int(np.ceil(params.window_m / SMRF_CELL_M)) + 1):
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        opened = cv2.morphologyEx(surface, cv2.MORPH_OPEN, kernel, borderType=cv2.BORDER_REPLICATE)
        objects |= (previous - opened) > params.slope * radius * SMRF_CELL_M
        previous = opened
    ground = surface.copy()
    ground[objects] = np.nan
    return _fill(ground), west, north


def classify_ground(x: np.ndarray, y: np.ndarray, z: np.ndarray, params: SmrfParams) -> np.ndarray:
    """True for the points SMRF calls ground."""
    if len(x) == 0:
        return np.zeros(0, bool)
    surface, west, north = ground_surface(x, y, z, params)
    gy, gx = np.gradient(surface, SMRF_CELL_M)
    slope = np.hypot(gx, gy)
    u = (x - west) / SMRF_CELL_M - 0.5  # cell centres at integers
    v = (north - y) / SMRF_CELL_M - 0.5
    under = bilinear(surface.astype(np.float32), u, v)
    steep = bilinear(slope.astype(np.float32), u, v)
    return np.abs(z - under) <= params.threshold_m + params.scalar * steep
