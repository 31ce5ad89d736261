"""The crop polygon (ODM's `Cropper`): the convex hull of the point cloud's footprint shrunk by --crop
metres, its files, and per-window masks that odm_dem and odm_orthophoto apply while they write rasters.

The footprint is an occupancy grid of the LAZ's points (about 1 m cells, read in chunks), with gaps
narrower than a few point spacings closed, holes filled, and its outer contours traced with OpenCV. As in
ODM, the crop area is the footprint's convex hull (ODM: "as to encompass the entire area (no holes)"),
shrunk by --crop + 3 m and grown by 3 m for round corners. All geometry is in the LAZ's CRS (the
project's UTM zone); shapely does the buffering.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import cv2
import laspy
import numpy as np
import pyogrio
import pyogrio.raw
import shapely
from pyproj import CRS as ProjCRS
from pyproj import Transformer
from rasterio.features import rasterize
from rasterio.transform import Affine
from scipy import ndimage
from shapely.geometry.base import BaseGeometry

from odm_core.artifacts import atomic_path
from odm_core.errors import OdmStageError
from odm_core.geo.boundary import parse_boundary

FOOTPRINT_CELL_M = 1.0  # occupancy cell of the footprint
MAX_FOOTPRINT_PX = 8000  # the grid's longest side; cells grow beyond that so memory stays bounded
CLOSE_SPACINGS = 3.0  # gaps narrower than this many point spacings are inside the footprint
MIN_PART_SHARE = 0.01  # footprint islands smaller than this share of the largest part are outliers
SMOOTH_M = 3.0  # ODM's BUFFER_SMOOTH_DISTANCE: shrink by crop + 3 m, then grow by 3 m
LAZ_CHUNK = 2_000_000
LAYER = "bounds"
# GPKG stamps its write time in gpkg_contents; a fixed date keeps equal polygons byte-equal, so a rerun
# of odm_georeferencing that changes nothing does not make odm_dem and odm_orthophoto run again.
FIXED_DATE = {"OGR_CURRENT_DATE": "2000-01-01T00:00:00.000Z"}


def footprint(laz: Path, spacing_m: float | None = None) -> tuple[BaseGeometry, ProjCRS]:
    """The cloud's footprint polygon (in the LAZ's CRS) and that CRS; OdmStageError without points/CRS."""
    with laspy.open(laz) as reader:
        header = reader.header
        (minx, miny, maxx, maxy), _ = header_extent(header, laz, "crop to")
        crs = header_crs(header, laz)
        # a sparse cloud's spacing may be far above the stats' figure: the mean over its extent bounds it
        mean_spacing_m = math.sqrt(max(maxx - minx, 1e-3) * max(maxy - miny, 1e-3) / header.point_count)
        spacing_m = max(spacing_m or 0.0, mean_spacing_m)
        extent_m = max(maxx - minx, maxy - miny)
        cell_m = max(FOOTPRINT_CELL_M, spacing_m, extent_m / MAX_FOOTPRINT_PX)
        width, height = math.ceil((maxx - minx) / cell_m) + 1, math.ceil((maxy - miny) / cell_m) + 1
        occupied = np.zeros(height * width, bool)
        for chunk in reader.chunk_iterator(LAZ_CHUNK):
            col = np.floor((np.asarray(chunk.x) - minx) / cell_m).astype(np.int64)
            row = np.floor((maxy - np.asarray(chunk.y)) / cell_m).astype(np.int64)
            occupied[np.clip(row, 0, height - 1) * width + np.clip(col, 0, width - 1)] = True
    close_px = max(2, math.ceil(CLOSE_SPACINGS * spacing_m / cell_m))
    transform = Affine(cell_m, 0, minx, 0, -cell_m, maxy)
    return mask_outline(occupied.reshape(height, width), transform, close_px), crs


def header_extent(
    header: laspy.LasHeader, laz: Path, purpose: str
) -> tuple[tuple[float, float, float, float], ProjCRS | None]:
    """(minx, miny, maxx, maxy) and CRS of a LAS header (None: a model in a local frame); OdmStageError
    naming the file without points (nothing to `purpose`)."""
    if header.point_count == 0:
        raise OdmStageError(f"{laz} has no points: there is nothing to {purpose}")
    (minx, miny, _), (maxx, maxy, _) = header.mins, header.maxs
    return (float(minx), float(miny), float(maxx), float(maxy)), header.parse_crs()


def laz_crs(laz: Path) -> ProjCRS:
    """The LAZ's CRS; OdmStageError without one."""
    with laspy.open(laz) as reader:
        return header_crs(reader.header, laz)


def header_crs(header: laspy.LasHeader, laz: Path) -> ProjCRS:
    """The CRS a LAS header records; OdmStageError naming the file without one."""
    crs = header.parse_crs()
    if crs is None:
        raise OdmStageError(
            f"{laz} records no CRS: the model is in a local frame (not georeferenced), so a geographic "
            "polygon cannot crop it; leave out --boundary, or give the photos GPS (or --geo)"
        )
    return crs


