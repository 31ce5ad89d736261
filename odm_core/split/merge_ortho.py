"""Merging the submodels' orthophotos into one, block by block: colour balanced, feathered at cutlines.

ODM (`opendm/orthophoto.py` `merge`, from rio-merge-rgba) fills each block naively (the first submodel
wins), alpha-blends the feathered rasters over it, then the cut ones (a 20 px blend at each submodel's
cutline), in one process and with no colour matching (ODM #989). Here the cutlines are the Voronoi
edges between the submodels' core photos, the blend is a ramp across them, the colours are balanced by
colour_gains first, and the blocks run on any worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window
from scipy.spatial import cKDTree

from odm_core.errors import OdmStageError
from odm_core.raster.geotiff import RGBA, rgba_profile
from odm_core.split.colour import colour_gains
from odm_core.split.grid import BLOCK_PX, MergeBlock, merged_grid, plan_blocks, read_padded
from odm_core.split.write import BATCH_PX, write_merged
from odm_core.worker import MapUnits

FEATHER_M = 5.0  # the blend across a cutline spans about this many metres (ODM: 20 px)


@dataclass(frozen=True)
class OrthoBlock:
    """A block of the orthophoto merge: the grid window and its sources (paths), with, per source in
    block.sources' order, its core photo positions ((n_i, 2) x, y in the raster's CRS) and its
    (3,) red, green, blue gains; the feather width in metres."""

    block: MergeBlock
    cores_xy_m: tuple[np.ndarray, ...]
    gains: tuple[tuple[float, float, float], ...]
    feather_m: float

    @property
    def window(self) -> Window:
        return self.block.window

    @property
    def pixels(self) -> int:
        return self.block.pixels


def pixel_centres(block: MergeBlock, mask: np.ndarray) -> np.ndarray:
    """(n, 2) x, y of the centres of the block's pixels where `mask` ((rows, cols) bool) is set."""
    rows, cols = np.nonzero(mask)
    g = block.grid
    x = g.west + (block.col + cols + 0.5) * g.res_x
    y = g.north - (block.row + rows + 0.5) * g.res_y
    return np.column_stack([x, y])


def feather_ramps(unit: OrthoBlock, covered: np.ndarray) -> np.ndarray:
    """(K, rows, cols) ramp_i = clip(1 - (d_i - d_min) / feather_m, 0, 1) of the block's K sources,
    where d_i is the distance (m) from the pixel centre to source i's nearest core photo and d_min the
    least d_i among the sources covering the pixel (covered: (K, rows, cols) bool). 1 where one source
    covers a pixel or none does: there is nothing to blend, and no k-d tree is queried."""
    ramps = np.ones(covered.shape)
    multi = covered.sum(axis=0) > 1
    if not multi.any():
        return ramps
    xy = pixel_centres(unit.block, multi)
    d = np.stack([cKDTree(c).query(xy)[0] for c in unit.cores_xy_m])  # (K, n) metres
    d = np.where(covered[:, multi], d, np.inf)
    ramps[:, multi] = np.clip(1.0 - (d - d.min(axis=0)) / unit.feather_m, 0.0, 1.0)  # inf -> 0
    return ramps


def merge_ortho_block(block: OrthoBlock) -> np.ndarray:
    """(4, rows, cols) uint8 RGBA of the merged orthophoto over the block.

    Each source's colour, times its per-channel gain, weighted by alpha_i / 255 x ramp_i (feather_ramps:
    1 for the source whose core photo is nearest, falling to 0 feather_m metres farther): a feathered
    blend across the Voronoi cutline between the submodels' core photos, each source alone deep inside
    its own cell (ODM instead blends its cut rasters over feathered ones, 20 px at the cutline). Alpha is
    255 wherever any source has alpha > 0, else 0 (colour 0 there). Rounded to the nearest grey level.
    """
    b = block.block
    rgba = np.stack([read_padded(s, b.row, b.col, b.rows, b.cols, [1, 2, 3, 4], 0) for s in b.sources])
    covered = rgba[:, 3] > 0
    weights = rgba[:, 3] / 255.0 * feather_ramps(block, covered)  # (K, rows, cols)
    colour = np.zeros((3, b.rows, b.cols))
    for w, source, gain in zip(weights, rgba, block.gains, strict=True):
        colour += w * source[:3] * np.asarray(gain, float)[:, None, None]
    total = weights.sum(axis=0)
    colour /= np.where(total > 0, total, 1.0)
    out = np.zeros((4, b.rows, b.cols), np.uint8)
    out[:3] = np.clip(np.rint(colour), 0, 255)
    out[3] = np.where(covered.any(axis=0), 255, 0)
    return out


