"""The `odm_orthophoto` stage: the photos orthorectified onto the surface, as an RGBA GeoTIFF (ODM's name).

The surface is gridded at the orthophoto's resolution from the georeferenced cloud, tile by tile with the
DSM's own units (`dem_tiles`), with a wider halo so that a roof just outside a tile still hides the ground
behind it. Each orthophoto tile unit then finishes its surface and renders it (`ortho_render`). With
--fast-orthophoto the cloud is the sparse one, as in ODM.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pycolmap
import rasterio
import rasterio.shutil
from rasterio import windows
from rasterio.windows import Window
from shapely.geometry.base import BaseGeometry

from odm_core.artifacts import atomic_path, sha256_text, unit_checkpoint_valid
from odm_core.camera.reconstruction import view_cameras
from odm_core.camera.view import ViewCamera
from odm_core.cloud.pieces import CloudPiece, plan_pieces, run_cloud_piece
from odm_core.cloud.smrf import SmrfParams
from odm_core.dem import gridding as dr
from odm_core.dem.surface import (
    TILE_PX,
    capped_resolution_m,
    cloud_extent,
    fill_coarse,
    radius_steps,
    raster_crs,
)
from odm_core.dem.units import DemUnit, filled_surface, raw_margin_m, run_dem_unit, tile_box
from odm_core.errors import OdmStageError
from odm_core.geo.crop import read_polygon, window_mask, write_polygon
from odm_core.geo.georef import GeoReference
from odm_core.layout import ProjectTree
from odm_core.options import OrthophotoOptions
from odm_core.ortho.cutline import orthophoto_cutline
from odm_core.ortho.render import SurfaceWindow, render_surface
from odm_core.raster.geotiff import RGBA, rgba_profile, write_geotiff, write_kmz
from odm_core.raster.xyz_tiles import write_xyz_tiles
from odm_core.sfm.reconstruction import average_gsd_cm
from odm_core.worker import MapUnits, load_arrays, peak_rss_mb, prepare_unit, save_arrays, serial_map

OCCLUSION_HALO_M = 8.0  # surface around a tile that can still hide part of it

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OrthoUnit:
    surface: DemUnit  # its sources: the raw surface tile and the filled coarse copy
    views: tuple[ViewCamera, ...]
    offset: tuple[float, float, float]  # UTM of the model frame's origin
    photo_px_m: float
    out: str
    key: str


@dataclass(frozen=True)
class OrthoUnitResult:
    n_photos: int
    n_pixels: int
    seconds: float
    peak_rss_mb: float


@dataclass(frozen=True)
class OrthoPlan:
    grid: dr.DemGrid
    surface: tuple[DemUnit, ...]
    tiles: tuple[OrthoUnit, ...]
    crs_wkt: str
    coarse: str
    crop: str = ""  # the crop polygon file (odm_georeferencing's bounds.gpkg), "" without one
    pieces: tuple[CloudPiece, ...] = ()  # the cloud read once, cut into the surface units' boxes


@dataclass(frozen=True)
class OrthophotoResult:
    resolution_m: float
    width: int
    height: int
    n_tiles: int
    valid_share: float
    worker_peak_rss_mb: float
    outputs: tuple[Path, ...]

    def summary(self) -> list[str]:
        """The run summary's lines for this stage (none with --skip-orthophoto)."""
        if not self.outputs:
            return []
        return [
            f"odm_orthophoto: {self.width}x{self.height} px at {100 * self.resolution_m:.1f} cm, "
            f"{100 * self.valid_share:.0f}% covered, in {self.n_tiles} tile(s); worker peak memory "
            f"{self.worker_peak_rss_mb:.0f} MiB"
        ]


def skipped(tree: ProjectTree) -> OrthophotoResult:
    """--skip-orthophoto: nothing is made, and an orthophoto of an earlier run is removed (it no longer
    follows the options)."""
    for stale in (tree.orthophoto_tif, tree.orthophoto_png, tree.orthophoto_kmz, tree.orthophoto_cutline):
        stale.unlink(missing_ok=True)
    shutil.rmtree(tree.orthophoto_tiles, ignore_errors=True)
    return OrthophotoResult(0.0, 0, 0, 0, 0.0, 0.0, ())


