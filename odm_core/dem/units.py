"""The DEM's per-tile units of work: raw elevations from the points, then gaps filled and smoothed.

A raw unit reads the points of its tile's box (tile and halo) from the cloud's pieces
(`odm_core.cloud.pieces`, the LAZ read once), so no unit and no process holds the whole cloud or the
whole raster. Units write `.npz` files with a checkpoint
sidecar, like the dense stage's, and carry paths and the grid, never arrays.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from odm_core.artifacts import unit_checkpoint_valid
from odm_core.cloud.pieces import Box, box_points
from odm_core.cloud.smrf import SmrfParams, classify_ground
from odm_core.dem import gridding as dr
from odm_core.dem.euclidean import block_holes, tile_distance
from odm_core.geo.crop import read_polygon
from odm_core.worker import load_arrays, peak_rss_mb, prepare_unit, save_arrays

COARSE = 10  # ODM fills holes on a copy at 10% of the DEM's size
GROUND_CLASS = 2


@dataclass(frozen=True)
class DemUnit:
    """One tile of one raster: `raw` grids the points, `final` fills and smooths (reading `sources`)."""

    kind: str  # "dsm" or "dtm"
    phase: str  # "raw" or "final"
    pieces: tuple[str, ...]  # raw: the cloud's piece files, holding its tile's box (tile_box)
    grid: dr.DemGrid
    tile: dr.Tile
    radii_m: tuple[float, ...]
    smrf: SmrfParams
    sources: tuple[str, ...]  # final: its raw tile, the filled coarse raster (and the coarse hole distance)
    out: str
    key: str
    crop: str = ""  # final, with euclidean: the crop polygon file, if any
    euclidean: bool = False  # final: also the distance to the nearest nodata cell (--dem-euclidean-map)


@dataclass(frozen=True)
class DemUnitResult:
    kind: str
    phase: str
    n_points: int
    n_cells: int
    seconds: float
    peak_rss_mb: float = 0.0


def tile_box(tile: dr.Tile, grid: dr.DemGrid, margin_m: float) -> tuple[str, Box]:
    """The name and bounds of the cloud box a tile's raw unit reads: its tile, `margin_m` around."""
    minx, miny, maxx, maxy = tile.bounds(grid)
    return f"{tile.row}_{tile.col}", (minx - margin_m, miny - margin_m, maxx + margin_m, maxy + margin_m)


def raw_margin_m(kind: str, radii_m: tuple[float, ...], smrf: SmrfParams) -> float:
    """Metres of points around a tile its raw unit needs: the largest search radius, and for a DTM the
    ground classification's window."""
    return max(radii_m) + (smrf.window_m + 2 if kind == "dtm" else 0)


def raw_tile(unit: DemUnit) -> DemUnitResult:
    """Highest point of the cell, else of its nearest points up to the largest radius (DSM), or the
    inverse-distance mean of ground points within each radius (DTM); the smallest radius with points wins."""
    start = time.perf_counter()
    grid, tile = unit.grid, unit.tile
    name, (minx, miny, maxx, maxy) = tile_box(tile, grid, raw_margin_m(unit.kind, unit.radii_m, unit.smrf))
    x, y, z, _ = box_points(unit.pieces, name)
    keep = (x >= minx) & (x < maxx) & (y >= miny) & (y < maxy)  # the box may hold a wider margin
    x, y, z = x[keep], y[keep], z[keep]
    if unit.kind == "dtm" and len(x):
        ground = classify_ground(x, y, z, unit.smrf)
        x, y, z = x[ground], y[ground], z[ground]
    _, _, rows, cols = tile.padded(grid)
    index, inside = dr.cell_index(grid, tile, x, y)
    res = grid.resolution_m
    if unit.kind == "dsm":
        cells = dr.highest((rows, cols), index, z[inside])
        values = dr.highest_nearby(cells, tuple(r / res for r in unit.radii_m))
    else:
        sums = np.bincount(index, weights=z[inside], minlength=rows * cols).reshape(rows, cols)
        counts = np.bincount(index, minlength=rows * cols).reshape(rows, cols)
        values = dr.first_valid([dr.mean_within(sums, counts, r / res) for r in unit.radii_m])
    coarse, holes = coarse_core(values, tile), block_holes(values, tile, COARSE)
    save_arrays(Path(unit.out), unit.key, values=values, coarse=coarse, holes=holes)
    return DemUnitResult(
        unit.kind,
        unit.phase,
        int(inside.sum()),
        int(np.isfinite(values).sum()),
        time.perf_counter() - start,
        peak_rss_mb(),
    )


