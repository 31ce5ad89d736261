"""--dem-euclidean-map: per DEM cell, the Euclidean distance in cells to the nearest nodata cell.

As ODM (`compute_euclidean_map`: `gdal_proximity.py -values NODATA` on the DEM before its holes are
filled, cropped): nodata cells are 0, distances are in cells (GDAL's default PIXEL units), and only cells of
the raster count as nodata (the area beyond its edges does not). A raster without any nodata cell gets
NODATA everywhere, where GDAL has no distance to give either.

Tile by tile: the distance transform runs on the tile's raw values with their halo, which is exact for a
cell whose nearest nodata cell is no farther than the edge of that padded window. Beyond that reach the
value comes from a 1/COARSE plan of the whole raster (which blocks hold a nodata cell), bilinear between
block centres and never below the reach: there it is within about COARSE x sqrt(2) cells of the truth.
"""

from __future__ import annotations

import numpy as np
import shapely
from rasterio.features import rasterize
from rasterio.transform import Affine
from scipy import ndimage
from shapely.geometry.base import BaseGeometry

from odm_core.dem import gridding as dr
from odm_core.dem.gridding import bilinear
from odm_core.geo.crop import window_mask


def block_holes(values: np.ndarray, tile: dr.Tile, coarse: int) -> np.ndarray:
    """Per coarse block of the tile (without halo): does it hold a nodata (NaN) cell?"""
    core = np.isnan(values[tile.core()])
    rows, cols = -(-core.shape[0] // coarse), -(-core.shape[1] // coarse)
    padded = np.zeros((rows * coarse, cols * coarse), bool)  # cells beyond the raster are no holes
    padded[: core.shape[0], : core.shape[1]] = core
    return np.asarray(padded.reshape(rows, coarse, cols, coarse).any(axis=(1, 3)), bool)


def coarse_hole_distance(
    holes: np.ndarray, grid: dr.DemGrid, crop: BaseGeometry | None, coarse: int
) -> np.ndarray:
    """Distance in grid cells from each coarse block's centre to the nearest block holding a nodata cell
    (cells outside the crop count as nodata); inf everywhere when there is none."""
    holes = holes.copy()
    if crop is not None:
        transform = grid.coarse_transform(coarse)
        inside = window_mask(crop, transform, holes.shape)
        edge = rasterize(
            [shapely.boundary(crop)], out_shape=holes.shape, transform=transform, all_touched=True
        )
        holes |= ~inside | (edge > 0)
    if not holes.any():
        return np.full(holes.shape, np.inf, np.float32)
    return (ndimage.distance_transform_edt(~holes) * coarse).astype(np.float32)


def tile_distance(
    raw: np.ndarray,
    grid: dr.DemGrid,
    tile: dr.Tile,
    crop: BaseGeometry | None,
    coarse_distance: np.ndarray,
    coarse: int,
) -> np.ndarray:
    """The tile's (without halo) distance to the nearest nodata cell, from its raw values with halo."""
    row0, col0, rows, cols = tile.padded(grid)
    r = np.arange(row0, row0 + rows)
    c = np.arange(col0, col0 + cols)
    in_grid = ((r >= 0) & (r < grid.height))[:, None] & ((c >= 0) & (c < grid.width))[None, :]
    hole = np.isnan(raw)
    if crop is not None:
        res = grid.resolution_m
        transform = Affine(res, 0, grid.west + col0 * res, 0, -res, grid.north - row0 * res)
        hole |= ~window_mask(crop, transform, (rows, cols))
    hole &= in_grid
    fine = ndimage.distance_transform_edt(~hole) if hole.any() else np.full(hole.shape, np.inf)
    core = fine[tile.core()]
    # the padded window's edge, on the sides where the grid goes on beyond it
    i = np.arange(tile.rows)[:, None] + tile.halo
    j = np.arange(tile.cols)[None, :] + tile.halo
    inf = np.inf
    reach = np.minimum.reduce(
        [
            np.broadcast_to(i + 1.0 if row0 > 0 else inf, core.shape),
            np.broadcast_to(rows - i if row0 + rows < grid.height else inf, core.shape),
            np.broadcast_to(j + 1.0 if col0 > 0 else inf, core.shape),
            np.broadcast_to(cols - j if col0 + cols < grid.width else inf, core.shape),
        ]
    )
    far = core > reach
    if far.any():
        rr, cc = np.nonzero(far)
        u = (cc + tile.col + 0.5) / coarse - 0.5  # coarse block (i, j) has its centre at (i + 0.5) coarse
        v = (rr + tile.row + 0.5) / coarse - 0.5
        if np.isfinite(coarse_distance).all():
            estimate = bilinear(coarse_distance, u.astype(np.float32), v.astype(np.float32))
        else:  # no nodata cell anywhere in the raster
            estimate = np.full(len(u), np.inf, np.float32)
        core = core.copy()
        core[far] = np.maximum(reach[far], estimate)
    return np.where(np.isfinite(core), core, np.nan).astype(np.float32)
