"""True DSM and orthophoto: the surface sampled at cell centres on one UTM grid, written as GeoTIFFs."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import Affine
from rasterio.windows import Window

from odm_core.artifacts import atomic_path
from odm_core.synthetic.raycast import GROUND, ROOF, Hits
from odm_core.synthetic.surface import surface_colour
from odm_core.synthetic.world import SyntheticWorld

DSM_NODATA = -9999.0
GRID_MARGIN_M = 2.0
_ROWS_PER_CHUNK = 256


@dataclass(frozen=True)
class TruthGrid:
    """A north-up UTM grid: cell (row, col) centre at (west + (col + .5) res, north - (row + .5) res)."""

    west: float
    north: float
    res_m: float
    width: int
    height: int

    @property
    def transform(self) -> Affine:
        return Affine(self.res_m, 0.0, self.west, 0.0, -self.res_m, self.north)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) in UTM metres."""
        return (
            self.west,
            self.north - self.height * self.res_m,
            self.west + self.width * self.res_m,
            self.north,
        )


def truth_grid(world: SyntheticWorld) -> TruthGrid:
    """Grid over the nadir photos' footprints plus a margin, snapped to multiples of the resolution."""
    res = world.opts.resolution_m
    x0, y0, x1, y1 = world.block
    ox, oy = world.utm_origin[:2]
    west = np.floor((ox + x0 - GRID_MARGIN_M) / res) * res
    south = np.floor((oy + y0 - GRID_MARGIN_M) / res) * res
    east = np.ceil((ox + x1 + GRID_MARGIN_M) / res) * res
    north = np.ceil((oy + y1 + GRID_MARGIN_M) / res) * res
    width, height = round((east - west) / res), round((north - south) / res)
    return TruthGrid(float(west), float(north), res, int(width), int(height))


def top_view(world: SyntheticWorld, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Surface height (local z) and colour (N x 3 in [0, 1]) seen straight down at local (x, y)."""
    scene = world.scene
    z = scene.surface_height(x, y)
    building = scene.building_index(x, y)
    roof = building >= 0
    roof &= z > scene.terrain.height(x, y) + 1e-9
    normals = np.zeros((len(x), 3))
    normals[:, 2] = 1.0
    normals[~roof] = scene.terrain.normal(x[~roof], y[~roof])
    hits = Hits(
        t=np.zeros(len(x)),
        points=np.column_stack([x, y, z]),
        normals=normals,
        kind=np.where(roof, ROOF, GROUND),
        building=np.where(roof, building, -1),
        wall_s=np.zeros(len(x)),
    )
    return z, surface_colour(scene, hits, np.full(len(x), world.opts.resolution_m))


def _profile(grid: TruthGrid, epsg: int, count: int, dtype: str, nodata: float | None) -> dict[str, object]:
    return {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": count,
        "dtype": dtype,
        "crs": f"EPSG:{epsg}",
        "transform": grid.transform,
        "nodata": nodata,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        "predictor": 3 if dtype == "float32" else 2,
        "BIGTIFF": "IF_SAFER",
    }


def _rows_view(world: SyntheticWorld, grid: TruthGrid, row0: int) -> tuple[np.ndarray, np.ndarray]:
    """DSM altitudes (rows x width, float32) and RGB (rows x width x 3, uint8) of a band of rows."""
    ox, oy, oz = world.utm_origin
    rows = min(_ROWS_PER_CHUNK, grid.height - row0)
    xs = grid.west + (np.arange(grid.width) + 0.5) * grid.res_m - ox
    ys = grid.north - (np.arange(row0, row0 + rows) + 0.5) * grid.res_m - oy
    x, y = np.meshgrid(xs, ys)
    z, rgb = top_view(world, x.ravel(), y.ravel())
    pix = np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
    return (z + oz).astype(np.float32).reshape(rows, grid.width), pix.reshape(rows, grid.width, 3)


def write_truth_rasters(
    world: SyntheticWorld, dsm_path: Path, ortho_path: Path, workers: int = 1
) -> TruthGrid:
    """Write the true DSM (float32 altitudes) and RGB orthophoto (uint8) on the same grid."""
    grid = truth_grid(world)
    rows_view = partial(_rows_view, world, grid)
    starts = list(range(0, grid.height, _ROWS_PER_CHUNK))
    batches = [starts[i : i + 2 * workers] for i in range(0, len(starts), 2 * workers)]
    dsm_profile = _profile(grid, world.epsg, 1, "float32", DSM_NODATA)
    ortho_profile = _profile(grid, world.epsg, 3, "uint8", None)
    ortho_profile["photometric"] = "RGB"
    with (
        ThreadPoolExecutor(max_workers=workers) as pool,
        atomic_path(dsm_path) as dsm_tmp,
        atomic_path(ortho_path) as ortho_tmp,
        rasterio.open(dsm_tmp, "w", **dsm_profile) as dsm,
        rasterio.open(ortho_tmp, "w", **ortho_profile) as ortho,
    ):
        for batch in batches:  # bounded memory: compute a few bands at once, then write them
            for row0, (z, rgb) in zip(batch, pool.map(rows_view, batch), strict=True):
                window = Window(0, row0, grid.width, len(z))
                dsm.write(z[None], window=window)
                ortho.write(rgb.transpose(2, 0, 1), window=window)
    return grid