def coarse_core(values: np.ndarray, tile: dr.Tile) -> np.ndarray:
    """The tile (without halo) at 1/COARSE of its size: the lowest valid cell of each block.

    The coarse copy only fills holes the search radii left. Such holes border tall things (the ground a
    roof or a tree hides from the cameras) far more often than they lie within them, so the lowest value
    fills them; a block mean would spread roofs into their occlusion shadows.
    """
    core = values[tile.core()]
    rows, cols = -(-core.shape[0] // COARSE), -(-core.shape[1] // COARSE)
    padded = np.full((rows * COARSE, cols * COARSE), np.inf, np.float32)
    padded[: core.shape[0], : core.shape[1]] = np.where(np.isnan(core), np.inf, core)
    lowest = padded.reshape(rows, COARSE, cols, COARSE).min(axis=(1, 3))
    lowest[np.isinf(lowest)] = np.nan
    return lowest


def filled_surface(unit: DemUnit, raw: np.ndarray | None = None) -> np.ndarray:
    """The tile with its halo: holes inside the footprint take the filled coarse raster (bilinear), then
    median smoothing (NaN outside the footprint). `raw`: the raw tile (sources[0]) if already read."""
    values = load_arrays(unit.sources[0])["values"] if raw is None else raw
    coarse = load_arrays(unit.sources[1])
    filled, footprint = coarse["filled"], coarse["footprint"]
    row0, col0, rows, cols = unit.tile.padded(unit.grid)
    # the coarse cell (i, j) covers grid cells [i, i + 1) * COARSE: its centre is at (i + 0.5) * COARSE
    r = (np.arange(rows) + row0 + 0.5) / COARSE - 0.5
    c = (np.arange(cols) + col0 + 0.5) / COARSE - 0.5
    map_x, map_y = np.meshgrid(c.astype(np.float32), r.astype(np.float32))
    up = cv2.remap(filled, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    near_x, near_y = np.floor(map_x + 0.5), np.floor(map_y + 0.5)
    inside = cv2.remap(footprint.astype(np.uint8), near_x, near_y, cv2.INTER_NEAREST, borderValue=0) > 0
    hole = np.isnan(values) & inside & np.isfinite(up)
    values = np.where(hole, up, values)
    values[~inside] = np.nan
    return dr.median_smooth(values)


def final_tile(unit: DemUnit) -> DemUnitResult:
    """The finished tile (holes filled, smoothed), without its halo."""
    start = time.perf_counter()
    raw = load_arrays(unit.sources[0])["values"]
    smooth = filled_surface(unit, raw)[unit.tile.core()]
    arrays = {"values": smooth}
    if unit.euclidean:
        crop = read_polygon(Path(unit.crop)) if unit.crop else None
        coarse_distance = load_arrays(unit.sources[2])["distance"]
        arrays["euclidean"] = tile_distance(raw, unit.grid, unit.tile, crop, coarse_distance, COARSE)
    save_arrays(Path(unit.out), unit.key, **arrays)
    return DemUnitResult(
        unit.kind, unit.phase, 0, int(np.isfinite(smooth).sum()), time.perf_counter() - start, peak_rss_mb()
    )


def run_dem_unit(unit: DemUnit) -> DemUnitResult:
    """Run (or reuse) one tile unit; the function Dask workers execute."""
    if unit_checkpoint_valid(Path(unit.out), unit.key):
        return DemUnitResult(unit.kind, unit.phase, -1, -1, 0.0)
    prepare_unit()
    return raw_tile(unit) if unit.phase == "raw" else final_tile(unit)