def check_cores(sources: Sequence[Path], cores_xy_m: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The core positions as (n_i, 2) float arrays, one per source; raises OdmStageError otherwise."""
    if len(cores_xy_m) != len(sources):
        raise OdmStageError(
            f"merge: {len(cores_xy_m)} sets of core photo positions for {len(sources)} orthophotos"
        )
    cores = [np.asarray(c, float) for c in cores_xy_m]
    for path, c in zip(sources, cores, strict=True):
        if c.ndim != 2 or c.shape[1] != 2 or len(c) == 0 or not np.isfinite(c).all():
            raise OdmStageError(
                f"{path}: its submodel's core photo positions are {c.shape}, not (n >= 1, 2) finite x, y"
            )
        with rasterio.open(path) as src:
            if src.count != 4 or src.dtypes[0] != "uint8":
                raise OdmStageError(
                    f"{path}: not an 8-bit RGBA orthophoto ({src.count} bands of {src.dtypes[0]}); "
                    "re-run the submodel's odm_orthophoto"
                )
    return cores


def merge_orthophotos(
    sources: Sequence[Path],
    cores_xy_m: Sequence[np.ndarray],
    out: Path,
    map_units: MapUnits,
    feather_m: float = FEATHER_M,
    cog: bool = True,
    *,
    gains: np.ndarray | None = None,
    compress: str = "DEFLATE",
    block_px: int = BLOCK_PX,
    batch_px: int = BATCH_PX,
) -> Path:
    """Merge the submodels' RGBA orthophotos (uint8, alpha band 4, on one grid: see merged_grid) into
    `out`, a COG (cog=True) or tiled GeoTIFF with overviews, over the union of their bounds.

    cores_xy_m: per source, (n_i, 2) x, y (raster CRS) of its submodel's own photos, without the overlap
    band's. gains: (K, 3) per source and channel, colour_gains(sources) when None (np.ones((K, 3)) turns
    the balance off). merge_ortho_block runs per block through `map_units` (serial_map or a Dask map);
    one writer streams the results, batch by batch, into a staging GeoTIFF copied atomically to `out`.
    Raises OdmStageError for mismatched grids, sources that are not RGBA uint8, or bad core positions;
    on any error nothing is left at `out`.
    """
    if feather_m <= 0:
        raise ValueError(f"feather_m must be positive, not {feather_m}")
    grid = merged_grid(sources)
    cores = check_cores(sources, cores_xy_m)
    k_gains = colour_gains(sources) if gains is None else np.asarray(gains, float)
    if k_gains.shape != (len(sources), 3):
        raise ValueError(f"gains are {k_gains.shape}, not ({len(sources)}, 3)")
    units = [
        OrthoBlock(
            block,
            tuple(cores[s.index] for s in block.sources),
            tuple((float(g[0]), float(g[1]), float(g[2])) for g in (k_gains[s.index] for s in block.sources)),
            feather_m,
        )
        for block in plan_blocks(grid, block_px)
    ]
    profile = rgba_profile(grid.width, grid.height, grid.crs, grid.transform)
    return write_merged(
        units,
        merge_ortho_block,
        map_units,
        profile,
        out,
        cog=cog,
        compress=compress,
        predictor=False,
        batch_px=batch_px,
        colorinterp=RGBA,
    )
