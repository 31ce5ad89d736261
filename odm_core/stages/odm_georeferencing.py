"""The `odm_georeferencing` stage: the filtered cloud as ODM's georeferenced LAZ, plus LAS/CSV exports.

Coordinates are full UTM (model + the coords.txt offset) with the CRS recorded; a project without
coords.txt (no GPS, no GCPs) gets its LAZ in model coordinates and no CRS.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from odm_core.artifacts import atomic_path
from odm_core.cloud.las import las_points, write_las
from odm_core.cloud.ply import read_ply, rgb, xyz
from odm_core.cloud.stats import recorded_spacing_m
from odm_core.errors import OdmStageError
from odm_core.geo import crop
from odm_core.geo.gcp_export import write_gcp_exports
from odm_core.geo.georef import GeoReference
from odm_core.layout import ProjectTree
from odm_core.options import GeoreferencingOptions
from odm_core.worker import MapUnits, serial_map

CSV_HEADER = "X,Y,Z,Red,Green,Blue,Views\n"
CSV_ROW = "%.3f,%.3f,%.3f,%d,%d,%d,%d\n"
CSV_CHUNK = 500_000  # points formatted at a time


@dataclass(frozen=True)
class GeoreferencingResult:
    """Point count, EPSG code (None without georeference) and output files of odm_georeferencing."""

    n_points: int
    epsg: int | None
    outputs: tuple[Path, ...]

    def summary(self) -> list[str]:
        """The run summary's lines for this stage."""
        crs = f"EPSG:{self.epsg}" if self.epsg else "model coordinates (no CRS)"
        return [f"odm_georeferencing: {self.n_points} points in {crs}"]


def odm_georeferencing(tree: ProjectTree, opts: GeoreferencingOptions) -> GeoreferencingResult:
    """Write odm_georeferenced_model.laz, and .las (--pc-las) / .csv (--pc-csv) when asked.

    Exports not asked for that remain from an earlier run are deleted, so the folder matches the options.
    """
    source = tree.filtered_point_cloud
    if not source.is_file():
        raise OdmStageError(f"{source} is missing: run the odm_filterpoints stage first")
    points = read_ply(source)
    georef = GeoReference.of_model(tree.coords_txt, tree.reference_lla_json)
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
    outputs += write_crop_bounds(tree, opts, georef is not None)
    if georef is not None and tree.gcp_stats.is_file():
        gpkg, geojson = tree.ground_control_points_gpkg, tree.ground_control_points_geojson
        outputs += write_gcp_exports(tree.gcp_stats, georef, gpkg, geojson)
    else:
        tree.ground_control_points_gpkg.unlink(missing_ok=True)
        tree.ground_control_points_geojson.unlink(missing_ok=True)
    epsg = georef.epsg if georef is not None else None
    return GeoreferencingResult(n_points=len(points), epsg=epsg, outputs=tuple(outputs))


def write_crop_bounds(tree: ProjectTree, opts: GeoreferencingOptions, georeferenced: bool) -> list[Path]:
    """ODM's crop area as odm_georeferenced_model.bounds.gpkg and .bounds.geojson, in the LAZ's CRS: the
    cloud's footprint shrunk by --crop metres, or the --boundary polygon with --crop 0.

    Nothing is written (and files of an earlier run are removed) with neither, or without a georeference.
    """
    gpkg, geojson = tree.georeferenced_model_bounds_gpkg, tree.georeferenced_model_bounds_geojson
    if not georeferenced or (opts.crop == 0 and not opts.boundary):
        gpkg.unlink(missing_ok=True)
        geojson.unlink(missing_ok=True)
        return []
    laz = tree.georeferenced_model_laz
    if opts.crop > 0:
        outline, crs = crop.footprint(laz, recorded_spacing_m(tree.filtered_point_cloud_stats))
        polygon = crop.crop_polygon(outline, opts.crop)
    else:
        assert opts.boundary is not None
        crs = crop.laz_crs(laz)
        polygon = crop.boundary_polygon(opts.boundary, crs)
    return [
        crop.write_polygon(gpkg, polygon, crs.to_wkt()),
        crop.write_polygon(geojson, polygon, crs.to_wkt(), "GeoJSON"),
    ]


def write_csv(path: Path, pos: np.ndarray, colours: np.ndarray, views: np.ndarray) -> Path:
    """CSV with a header line: X,Y,Z (3 decimals), 8-bit Red,Green,Blue and Views; formatted in chunks."""
    with atomic_path(path) as tmp, tmp.open("w", encoding="ascii", newline="") as f:
        f.write(CSV_HEADER)
        for start in range(0, len(pos), CSV_CHUNK):
            part = slice(start, start + CSV_CHUNK)
            columns = [*pos[part].T.tolist(), *colours[part].T.tolist(), views[part].tolist()]
            f.writelines(map(CSV_ROW.__mod__, zip(*columns, strict=True)))
    return path


def run(
    tree: ProjectTree, opts: GeoreferencingOptions, key: str = "", map_units: MapUnits = serial_map
) -> GeoreferencingResult:
    """The stage in one process (what tests, benchmarks and scripts call; `key` and `map_units` serve
    the stages that fan out units, this one has none)."""
    return odm_georeferencing(tree, opts)
