"""Gridding a point cloud into elevation rasters: the grid, its tiles, and the per-tile raster steps.

As ODM's `opendm/dem/commands.py` does (with PDAL's writers.gdal): the highest (DSM) or inverse-distance
mean (DTM) of the points within several radii of each cell centre, the smallest radius that has points
winning; holes filled from a coarse (10%) copy of the raster; median smoothing. Tiles carry a halo so the
radii and the smoothing see across their edges, and nothing here needs the whole raster in memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from rasterio.transform import Affine

NODATA = -9999.0
MEDIAN_PASSES = 2  # OpenCV's float median is at most 5 x 5; two passes stand in for ODM's one 9 x 9
LADDER_STEP = 1.08  # the DSM's radii between ODM's grow by at least 8% a step
MIN_GRID_PX = 64  # ODM's RES_FLOOR: a DEM is never smaller than this across


@dataclass(frozen=True)
class DemGrid:
    """North-up grid: cell (row, col) spans x = west + [col, col + 1) res, y = north - [row, row + 1) res."""

    west: float
    north: float
    resolution_m: float
    width: int
    height: int

    @classmethod
    def around(cls, minx: float, miny: float, maxx: float, maxy: float, resolution_m: float) -> DemGrid:
        """The grid over a cloud's extent (ODM: width = ceil(extent / resolution), at least 64 cells),
        its corner on a multiple of the resolution, so rasters of one survey at one resolution (split-merge
        submodels) share their pixel grid."""
        width = max(1, math.ceil((maxx - minx) / resolution_m))
        height = max(1, math.ceil((maxy - miny) / resolution_m))
        if width < MIN_GRID_PX and height < MIN_GRID_PX:
            resolution_m *= max(width, height) / MIN_GRID_PX
        west = math.floor(minx / resolution_m) * resolution_m
        north = math.ceil(maxy / resolution_m) * resolution_m
        width = max(1, math.ceil((maxx - west) / resolution_m))
        height = max(1, math.ceil((north - miny) / resolution_m))
        return cls(west, north, resolution_m, width, height)

    @property
    def transform(self) -> Affine:
        return Affine(self.resolution_m, 0.0, self.west, 0.0, -self.resolution_m, self.north)

    def coarse_transform(self, factor: int) -> Affine:
        """The transform of the grid's copy at 1/factor of its size (cells factor times larger)."""
        res = self.resolution_m * factor
        return Affine(res, 0.0, self.west, 0.0, -res, self.north)


@dataclass(frozen=True)
class Tile:
    """A block of the grid plus a halo of `halo` cells on every side (clipped to nothing outside)."""

    row: int
    col: int
    rows: int
    cols: int
    halo: int

    def padded(self, grid: DemGrid) -> tuple[int, int, int, int]:
        """(row0, col0, rows, cols) of the tile with its halo, in grid cells (may reach outside the grid)."""
        return (
            self.row - self.halo,
            self.col - self.halo,
            self.rows + 2 * self.halo,
            self.cols + 2 * self.halo,
        )

    def bounds(self, grid: DemGrid) -> tuple[float, float, float, float]:
        """(minx, miny, maxx, maxy) of the tile with its halo."""
        row0, col0, rows, cols = self.padded(grid)
        res = grid.resolution_m
        west, north = grid.west + col0 * res, grid.north - row0 * res
        return west, north - rows * res, west + cols * res, north

    def core(self) -> tuple[slice, slice]:
        """The tile itself inside its padded array."""
        return slice(self.halo, self.halo + self.rows), slice(self.halo, self.halo + self.cols)


def tiles(grid: DemGrid, tile_px: int, halo_px: int) -> list[Tile]:
    """The grid cut into tiles of at most tile_px x tile_px cells, each with a halo."""
    return [
        Tile(r, c, min(tile_px, grid.height - r), min(tile_px, grid.width - c), halo_px)
        for r in range(0, grid.height, tile_px)
        for c in range(0, grid.width, tile_px)
    ]


