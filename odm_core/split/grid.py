"""The merged raster's grid and its blocks: what the DEM and orthophoto merges share.

The submodels of a split run write their DEMs and orthophotos on one pixel grid (the parent fixes the
resolution and the georeference), so merging needs no resampling: every source is a whole-pixel offset
into the union of their bounds. ODM (`opendm/orthophoto.py` `merge`, `opendm/dem/merge.py`) instead takes
the first input's resolution and warps the others onto it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from odm_core.errors import OdmStageError

RES_REL_TOL = 1e-9  # relative difference of two sources' pixel sizes still taken as equal
ORIGIN_PX_TOL = 1e-3  # how far (pixels) an origin may be from a whole-pixel offset
BLOCK_PX = 1024
FIX = "the submodels must be run with the same resolution and grid (the parent sets them)"


@dataclass(frozen=True)
class GridSource:
    """One source raster placed on the merged grid: its pixel (0, 0) is the grid's (row, col)."""

    path: str
    index: int  # position in the list of sources given to merged_grid
    row: int
    col: int
    height: int
    width: int


@dataclass(frozen=True)
class MergeGrid:
    """North-up grid over the union of the sources: pixel (row, col) spans x = west + [col, col + 1)
    res_x, y = north - [row, row + 1) res_y (metres, or the CRS's units)."""

    crs_wkt: str  # "" for a raster without CRS
    west: float
    north: float
    res_x: float
    res_y: float  # positive: rows go south
    width: int
    height: int
    sources: tuple[GridSource, ...]

    @property
    def transform(self) -> Affine:
        return Affine(self.res_x, 0.0, self.west, 0.0, -self.res_y, self.north)

    @property
    def crs(self) -> CRS | None:
        return CRS.from_wkt(self.crs_wkt) if self.crs_wkt else None


@dataclass(frozen=True)
class MergeBlock:
    """A unit of merge work: a window of the merged grid, the sources whose bounds intersect it (in
    the order given to merged_grid) and the halo (pixels) read around it. Paths only, no arrays."""

    grid: MergeGrid
    row: int
    col: int
    rows: int
    cols: int
    sources: tuple[GridSource, ...]
    halo: int = 0

    @property
    def window(self) -> Window:
        return Window(self.col, self.row, self.cols, self.rows)

    @property
    def pixels(self) -> int:
        return self.rows * self.cols


def _whole_px(offset_m: float, res: float) -> int | None:
    """The offset in whole pixels, or None when it is not one (beyond ORIGIN_PX_TOL)."""
    px = offset_m / res
    return round(px) if abs(px - round(px)) <= ORIGIN_PX_TOL else None


def _check(ok: bool, path: Path, what: str) -> None:
    if not ok:
        raise OdmStageError(f"{path}: {what}; {FIX}")


def merged_grid(sources: Sequence[Path]) -> MergeGrid:
    """The union of the sources' bounds on their common pixel grid (the first source's).

    Every source must have the first one's CRS and pixel size (relative 1e-9), be north-up, and sit a
    whole number of pixels (within 1e-3 px) from it. Raises OdmStageError naming the first file that
    does not, and saying the fix; also with no source at all.
    """
    if not sources:
        raise OdmStageError("merge: no source raster to merge")
    placed: list[tuple[Path, int, int, int, int]] = []
    ref_transform, ref_crs = Affine.identity(), None
    for k, path in enumerate(sources):
        with rasterio.open(path) as src:
            t, crs, height, width = src.transform, src.crs, src.height, src.width
        _check(t.b == 0 and t.d == 0 and t.a > 0 and t.e < 0, path, f"not a north-up raster ({t})")
        if k == 0:
            ref_transform, ref_crs = t, crs
        first = sources[0]
        _check(crs == ref_crs, path, f"CRS {crs} is not {first}'s {ref_crs}")
        for mine, ref, axis in ((t.a, ref_transform.a, "x"), (-t.e, -ref_transform.e, "y")):
            _check(
                abs(mine - ref) <= RES_REL_TOL * ref,
                path,
                f"pixel size {mine!r} in {axis} is not {first}'s {ref!r}",
            )
        col = _whole_px(t.c - ref_transform.c, ref_transform.a)
        row = _whole_px(ref_transform.f - t.f, -ref_transform.e)
        _check(
            col is not None and row is not None,
            path,
            f"origin ({t.c}, {t.f}) is not a whole number of pixels from {first}'s "
            f"({ref_transform.c}, {ref_transform.f})",
        )
        assert col is not None and row is not None
        placed.append((path, row, col, height, width))
    row0 = min(p[1] for p in placed)
    col0 = min(p[2] for p in placed)
    return MergeGrid(
        crs_wkt=ref_crs.to_wkt() if ref_crs is not None else "",
        west=ref_transform.c + col0 * ref_transform.a,
        north=ref_transform.f + row0 * ref_transform.e,
        res_x=ref_transform.a,
        res_y=-ref_transform.e,
        width=max(p[2] + p[4] for p in placed) - col0,
        height=max(p[1] + p[3] for p in placed) - row0,
        sources=tuple(
            GridSource(str(path), k, row - row0, col - col0, h, w)
            for k, (path, row, col, h, w) in enumerate(placed)
        ),
    )


def _overlaps(s: GridSource, row: int, col: int, rows: int, cols: int) -> bool:
    return s.row < row + rows and row < s.row + s.height and s.col < col + cols and col < s.col + s.width


def plan_blocks(grid: MergeGrid, block_px: int = BLOCK_PX, halo: int = 0) -> list[MergeBlock]:
    """The grid cut into blocks of block_px x block_px pixels (smaller at the right and bottom edges),
    row-major, each with the sources whose bounds intersect it and the halo its merge reads around it.
    Blocks no source touches are left out (the writer's nodata fills them)."""
    if block_px < 1:
        raise ValueError(f"block_px must be positive, not {block_px}")
    blocks = []
    for row in range(0, grid.height, block_px):
        for col in range(0, grid.width, block_px):
            rows, cols = min(block_px, grid.height - row), min(block_px, grid.width - col)
            found = tuple(s for s in grid.sources if _overlaps(s, row, col, rows, cols))
            if found:
                blocks.append(MergeBlock(grid, row, col, rows, cols, found, halo))
    return blocks


def read_padded(
    source: GridSource, row: int, col: int, rows: int, cols: int, bands: Sequence[int], fill: float
) -> np.ndarray:
    """(len(bands), rows, cols) of the source over that window of the merged grid (it may reach beyond
    the source, or the grid: filled with `fill`), in the source's data type (float32 if fill is NaN)."""
    r0, c0 = max(row, source.row), max(col, source.col)
    r1 = min(row + rows, source.row + source.height)
    c1 = min(col + cols, source.col + source.width)
    with rasterio.open(source.path) as src:
        dtype = np.float32 if math.isnan(fill) else np.dtype(src.dtypes[0])
        out = np.full((len(bands), rows, cols), fill, dtype)
        if r0 < r1 and c0 < c1:
            window = Window(c0 - source.col, r0 - source.row, c1 - c0, r1 - r0)
            out[:, r0 - row : r1 - row, c0 - col : c1 - col] = src.read(list(bands), window=window)
    return out
