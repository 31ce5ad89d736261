"""Crop polygons: ODM's --boundary GeoJSON and --auto-boundary (the camera positions' hull plus a margin)."""

from __future__ import annotations

import json

import numpy as np
from pyproj import Transformer
from scipy.spatial import ConvexHull

Ring = np.ndarray  # K x 2 vertices; a polygon is a list of rings (outer first, then holes)


def parse_boundary(text: str) -> tuple[int, list[list[Ring]]]:
    """(EPSG of its coordinates, polygons) from a GeoJSON Polygon/MultiPolygon, Feature or FeatureCollection.

    Coordinates are WGS84 longitude/latitude unless the document names another CRS
    ("crs": {"properties": {"name": "EPSG:32615"}}), as ODM accepts. Raises ValueError saying what is wrong.
    """
    try:
        doc = json.loads(text)
    except ValueError as err:
        raise ValueError(f"--boundary is not valid JSON ({err})") from None
    epsg = _crs_epsg(doc)
    geometries = _geometries(doc)
    polygons: list[list[Ring]] = []
    for geom in geometries:
        kind, coords = geom.get("type"), geom.get("coordinates")
        if kind == "Polygon":
            polygons.append(_rings(coords))
        elif kind == "MultiPolygon":
            polygons += [_rings(c) for c in coords or []]
    if not polygons:
        raise ValueError("--boundary holds no Polygon or MultiPolygon: give a GeoJSON polygon")
    return epsg, polygons


def _crs_epsg(doc: dict) -> int:
    name = str(((doc.get("crs") or {}).get("properties") or {}).get("name", "EPSG:4326"))
    digits = name.rsplit(":", 1)[-1]
    if name.upper().endswith("CRS84"):
        return 4326
    if not digits.isdigit():
        raise ValueError(f"--boundary names a CRS odmflow cannot read ({name}); use EPSG:XXXX")
    return int(digits)


def _geometries(doc: dict) -> list[dict]:
    if not isinstance(doc, dict):
        raise ValueError("--boundary must be a GeoJSON object")
    if doc.get("type") == "FeatureCollection":
        return [f.get("geometry") or {} for f in doc.get("features", [])]
    if doc.get("type") == "Feature":
        return [doc.get("geometry") or {}]
    return [doc]


def _rings(coords: list[object] | None) -> list[Ring]:
    """A GeoJSON polygon's "coordinates" (a JSON list of rings) as K x 2 arrays."""
    rings = [np.asarray(r, dtype=float)[:, :2] for r in coords or []]
    if not rings or any(len(r) < 4 for r in rings):
        raise ValueError("--boundary has a polygon ring with fewer than 4 positions")
    return rings


def boundary_in_model(text: str, epsg: int, offset: np.ndarray) -> list[list[Ring]]:
    """The --boundary polygons in the model frame (project UTM minus the coords.txt offset)."""
    src_epsg, polygons = parse_boundary(text)
    to_utm = Transformer.from_crs(src_epsg, epsg, always_xy=True)
    return [
        [np.column_stack(to_utm.transform(r[:, 0], r[:, 1])) - offset[:2] for r in poly] for poly in polygons
    ]


def hull_polygon(xy: np.ndarray, margin_m: float) -> list[Ring]:
    """The convex hull of points grown by margin_m (as a 64-sided approximation of the buffer)."""
    angles = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    disc = margin_m * np.column_stack([np.cos(angles), np.sin(angles)])
    grown = (xy[:, None, :] + disc[None, :, :]).reshape(-1, 2)
    ring = grown[ConvexHull(grown).vertices]
    return [np.vstack([ring, ring[:1]])]


def inside(xy: np.ndarray, polygons: list[list[Ring]]) -> np.ndarray:
    """Boolean mask of points inside any polygon (even-odd rule per polygon, holes excluded)."""
    mask = np.zeros(len(xy), dtype=bool)
    for poly in polygons:
        in_poly = np.zeros(len(xy), dtype=bool)
        for ring in poly:
            in_poly ^= _in_ring(xy, ring)
        mask |= in_poly
    return mask


def _in_ring(xy: np.ndarray, ring: Ring) -> np.ndarray:
    x, y = xy[:, 0], xy[:, 1]
    result = np.zeros(len(xy), dtype=bool)
    for (x0, y0), (x1, y1) in zip(ring[:-1], ring[1:], strict=True):
        crosses = (y0 > y) != (y1 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
        result ^= crosses & (x < x_at)
    return result
