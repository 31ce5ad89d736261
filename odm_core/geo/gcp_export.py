"""ODM's GCP exports of odm_georeferencing: ground_control_points.gpkg (project CRS) and .geojson (WGS84),
one point per GCP at its measured position with ODM's fields (id, observations_count,
observations_list, error_x/y/z) plus odmflow's `check` and reprojection error (ODM
stages/odm_georeferencing.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from pyproj import Transformer

from odm_core.artifacts import write_json
from odm_core.geo.crop import write_layer
from odm_core.geo.georef import GeoReference

LAYER = "ground_control_points"


def write_gcp_exports(gcp_json: Path, georef: GeoReference, gpkg: Path, geojson: Path) -> list[Path]:
    """Both exports from OpenSfM's stats/ground_control_points.json (model frame: UTM minus offset)."""
    gcps: list[dict[str, Any]] = json.loads(gcp_json.read_text())
    xyz = np.array([g["coordinates"] for g in gcps], dtype=float) + georef.offset
    fields = {
        "id": np.array([g["id"] for g in gcps], dtype=object),
        "observations_count": np.array([len(g["observations"]) for g in gcps], dtype=np.int32),
        "observations_list": np.array(
            [",".join(o["shot_id"] for o in g["observations"]) for g in gcps], dtype=object
        ),
        "error_x": np.array([g["error"][0] for g in gcps]),
        "error_y": np.array([g["error"][1] for g in gcps]),
        "error_z": np.array([g["error"][2] for g in gcps]),
        "check": np.array([int(g.get("check", False)) for g in gcps], dtype=np.int32),
        "reprojection_px": np.array([g.get("reprojection_px", np.nan) for g in gcps]),
    }
    points = np.array([shapely.to_wkb(shapely.Point(*p)) for p in xyz], dtype=object)
    write_layer(gpkg, points, fields, LAYER, "Point Z", georef.crs.to_wkt())
    lon_lat = Transformer.from_crs(georef.epsg, 4326, always_xy=True).transform(
        xyz[:, 0], xyz[:, 1], xyz[:, 2]
    )
    features = []
    for i, g in enumerate(gcps):
        properties = {k: v for k, v in g.items() if k != "coordinates"}
        coordinates = [float(lon_lat[0][i]), float(lon_lat[1][i]), float(lon_lat[2][i])]
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": coordinates},
                "properties": properties,
            }
        )
    write_json(geojson, {"type": "FeatureCollection", "features": features})
    return [gpkg, geojson]