def mask_outline(mask: np.ndarray, transform: Affine, close_px: int) -> BaseGeometry:
    """The outer outline of a boolean grid's cells (gaps under close_px cells closed, holes filled)."""
    pad = close_px + 1
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * close_px + 1, 2 * close_px + 1))
    closed = cv2.morphologyEx(np.pad(mask, pad).astype(np.uint8), cv2.MORPH_CLOSE, disk)
    filled = ndimage.binary_fill_holes(closed).astype(np.uint8)
    # contour of cell corners: trace at 2x so the outline runs along cell edges, not through centres
    up = cv2.resize(filled, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(up, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    parts = []
    for contour in contours:
        if len(contour) < 3:
            continue
        px = contour[:, 0, :].astype(float) / 2.0 - pad + 0.25  # back to the unpadded grid's cell units
        xs, ys = transform @ (px[:, 0], px[:, 1])
        parts.append(shapely.make_valid(shapely.Polygon(np.column_stack([xs, ys]))))
    if not parts:
        raise OdmStageError("the point cloud's footprint is empty: nothing to crop to")
    outline = shapely.union_all(parts)
    return shapely.simplify(outline, abs(transform.a) / 2)


def largest_parts(geom: BaseGeometry, min_share: float = MIN_PART_SHARE) -> BaseGeometry:
    """The geometry's polygons, without those smaller than min_share of the largest (outlier islands)."""
    polys = [g for g in shapely.get_parts(geom) if isinstance(g, shapely.Polygon) and not g.is_empty]
    if not polys:
        return shapely.Polygon()
    biggest = max(p.area for p in polys)
    keep = [p for p in polys if p.area >= min_share * biggest]
    return keep[0] if len(keep) == 1 else shapely.MultiPolygon(keep)


def crop_polygon(outline: BaseGeometry, crop_m: float) -> BaseGeometry:
    """ODM's crop area: the convex hull of the footprint (outlier islands left out) buffered by
    -(crop_m + 3 m), then by +3 m for round corners; OdmStageError when nothing is left."""
    hull = largest_parts(shapely.make_valid(outline)).convex_hull
    shrunk = hull.buffer(-(crop_m + SMOOTH_M)).buffer(SMOOTH_M)  # a convex shape: one valid polygon
    if shrunk.is_empty:
        minx, miny, maxx, maxy = outline.bounds
        raise OdmStageError(
            f"--crop {crop_m} m leaves nothing of the cloud's {maxx - minx:.0f} x {maxy - miny:.0f} m "
            "footprint: give a smaller --crop, or 0 to turn cropping off"
        )
    return shrunk


def boundary_polygon(text: str, crs: ProjCRS) -> BaseGeometry:
    """A --boundary GeoJSON's polygons (outer rings and holes) in `crs`."""
    epsg, polygons = parse_boundary(text)
    to_crs = Transformer.from_crs(epsg, crs, always_xy=True)
    shapes = []
    for rings in polygons:
        moved = [np.column_stack(to_crs.transform(r[:, 0], r[:, 1])) for r in rings]
        shapes.append(shapely.make_valid(shapely.Polygon(moved[0], moved[1:])))
    return largest_parts(shapely.union_all(shapes), 0.0)


def write_polygon(path: Path, geom: BaseGeometry, crs_wkt: str, driver: str = "GPKG") -> Path:
    """One polygon feature (MultiPolygon) in a GPKG or GeoJSON file, written atomically."""
    multi = geom if isinstance(geom, shapely.MultiPolygon) else shapely.MultiPolygon([geom])
    wkb = np.array([shapely.to_wkb(multi)], dtype=object)
    return write_layer(path, wkb, {}, LAYER, "MultiPolygon", crs_wkt, driver)


def write_layer(
    path: Path,
    wkb: np.ndarray,
    fields: dict[str, np.ndarray],
    layer: str,
    geometry_type: str,
    crs_wkt: str,
    driver: str = "GPKG",
) -> Path:
    """Features (WKB geometries and their field columns) as one layer of a vector file, written
    atomically with a fixed date, so equal content gives equal bytes."""
    previous = pyogrio.get_gdal_config_option("OGR_CURRENT_DATE")
    pyogrio.set_gdal_config_options(FIXED_DATE)
    try:
        with atomic_path(path) as tmp, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The filename extension")  # the temporary's .part
            tmp.unlink()  # GDAL creates the file itself
            pyogrio.raw.write(
                tmp, wkb, field_data=list(fields.values()), fields=list(fields), layer=layer,
                driver=driver, geometry_type=geometry_type, crs=crs_wkt,
            )  # fmt: skip
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": previous})
    return path


def read_polygon(path: Path, crs_wkt: str | None = None) -> BaseGeometry:
    """The union of a polygon file's features, moved into crs_wkt when given and different."""
    try:
        meta, _, wkb, _ = pyogrio.raw.read(path)
    except Exception as err:  # pyogrio raises its own DataSourceError and friends
        raise OdmStageError(
            f"cannot read the crop polygon {path} ({err}); re-run odm_georeferencing"
        ) from None
    geom = shapely.union_all(shapely.from_wkb(wkb))
    if crs_wkt and meta.get("crs") and not ProjCRS.from_user_input(meta["crs"]).equals(crs_wkt):
        to_crs = Transformer.from_crs(meta["crs"], crs_wkt, always_xy=True)
        geom = shapely.transform(geom, lambda xy: np.column_stack(to_crs.transform(xy[:, 0], xy[:, 1])))
    return geom


def window_mask(geom: BaseGeometry, transform: Affine, shape: tuple[int, int]) -> np.ndarray:
    """True for the cells (of a window with this transform and shape) whose centre lies in geom."""
    if shape[0] == 0 or shape[1] == 0:
        return np.zeros(shape, bool)
    clip = shapely.clip_by_rect(geom, *_window_bounds(transform, shape))
    if clip.is_empty:
        return np.zeros(shape, bool)
    return rasterize([clip], out_shape=shape, transform=transform, fill=0, default_value=1, dtype="uint8") > 0


def _window_bounds(transform: Affine, shape: tuple[int, int]) -> tuple[float, float, float, float]:
    xs, ys = transform @ (np.array([-1, shape[1] + 1]), np.array([shape[0] + 1, -1]))
    return float(min(xs)), float(min(ys)), float(max(xs)), float(max(ys))
