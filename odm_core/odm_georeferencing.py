"""The `odm_georeferencing` stage: the filtered cloud as ODM's georeferenced LAZ, plus LAS/CSV exports.

Coordinates are full UTM (model + the coords.txt offset) with the CRS recorded; a project without
coords.txt (no GPS, no GCPs) gets its LAZ in model coordinates and no CRS.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from odm_core.artifacts import atomic_path
from odm_core.errors import OdmStageError
from odm_core.geo import GeoReference
from odm_core.las_io import las_points, write_las
from odm_core.layout import ProjectTree
from odm_core.options import GeoreferencingOptions
from odm_core.pointcloud import read_ply, rgb, xyz

CSV_HEADER = "X,Y,Z,Red,Green,Blue,Views\n"
CSV_ROW = "%.3f,%.3f,%.3f,%d,%d,%d,%d\n"
CSV_CHUNK = 500_000  # points formatted at a time


@dataclass(frozen=True)
class GeoreferencingResult:
    """Point count, EPSG code (None without georeference) and output files of odm_georeferencing."""

    n_points: int
    epsg: int | None
    outputs: tuple[Path, ...]


def odm_georeferencing(tree: ProjectTree, opts: GeoreferencingOptions) -> GeoreferencingResult:
    """Write odm_georeferenced_model.laz, and .las (--pc-las) / .csv (--pc-csv) when asked.

    Exports not asked for that remain from an earlier run are deleted, so the folder matches the options.
    """
    source = tree.filtered_point_cloud
    if not source.is_file():
        raise OdmStageError(f"{source} is missing: run the odm_filterpoints stage first")
    points = read_ply(source)
    georef = GeoReference.read(tree.coords_txt) if tree.coords_txt.is_file() else None
    pos = xyz(points) + (georef.offset if georef is not None else 0.0)
    colours, views = rgb(points), np.minimum(points["views"], 255).astype(np.uint8)
    las = las_points(pos, colours, georef.crs if georef is not None else None, user_data=views)

    outputs = [write_las(tree.georeferenced_model_laz, las, compress=True)]
    if opts.pc_las:
        outputs.append(write_las(tree.georeferenced_model_las, las, compress=False))
    else:
        tree.georeferenced_model_las.unlink(missing_ok=True)
    if opts.pc_csv:
        outputs.append(write_csv(tree.georeferenced_model_csv, pos, colours, views))
    else:
        tree.georeferenced_model_csv.unlink(missing_ok=True)
    epsg = georef.epsg if georef is not None else None
    return GeoreferencingResult(n_points=len(points), epsg=epsg, outputs=tuple(outputs))


def write_csv(path: Path, pos: np.ndarray, colours: np.ndarray, views: np.ndarray) -> Path:
    """CSV with a header line: X,Y,Z (3 decimals), 8-bit Red,Green,Blue and Views; formatted in chunks."""
    with atomic_path(path) as tmp, tmp.open("w", encoding="ascii", newline="") as f:
        f.write(CSV_HEADER)
        for start in range(0, len(pos), CSV_CHUNK):
            part = slice(start, start + CSV_CHUNK)
            columns = [*pos[part].T.tolist(), *colours[part].T.tolist(), views[part].tolist()]
            f.writelines(map(CSV_ROW.__mod__, zip(*columns, strict=True)))
    return path
