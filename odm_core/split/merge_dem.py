"""Merging the submodels' DEMs (dsm.tif, dtm.tif) into one, block by block.

ODM (`opendm/dem/merge.py` `euclidean_merge_dems`) weights each DEM by its `*.euclideand.tif`, a
whole-raster gdal_proximity map of the distance to nodata, in one process. Here each block computes
that distance itself, on its window plus a halo of DEM_HALO_PX pixels, capped at the halo: the blocks
are independent, run on any worker, and need no euclidean map.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from scipy import ndimage

from odm_core.dem.gridding import NODATA
from odm_core.errors import OdmStageError
from odm_core.raster.geotiff import staging_profile
from odm_core.split.grid import BLOCK_PX, GridSource, MergeBlock, merged_grid, plan_blocks, read_padded
from odm_core.split.write import BATCH_PX, write_merged
from odm_core.worker import MapUnits

DEM_HALO_PX = 128  # the seam fades over this many cells from each DEM's edge


def read_dem(source: GridSource, block: MergeBlock) -> np.ndarray:
    """(rows + 2 halo, cols + 2 halo) float32 of the source around the block, NaN where it has no data
    (its nodata value, non-finite cells, and everything beyond its bounds)."""
    h = block.halo
    z = read_padded(
        source, block.row - h, block.col - h, block.rows + 2 * h, block.cols + 2 * h, [1], np.nan
    )[0]
    with rasterio.open(source.path) as src:
        nodata = src.nodata
    if nodata is not None and np.isfinite(nodata):
        z[z == np.float32(nodata)] = np.nan
    return z


def edge_weight(valid: np.ndarray, halo: int) -> np.ndarray:
    """min(distance in cells to the nearest invalid cell, halo) per cell of `valid` (padded, 2-D bool):
    1 next to a hole or edge, growing to `halo`; 0 where invalid."""
    if valid.all():
        return np.full(valid.shape, float(halo))
    return np.minimum(ndimage.distance_transform_edt(valid), float(halo))


def merge_dem_block(block: MergeBlock) -> np.ndarray:
    """(rows, cols) float32 of the merged DEM over the block; NODATA (-9999) where no source has data.

    Per cell, the mean of the sources that have data there, each weighted by its distance (cells) to
    its own nodata edge, capped at H = block.halo: ODM's euclidean merge, so the seam fades from one
    DEM to the other across the overlap; a cell only one source has keeps its value unchanged. The
    area beyond a source's bounds counts as its nodata (ODM's gdal_proximity ignores it).

    The distance is computed on the block plus a halo of H cells (scipy distance_transform_edt)
    instead of ODM's whole-raster euclidean map. Capped at H this is exact: a cell whose nearest
    nodata cell is within H has it inside the padded window, and a farther one gets H either way. The
    cap only flattens the weights deep inside a source, where both sources of an overlap wider than
    2 H get equal weight: the weights only shape the seam within H of an edge. So every block size
    gives the same raster, bit for bit. Unlike ODM, gap-filled cells are not told apart (ODM's map is
    made before the fill, giving them distance 0). Raises ValueError when the halo is below 1.
    """
    h = block.halo
    if h < 1:
        raise ValueError(f"merge_dem_block: the halo must be at least 1 cell, not {h}")
    core = (slice(h, h + block.rows), slice(h, h + block.cols))
    num = np.zeros((block.rows, block.cols))
    den = np.zeros((block.rows, block.cols))
    count = np.zeros((block.rows, block.cols), np.int32)
    only = np.full((block.rows, block.cols), NODATA, np.float32)
    for source in block.sources:
        z = read_dem(source, block)
        valid = np.isfinite(z)
        if not valid[core].any():
            continue
        w = edge_weight(valid, h)[core]
        zc, vc = z[core], valid[core]
        num += np.where(vc, w * zc, 0.0)
        den += w
        count += vc
        only = np.where(vc, zc, only)
    merged = np.where(count > 1, num / np.where(den > 0, den, 1.0), only)
    return merged.astype(np.float32)


def merge_dems(
    sources: Sequence[Path],
    out: Path,
    map_units: MapUnits,
    cog: bool = True,
    *,
    halo_px: int = DEM_HALO_PX,
    block_px: int = BLOCK_PX,
    batch_px: int = BATCH_PX,
) -> Path:
    """Merge the submodels' DEMs (float, band 1, on one grid: see merged_grid) into `out`: a float32
    COG (cog=True) or tiled GeoTIFF with overviews, nodata -9999, over the union of their bounds.

    merge_dem_block runs per block through `map_units` (serial_map, or a Dask map: the units carry
    paths); one writer streams the results, batch by batch, into a staging GeoTIFF copied atomically
    to `out`. Raises OdmStageError when the grids differ (merged_grid) or a source has no band; on any
    error nothing is left at `out`.
    """
    grid = merged_grid(sources)
    for path in sources:
        with rasterio.open(path) as src:
            if src.count < 1:
                raise OdmStageError(f"{path}: a DEM with no band; re-run the submodel's odm_dem")
    blocks = plan_blocks(grid, block_px, halo=halo_px)
    profile = staging_profile(grid.width, grid.height, grid.crs, grid.transform, 1, "float32", nodata=NODATA)
    return write_merged(
        blocks,
        _block_bands,
        map_units,
        profile,
        out,
        cog=cog,
        compress="DEFLATE",
        predictor=True,
        batch_px=batch_px,
    )


def _block_bands(block: MergeBlock) -> np.ndarray:
    """merge_dem_block as (1, rows, cols), what the writer writes."""
    return merge_dem_block(block)[None]