def remove_stale_outputs(tree: ProjectTree, opts: OrthophotoOptions) -> None:
    """Remove the extra outputs of an earlier run whose options are now off."""
    for wanted, path in (
        (opts.orthophoto_png, tree.orthophoto_png),
        (opts.orthophoto_kmz, tree.orthophoto_kmz),
        (opts.orthophoto_cutline, tree.orthophoto_cutline),
    ):
        if not wanted:
            path.unlink(missing_ok=True)
    if not opts.tiles:
        shutil.rmtree(tree.orthophoto_tiles, ignore_errors=True)


def plan_odm_orthophoto(tree: ProjectTree, opts: OrthophotoOptions, key: str) -> OrthoPlan:
    laz = tree.georeferenced_model_laz
    bounds, crs = cloud_extent(laz, "orthorectify the photos onto")
    grid = dr.DemGrid.around(*bounds, capped_resolution_m(opts.orthophoto_resolution, tree, opts.ignore_gsd))
    gsd_cm = average_gsd_cm(json.loads(tree.reconstruction_json.read_text())[0])
    radii = radius_steps(tree, 3, grid.resolution_m)
    halo = math.ceil(OCCLUSION_HALO_M / grid.resolution_m) + math.ceil(max(radii) / grid.resolution_m) + 5
    views = tuple(view_cameras(pycolmap.Reconstruction(tree.colmap_model), tree.images, "lowest"))
    georef = GeoReference.of_model(tree.coords_txt, tree.reference_lla_json)
    offset = tuple(float(v) for v in georef.offset) if georef is not None else (0.0, 0.0, 0.0)
    photo_px_m = (gsd_cm or 100 * grid.resolution_m) / 100.0
    coarse = str(tree.orthophoto_work / "surface.coarse.npz")
    grid_tiles = list(dr.tiles(grid, TILE_PX, halo))
    boxes = tuple(tile_box(t, grid, raw_margin_m("dsm", radii, SmrfParams())) for t in grid_tiles)
    pieces = plan_pieces(laz, boxes, tree.orthophoto_work, key)
    files = tuple(p.out for p in pieces)
    surface, tiles = [], []
    for tile in grid_tiles:
        name = f"{tile.row}_{tile.col}"
        unit_key = sha256_text(f"{key}|{tile}")
        raw = str(tree.orthophoto_work / f"surface_{name}.raw.npz")
        unit = DemUnit("dsm", "raw", files, grid, tile, radii, SmrfParams(), (), raw, unit_key)
        surface.append(unit)
        final = DemUnit("dsm", "final", (), grid, tile, radii, SmrfParams(), (raw, coarse), "", unit_key)
        out = str(tree.orthophoto_work / f"ortho_{name}.npz")
        tiles.append(OrthoUnit(final, views, offset, photo_px_m, out, unit_key))  # type: ignore[arg-type]
    bounds_gpkg = tree.georeferenced_model_bounds_gpkg
    crop = str(bounds_gpkg) if bounds_gpkg.is_file() else ""
    return OrthoPlan(grid, tuple(surface), tuple(tiles), crs, coarse, crop, pieces)


def fill_surface(plan: OrthoPlan) -> None:
    crop = read_polygon(Path(plan.crop), plan.crs_wkt) if plan.crop else None
    fill_coarse(plan.grid, list(plan.surface), Path(plan.coarse), plan.tiles[0].key, "surface", crop)


def render_tile(unit: OrthoUnit) -> OrthoUnitResult:
    """Finish the tile's surface, render every photo that sees it, keep the tile without its halo (RGBA)."""
    start = time.perf_counter()
    if unit_checkpoint_valid(Path(unit.out), unit.key):
        return OrthoUnitResult(-1, -1, 0.0, peak_rss_mb())
    prepare_unit()
    grid, tile = unit.surface.grid, unit.surface.tile
    row0, col0, _, _ = tile.padded(grid)
    res = grid.resolution_m
    surface = SurfaceWindow(
        filled_surface(unit.surface) - unit.offset[2],
        grid.west + (col0 + 0.5) * res - unit.offset[0],
        grid.north - (row0 + 0.5) * res - unit.offset[1],
        res,
    )
    halo_px = math.ceil(OCCLUSION_HALO_M / res)
    core, n_views = render_surface(surface, tile.core(), list(unit.views), unit.photo_px_m, halo_px)
    save_arrays(Path(unit.out), unit.key, rgba=core)
    return OrthoUnitResult(n_views, int((core[..., 3] > 0).sum()), time.perf_counter() - start, peak_rss_mb())