def cell_index(grid: DemGrid, tile: Tile, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat index into the tile's padded array of each point, and which points fall inside it."""
    row0, col0, rows, cols = tile.padded(grid)
    col = np.floor((x - grid.west) / grid.resolution_m).astype(np.int64) - col0
    row = np.floor((grid.north - y) / grid.resolution_m).astype(np.int64) - row0
    inside = (col >= 0) & (col < cols) & (row >= 0) & (row < rows)
    return row[inside] * cols + col[inside], inside


def highest(shape: tuple[int, int], index: np.ndarray, z: np.ndarray) -> np.ndarray:
    """The highest z per cell (NaN where none)."""
    out = np.full(shape[0] * shape[1], -np.inf, np.float32)
    np.maximum.at(out, index, z.astype(np.float32))
    out[np.isinf(out)] = np.nan
    return out.reshape(shape)


def disk(radius_px: float) -> np.ndarray:
    """A disk of cells whose centres lie within radius_px of the centre cell's."""
    r = int(math.floor(radius_px))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (xx * xx + yy * yy <= radius_px * radius_px + 1e-9).astype(np.uint8)


def max_within(cells: np.ndarray, radius_px: float) -> np.ndarray:
    """Per cell, the highest value of the cells within radius_px (NaN where none)."""
    if radius_px < 1.0:
        return cells
    low = np.float32(-3.0e38)
    grown = cv2.dilate(np.where(np.isnan(cells), low, cells).astype(np.float32), disk(radius_px))
    grown[grown <= low] = np.nan
    return grown


def radius_ladder(radii_px: tuple[float, ...]) -> list[float]:
    """Every distinct cell-centre distance up to the largest radius, at least LADDER_STEP apart.

    A cell's disk only grows at those distances. With the ladder, an empty cell takes the highest of its
    nearest points (the smallest radius that holds any): beside a roof, the roof's height only where the
    roof is the nearest surface, not wherever it lies within the largest radius."""
    top = max(radii_px)
    reach = int(math.floor(top))
    distances = sorted(
        {
            math.hypot(a, b)
            for a in range(reach + 1)
            for b in range(a, reach + 1)
            if 0 < a * a + b * b <= top * top + 1e-9
        }
    )
    ladder: list[float] = []
    for d in distances:
        if not ladder or d >= ladder[-1] * LADDER_STEP or d == distances[-1]:
            ladder.append(d)
    return ladder


def highest_nearby(cells: np.ndarray, radii_px: tuple[float, ...]) -> np.ndarray:
    """The DSM's raw cells: each cell's own highest point, else the highest within the smallest radius of
    the ladder (up to the largest of radii_px) that holds any point; NaN where none."""
    return first_valid([cells] + [max_within(cells, r) for r in radius_ladder(radii_px)])


def mean_within(sums: np.ndarray, counts: np.ndarray, radius_px: float) -> np.ndarray:
    """Per cell, the mean of the points within radius_px, weighted by inverse distance (NaN where none)."""
    if radius_px < 1.0:
        kernel = np.ones((1, 1), np.float32)
    else:
        r = int(math.floor(radius_px))
        yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
        dist = np.hypot(xx, yy)
        kernel = np.where(dist <= radius_px, 1.0 / np.maximum(dist, 0.5), 0.0).astype(np.float32)
    s = cv2.filter2D(sums.astype(np.float32), -1, kernel, borderType=cv2.BORDER_CONSTANT)
    n = cv2.filter2D(counts.astype(np.float32), -1, kernel, borderType=cv2.BORDER_CONSTANT)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 1e-6, s / n, np.nan).astype(np.float32)


def first_valid(layers: list[np.ndarray]) -> np.ndarray:
    """Per cell, the first layer's value that is not NaN (smallest radius first)."""
    out = layers[0].copy()
    for layer in layers[1:]:
        hole = np.isnan(out)
        out[hole] = layer[hole]
    return out


def median_smooth(values: np.ndarray) -> np.ndarray:
    """Median smoothing that leaves holes as holes and does not pull edges towards them."""
    hole = np.isnan(values)
    if hole.all():
        return values
    filled = values.copy()
    if hole.any():  # holes take their nearest value, so they do not weigh in the median
        from scipy.ndimage import distance_transform_edt

        idx = distance_transform_edt(hole, return_distances=False, return_indices=True)
        filled = values[tuple(idx)]
    for _ in range(MEDIAN_PASSES):
        filled = cv2.medianBlur(filled.astype(np.float32), 5)
    filled[hole] = np.nan
    return filled


def bilinear(raster: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Raster values at fractional (column, row) positions, cell centres at integers: (n,) for one band,
    (n, bands) for an H x W x bands image. Points are laid out in rows for cv2.remap (its maps are 2-D)."""
    n = len(u)
    width = 4096
    rows = max(1, -(-n // width))
    map_x = np.full(rows * width, -1.0, np.float32)
    map_y = np.full(rows * width, -1.0, np.float32)
    map_x[:n], map_y[:n] = u, v
    out = cv2.remap(
        raster,
        map_x.reshape(rows, width),
        map_y.reshape(rows, width),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    flat = out.reshape(rows * width, -1)[:n]
    return flat[:, 0] if raster.ndim == 2 else flat
