"""The gridded surface the DEM and orthophoto stages share: resolution cap, extent, search radii, the
coarse hole-filling copy (ODM: opendm/dem/commands.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import laspy
import numpy as np
from rasterio.crs import CRS
from rasterio.fill import fillnodata
from scipy import ndimage
from shapely.geometry.base import BaseGeometry

from odm_core.cloud.stats import recorded_sampling_m, recorded_spacing_m
from odm_core.dem import gridding as dr
from odm_core.dem.units import COARSE, DemUnit
from odm_core.errors import OdmStageError
from odm_core.geo.crop import header_extent, window_mask
from odm_core.layout import ProjectTree
from odm_core.sfm.reconstruction import average_gsd_cm
from odm_core.worker import load_arrays, save_arrays

# Cells a side of a DEM or orthophoto tile unit (ODM's max_tile_size is 4096): what bounds a unit's memory
# on any survey size; a multiple of COARSE so coarse blocks line up across tiles.
TILE_PX = 2000
GSD_ERROR = 0.1  # ODM's gsd_error_estimate: the estimated GSD may be 10% too coarse
FILL_SMOOTHING = 3  # GDAL fillnodata smoothing passes: softens the fill's straight streaks
FOOTPRINT_CLOSE_PX = 3  # coarse cells: gaps narrower than this between data are inside the footprint


def capped_resolution_m(resolution_cm: float, tree: ProjectTree, ignore_gsd: bool) -> float:
    """A resolution option (cm) in metres, no finer than 0.9 x the estimated GSD unless --ignore-gsd
    (ODM's cap_resolution; used by odm_dem and odm_orthophoto)."""
    if not ignore_gsd and tree.reconstruction_json.is_file():
        gsd = average_gsd_cm(json.loads(tree.reconstruction_json.read_text())[0])
        if gsd is not None:
            resolution_cm = max(resolution_cm, gsd * (1.0 - GSD_ERROR))
    return resolution_cm / 100.0


def cloud_extent(laz: Path, purpose: str) -> tuple[tuple[float, float, float, float], str]:
    """(minx, miny, maxx, maxy) and CRS (as WKT; "" for a model in a local frame) of the georeferenced
    cloud, read from its header; a clear error when it has no points."""
    with laspy.open(laz) as reader:
        bounds, crs = header_extent(reader.header, laz, purpose)
    return bounds, crs.to_wkt() if crs is not None else ""


def raster_crs(crs_wkt: str) -> CRS | None:
    """A raster's CRS from cloud_extent's WKT; None (a GeoTIFF without CRS) for a local frame."""
    return CRS.from_wkt(crs_wkt) if crs_wkt else None


def radius_steps(tree: ProjectTree, steps: int, resolution_m: float) -> tuple[float, ...]:
    """ODM's get_dem_radius_steps: the cloud's point spacing, then x sqrt(2) per step. The first radius is
    at least one cell, and at least the depth maps' sampling distance on the ground: views' points
    interleave, so a dense cloud's nearest-neighbour spacing is finer than the gaps it leaves."""
    stats = tree.filtered_point_cloud_stats
    spacing = recorded_spacing_m(stats) or resolution_m / 2.0
    radii = [max(spacing, recorded_sampling_m(stats) or 0.0, resolution_m)]
    for _ in range(max(1, steps) - 1):
        radii.append(radii[-1] * math.sqrt(2))
    return tuple(radii)


def coarse_grid(grid: dr.DemGrid, raw: list[DemUnit], name: str, empty: float | bool) -> np.ndarray:
    """The raster's 1/COARSE copy of one of the raw tiles' coarse arrays, tile by tile."""
    dtype = np.float32 if isinstance(empty, float) else bool
    out = np.full((-(-grid.height // COARSE), -(-grid.width // COARSE)), empty, dtype)
    for unit in raw:
        part = load_arrays(unit.out)[name]
        r, c = unit.tile.row // COARSE, unit.tile.col // COARSE
        out[r : r + part.shape[0], c : c + part.shape[1]] = part
    return out


def fill_coarse(
    grid: dr.DemGrid, raw: list[DemUnit], out: Path, key: str, what: str, crop: BaseGeometry | None
) -> None:
    """The raster at 1/COARSE of its size from its raw tiles, its footprint, and its holes filled.

    The footprint is where the cloud has points (gaps closed, holes filled) and, given `crop`, all of
    the crop area too (the orthophoto's surface: ODM's orthophoto covers its whole crop area).
    """
    coarse = coarse_grid(grid, raw, "coarse", np.nan)
    data = np.isfinite(coarse)
    if not data.any():
        raise OdmStageError(f"no {what} cell has a point: the cloud has none of the kind needed")
    closed = ndimage.binary_closing(np.pad(data, FOOTPRINT_CLOSE_PX), dr.disk(FOOTPRINT_CLOSE_PX))
    footprint = ndimage.binary_fill_holes(closed)[
        FOOTPRINT_CLOSE_PX:-FOOTPRINT_CLOSE_PX, FOOTPRINT_CLOSE_PX:-FOOTPRINT_CLOSE_PX
    ]
    if crop is not None:
        footprint |= window_mask(crop, grid.coarse_transform(COARSE), footprint.shape)
    filled = fillnodata(
        np.where(data, coarse, 0).astype(np.float32),
        mask=data.astype(np.uint8),
        max_search_distance=float(max(coarse.shape)),
        smoothing_iterations=FILL_SMOOTHING,
    )
    lowest = ndimage.grey_erosion(filled, size=(3, 3), mode="nearest")  # see dem_tiles.coarse_core
    save_arrays(out, key, filled=lowest, footprint=footprint)