def finish_odm_orthophoto(
    tree: ProjectTree, plan: OrthoPlan, opts: OrthophotoOptions, results: list[OrthoUnitResult]
) -> OrthophotoResult:
    """Stream the tiles into a tiled RGBA GeoTIFF, cropped (alpha 0 outside the crop polygon), then copy it
    as a COG (or a GeoTIFF with
    overviews: --no-cog) in the chosen compression; then the extra outputs asked for (PNG, KMZ, XYZ
    tiles, cutline)."""
    grid = plan.grid
    crop = read_polygon(Path(plan.crop), plan.crs_wkt) if plan.crop else None
    staging = tree.orthophoto_work / "staging.tif"
    profile = rgba_profile(grid.width, grid.height, raster_crs(plan.crs_wkt), grid.transform)
    valid = 0
    with rasterio.open(staging, "w", **profile) as dst:
        dst.colorinterp = RGBA
        for unit in plan.tiles:
            rgba = load_arrays(unit.out)["rgba"]
            t = unit.surface.tile
            window = Window(t.col, t.row, t.cols, t.rows)
            if crop is not None:
                rgba[~window_mask(crop, windows.transform(window, grid.transform), rgba.shape[:2])] = 0
            dst.write(np.moveaxis(rgba, 2, 0), window=window)
            valid += int((rgba[..., 3] > 0).sum())
    outputs = [write_geotiff(staging, tree.orthophoto_tif, opts.cog, opts.orthophoto_compression)]
    if opts.orthophoto_png:
        with atomic_path(tree.orthophoto_png) as tmp:
            rasterio.shutil.copy(tree.orthophoto_tif, tmp, driver="PNG")
        outputs.append(tree.orthophoto_png)
    if (opts.orthophoto_kmz or opts.tiles) and not plan.crs_wkt:
        log.warning("--orthophoto-kmz/--tiles: the orthophoto has no CRS (not georeferenced); skipped")
    elif opts.orthophoto_kmz:
        outputs.append(write_kmz(tree.orthophoto_tif, tree.orthophoto_kmz))
    if opts.tiles and plan.crs_wkt:
        outputs += write_xyz_tiles(tree.orthophoto_tif, tree.orthophoto_tiles).files
    if opts.orthophoto_cutline:
        outputs.append(write_cutline(tree, plan, crop))
    remove_stale_outputs(tree, opts)
    shutil.rmtree(tree.orthophoto_work, ignore_errors=True)
    return OrthophotoResult(
        resolution_m=grid.resolution_m,
        width=grid.width,
        height=grid.height,
        n_tiles=len(plan.tiles),
        valid_share=valid / max(1, grid.width * grid.height),
        worker_peak_rss_mb=max((r.peak_rss_mb for r in results), default=0.0),
        outputs=tuple(outputs),
    )


def write_cutline(tree: ProjectTree, plan: OrthoPlan, crop: BaseGeometry | None) -> Path:
    """odm_orthophoto/cutline.gpkg from the finished orthophoto, inside the crop polygon."""
    if crop is None:
        raise OdmStageError(
            f"--orthophoto-cutline needs the crop polygon {tree.georeferenced_model_bounds_gpkg}: "
            "re-run from odm_georeferencing (it is written whenever --crop is above 0)"
        )
    return write_polygon(tree.orthophoto_cutline, orthophoto_cutline(tree.orthophoto_tif, crop), plan.crs_wkt)


def run(
    tree: ProjectTree, opts: OrthophotoOptions, key: str, map_units: MapUnits = serial_map
) -> OrthophotoResult:
    """The stage in one process (what tests, benchmarks and scripts call): plan, surface tiles through
    `map_units`, the coarse fill, rendered tiles, the GeoTIFF. `key` keys the units' checkpoints."""
    if opts.skip_orthophoto:
        return skipped(tree)
    plan = plan_odm_orthophoto(tree, opts, key)
    map_units(run_cloud_piece, plan.pieces)
    map_units(run_dem_unit, plan.surface)
    fill_surface(plan)
    return finish_odm_orthophoto(tree, plan, opts, map_units(render_tile, plan.tiles))
