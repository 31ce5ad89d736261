"""The `odm_dem` stage: DSM and DTM as Cloud-Optimized GeoTIFFs from the georeferenced cloud (ODM's name).

Planned here (the grid, its tiles, two units per tile and raster), the units run wherever the caller sends
them (Dask workers through the tasks layer), the coarse hole-filling copy is made here between the two
phases, and the tiles are streamed into `odm_dem/dsm.tif` / `dtm.tif` one window at a time.
"""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.windows
from rasterio.windows import Window
from shapely.geometry.base import BaseGeometry

from odm_core.artifacts import sha256_text
from odm_core.cloud.pieces import CloudPiece, PieceResult, plan_pieces, run_cloud_piece
from odm_core.cloud.smrf import SmrfParams
from odm_core.dem import gridding as dr
from odm_core.dem.euclidean import coarse_hole_distance
from odm_core.dem.surface import (
    TILE_PX,
    capped_resolution_m,
    cloud_extent,
    coarse_grid,
    fill_coarse,
    radius_steps,
    raster_crs,
)
from odm_core.dem.units import COARSE, DemUnit, DemUnitResult, raw_margin_m, run_dem_unit, tile_box
from odm_core.geo.crop import read_polygon, window_mask
from odm_core.layout import ProjectTree
from odm_core.options import DemOptions
from odm_core.raster.geotiff import staging_profile, write_geotiff
from odm_core.raster.relief import write_colored_hillshade
from odm_core.raster.xyz_tiles import write_xyz_tiles
from odm_core.worker import MapUnits, load_arrays, save_arrays, serial_map

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemPlan:
    kinds: tuple[str, ...]
    grid: dr.DemGrid | None
    raw: tuple[DemUnit, ...]
    final: tuple[DemUnit, ...]
    crs_wkt: str
    opts: DemOptions = DemOptions()  # the output options: --cog, --tiles, --dem-euclidean-map
    crop: str = ""  # the crop polygon file (odm_georeferencing's bounds.gpkg), "" without one
    pieces: tuple[CloudPiece, ...] = ()  # the cloud read once, cut into the raw units' boxes

    @property
    def n_units(self) -> int:
        return len(self.pieces) + len(self.raw) + len(self.final)


@dataclass(frozen=True)
class DemResult:
    kinds: tuple[str, ...]
    resolution_m: float
    width: int
    height: int
    n_tiles: int
    seconds_in_units: float
    worker_peak_rss_mb: float
    outputs: tuple[Path, ...]

    def summary(self) -> list[str]:
        """The run summary's lines for this stage (none when no DEM was asked for)."""
        if not self.kinds:
            return []
        return [
            f"odm_dem: {' and '.join(k.upper() for k in self.kinds)} at {100 * self.resolution_m:.1f} cm, "
            f"{self.width}x{self.height} cells in {self.n_tiles} tile(s); worker peak memory "
            f"{self.worker_peak_rss_mb:.0f} MiB"
        ]


def plan_odm_dem(tree: ProjectTree, opts: DemOptions, key: str) -> DemPlan:
    """The grid over the cloud and one raw and one final unit per tile and raster (--dsm, --dtm)."""
    kinds = tuple(k for k in ("dsm", "dtm") if getattr(opts, k))
    if not kinds:
        return DemPlan((), None, (), (), "", opts)
    laz = tree.georeferenced_model_laz
    bounds, crs = cloud_extent(laz, "grid into a DEM")
    grid = dr.DemGrid.around(*bounds, capped_resolution_m(opts.dem_resolution, tree, opts.ignore_gsd))
    radii = radius_steps(tree, opts.dem_gapfill_steps, grid.resolution_m)
    halo = math.ceil(max(radii) / grid.resolution_m) + 2 * dr.MEDIAN_PASSES + 1
    smrf = SmrfParams(opts.smrf_scalar, opts.smrf_slope, opts.smrf_threshold, opts.smrf_window)
    assert TILE_PX % COARSE == 0
    bounds_gpkg = tree.georeferenced_model_bounds_gpkg
    crop = str(bounds_gpkg) if bounds_gpkg.is_file() else ""
    euclidean = opts.dem_euclidean_map
    tiles = list(dr.tiles(grid, TILE_PX, halo))
    margin_m = max(raw_margin_m(kind, radii, smrf) for kind in kinds)
    pieces = plan_pieces(laz, tuple(tile_box(t, grid, margin_m) for t in tiles), tree.dem_tiles, key)
    files = tuple(p.out for p in pieces)
    raw, final = [], []
    for kind in kinds:
        for tile in tiles:
            name = f"{kind}_{tile.row}_{tile.col}"
            unit_key = sha256_text(f"{key}|{kind}|{tile}")
            raw_out = str(tree.dem_tiles / f"{name}.raw.npz")
            raw.append(DemUnit(kind, "raw", files, grid, tile, radii, smrf, (), raw_out, unit_key))
            sources = (raw_out, str(tree.dem_tiles / f"{kind}.coarse.npz"), _holes_path(tree, kind))
            final_out = str(tree.dem_tiles / f"{name}.final.npz")
            final.append(
                DemUnit(
                    kind, "final", (), grid, tile, radii, smrf, sources, final_out, unit_key, crop, euclidean
                )
            )
    return DemPlan(kinds, grid, tuple(raw), tuple(final), crs, opts, crop, pieces)


def _holes_path(tree: ProjectTree, kind: str) -> str:
    return str(tree.dem_tiles / f"{kind}.holes.npz")


