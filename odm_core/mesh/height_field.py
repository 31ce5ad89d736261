"""The 2.5D mesh: a height field from the cloud's highest points, triangulated on its grid.

As ODM's create_25dmesh (opendm/mesh.py) with its 'gridded' method: a DSM of the filtered cloud with
the highest point per cell, then the highest within ODM's growing radii (gap fill), smoothed, made into
a mesh (dem2mesh) and decimated. Here the grid is numpy: one vertex per cell centre, two triangles per
2 x 2 block of cells with heights (one where only three have), facing up. Holes inside the footprint
are filled; outside it the mesh stops.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.fill import fillnodata
from scipy import ndimage

from odm_core.cloud.ply import xyz_pieces
from odm_core.dem import gridding
from odm_core.mesh.ply import TriangleMesh

CELLS_PER_TARGET_VERTEX = 4.0  # the grid's cells over the cloud's bounding box, per --mesh-size vertex
FOOTPRINT_CLOSE_CELLS = 3  # gaps narrower than this between data are inside the footprint
CHUNK_POINTS = 2_000_000  # points gridded at a time


@dataclass(frozen=True)
class HeightGrid:
    """Heights (rows x cols, NaN = no surface) of cells of cell_m metres; row 0 is the north edge,
    the top-left corner at (west, north) in the model frame."""

    z: np.ndarray
    west: float
    north: float
    cell_m: float


def xyz_chunks(points: np.ndarray | Path) -> Iterator[np.ndarray]:
    """The points (N x 3 metres, or a binary PLY's path) as float64 N x 3 pieces of at most CHUNK_POINTS:
    a pass over a file holds a piece, not the cloud."""
    if isinstance(points, Path):
        yield from xyz_pieces(points, CHUNK_POINTS)
        return
    for start in range(0, len(points), CHUNK_POINTS):
        yield np.asarray(points[start : start + CHUNK_POINTS], np.float64)


def xy_bounds(points: np.ndarray | Path) -> tuple[float, float, float, float]:
    """(min x, min y, max x, max y) of the points (as xyz_chunks takes them); raises ValueError if none."""
    lows, highs = [], []
    for xyz in xyz_chunks(points):
        lows.append(xyz[:, :2].min(axis=0))
        highs.append(xyz[:, :2].max(axis=0))
    if not lows:
        raise ValueError("no points to grid")
    (minx, miny), (maxx, maxy) = np.min(lows, axis=0), np.max(highs, axis=0)
    return float(minx), float(miny), float(maxx), float(maxy)


def grid_cell_m(bounds: tuple[float, float, float, float], spacing_m: float, mesh_size: int) -> float:
    """ODM's 2.5D DSM resolution (the cloud's spacing), coarsened so the grid over the cloud's bounding
    box (min x, min y, max x, max y) holds at most CELLS_PER_TARGET_VERTEX x mesh_size cells."""
    width, height = bounds[2] - bounds[0], bounds[3] - bounds[1]
    return max(spacing_m, math.sqrt(max(width * height, 1e-6) / (CELLS_PER_TARGET_VERTEX * mesh_size)))


def height_grid(
    points: np.ndarray | Path,
    cell_m: float,
    radii_m: tuple[float, ...],
    bounds: tuple[float, float, float, float] | None = None,
) -> HeightGrid:
    """The smoothed, gap-filled surface of points (model frame, metres; N x 3 or a PLY file's path, read
    a chunk at a time: the memory is the grid's, whatever the cloud's size) on a grid of cell_m;
    `bounds`: their xy_bounds when known (else one more pass computes them).

    Each cell takes its highest point, else the highest within the smallest of ODM's radii (radii_m)
    that holds one; holes inside the footprint (data closed by FOOTPRINT_CLOSE_CELLS, holes filled) are
    interpolated (GDAL's fillnodata); then dem.gridding's median smoothing."""
    west, south, east, north = bounds or xy_bounds(points)
    cols = int(math.floor((east - west) / cell_m)) + 1
    rows = int(math.floor((north - south) / cell_m)) + 1
    cells = np.full((rows, cols), np.nan, np.float32)
    for xyz in xyz_chunks(points):
        col = np.minimum(((xyz[:, 0] - west) / cell_m).astype(np.int64), cols - 1)
        row = np.minimum(((north - xyz[:, 1]) / cell_m).astype(np.int64), rows - 1)
        cells = np.fmax(cells, gridding.highest((rows, cols), row * cols + col, xyz[:, 2]))
    z = gridding.highest_nearby(cells, tuple(r / cell_m for r in radii_m))
    data = ~np.isnan(z)
    footprint = ndimage.binary_fill_holes(
        ndimage.binary_closing(data, np.ones((3, 3), bool), iterations=FOOTPRINT_CLOSE_CELLS)
    )
    holes = footprint & ~data
    if holes.any():
        distance = int(ndimage.distance_transform_edt(~data).max()) + 1
        filled = fillnodata(
            np.nan_to_num(z, nan=0.0), mask=data.astype(np.uint8), max_search_distance=distance
        )
        z[holes] = filled[holes]
    return HeightGrid(gridding.median_smooth(z), west, north, cell_m)


def grid_mesh(grid: HeightGrid) -> TriangleMesh:
    """One vertex per cell with a height (at its centre), two up-facing triangles per full 2 x 2 block,
    one where exactly three of its cells have heights."""
    valid = ~np.isnan(grid.z)
    index = np.full(grid.z.shape, -1, np.int64)
    index[valid] = np.arange(int(valid.sum()))
    r, c = np.nonzero(valid)
    vertices = np.column_stack(
        [grid.west + (c + 0.5) * grid.cell_m, grid.north - (r + 0.5) * grid.cell_m, grid.z[valid]]
    ).astype(np.float64)
    nw, ne, sw, se = index[:-1, :-1], index[:-1, 1:], index[1:, :-1], index[1:, 1:]
    full = (nw >= 0) & (ne >= 0) & (sw >= 0) & (se >= 0)
    triangles = [
        np.column_stack([nw[full], sw[full], ne[full]]),
        np.column_stack([ne[full], sw[full], se[full]]),
    ]
    for a, b, d, missing in ((nw, sw, ne, se), (ne, sw, se, nw), (nw, sw, se, ne), (nw, se, ne, sw)):
        three = ~full & (missing < 0) & (a >= 0) & (b >= 0) & (d >= 0)
        triangles.append(np.column_stack([a[three], b[three], d[three]]))
    faces = np.concatenate(triangles).astype(np.int64)
    return TriangleMesh(vertices, faces).compacted() if len(faces) else TriangleMesh(vertices, faces)