def fill_dem_coarse(tree: ProjectTree, plan: DemPlan, kind: str) -> None:
    """fill_coarse for one of the stage's rasters."""
    assert plan.grid is not None
    raw = [u for u in plan.raw if u.kind == kind]
    # the DEM stays nodata beyond the cloud's footprint (the crop's hull may reach further): lowest-value
    # filling is right beside tall things, not for extrapolating far from any point
    fill_coarse(plan.grid, raw, tree.dem_tiles / f"{kind}.coarse.npz", plan.final[0].key, kind.upper(), None)
    if plan.opts.dem_euclidean_map:
        holes = coarse_grid(plan.grid, raw, "holes", False)
        crop = read_polygon(Path(plan.crop), plan.crs_wkt) if plan.crop else None
        distance = coarse_hole_distance(holes, plan.grid, crop, COARSE)
        save_arrays(Path(_holes_path(tree, kind)), plan.final[0].key, distance=distance)


def finish_odm_dem(
    tree: ProjectTree, plan: DemPlan, results: Sequence[DemUnitResult | PieceResult]
) -> DemResult:
    """Stream each raster's final tiles into a tiled GeoTIFF, cropped, then copy it as a COG (or a
    GeoTIFF with overviews: --no-cog); the same for its euclidean map with --dem-euclidean-map; with
    --tiles, XYZ tiles of its colour-relief hillshade too. Outputs not asked for are removed."""
    outputs = []
    crop = read_polygon(Path(plan.crop), plan.crs_wkt) if plan.crop else None
    for kind in plan.kinds:
        outputs.append(write_cog(tree, plan, kind, "values", tree.dem_tif(kind), crop))
        if plan.opts.dem_euclidean_map:
            outputs.append(write_cog(tree, plan, kind, "euclidean", tree.dem_euclidean(kind), None))
        if plan.opts.tiles and not plan.crs_wkt:
            log.warning("--tiles: %s has no CRS (not georeferenced); no XYZ tiles made", tree.dem_tif(kind))
        elif plan.opts.tiles:
            relief = write_colored_hillshade(tree.dem_tif(kind), tree.dem_tiles / f"{kind}.relief.tif")
            outputs += write_xyz_tiles(relief, dem_tiles_dir(tree, kind)).files
    for kind in ("dsm", "dtm"):
        if kind not in plan.kinds:  # an earlier run's, with other options: not a product of this one
            tree.dem_tif(kind).unlink(missing_ok=True)
        if not plan.opts.dem_euclidean_map or kind not in plan.kinds:
            tree.dem_euclidean(kind).unlink(missing_ok=True)
        if not (plan.opts.tiles and kind in plan.kinds):
            shutil.rmtree(dem_tiles_dir(tree, kind), ignore_errors=True)  # stale: options changed
    shutil.rmtree(tree.dem_tiles, ignore_errors=True)
    grid = plan.grid
    return DemResult(
        kinds=plan.kinds,
        resolution_m=grid.resolution_m if grid else 0.0,
        width=grid.width if grid else 0,
        height=grid.height if grid else 0,
        n_tiles=len(plan.final) // max(1, len(plan.kinds)),
        seconds_in_units=sum(r.seconds for r in results),
        worker_peak_rss_mb=max((r.peak_rss_mb for r in results), default=0.0),
        outputs=tuple(outputs),
    )


def dem_tiles_dir(tree: ProjectTree, kind: str) -> Path:
    return tree.dsm_tiles if kind == "dsm" else tree.dtm_tiles


def write_cog(
    tree: ProjectTree, plan: DemPlan, kind: str, layer: str, out: Path, crop: BaseGeometry | None
) -> Path:
    """One layer ("values" or "euclidean") of a raster's final tiles as a float32 COG; cells outside
    the crop polygon, if given, become nodata (masked window by window)."""
    assert plan.grid is not None
    grid = plan.grid
    crs = raster_crs(plan.crs_wkt)
    profile = staging_profile(grid.width, grid.height, crs, grid.transform, 1, "float32", nodata=dr.NODATA)
    staging = tree.dem_tiles / f"{kind}.{layer}.staging.tif"
    with rasterio.open(staging, "w", **profile) as dst:
        for unit in plan.final:
            if unit.kind == kind:
                t = unit.tile
                window = Window(t.col, t.row, t.cols, t.rows)
                values = load_arrays(unit.out)[layer]
                keep = np.isfinite(values)
                if crop is not None:
                    keep &= window_mask(
                        crop, rasterio.windows.transform(window, grid.transform), values.shape
                    )
                dst.write(np.where(keep, values, dr.NODATA).astype(np.float32), 1, window=window)
    return write_geotiff(staging, out, plan.opts.cog, "DEFLATE", predictor=True)


def run(tree: ProjectTree, opts: DemOptions, key: str, map_units: MapUnits = serial_map) -> DemResult:
    """The stage in one process (what tests, benchmarks and scripts call): plan, the cloud's pieces and
    raw tiles through `map_units`, the coarse fills, final tiles, COGs. `key` keys the units' checkpoints."""
    plan = plan_odm_dem(tree, opts, key)
    results = map_units(run_cloud_piece, plan.pieces) + map_units(run_dem_unit, plan.raw)
    for kind in plan.kinds:
        fill_dem_coarse(tree, plan, kind)
    return finish_odm_dem(tree, plan, results + map_units(run_dem_unit, plan.final))
