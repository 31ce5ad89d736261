"""GPS against a reconstruction: photos' positions in the model frame, and ODM's gps_errors statistics."""

from __future__ import annotations

import numpy as np
import pycolmap

from odm_core.geo.georef import GeoReference, lla_to_utm
from odm_core.photos.photo import Photo


def gps_local_m(photos: list[Photo], georef: GeoReference) -> dict[str, np.ndarray]:
    """Each geotagged photo's GPS position in the model frame (UTM minus the offset; no altitude: 0)."""
    gps = [p for p in photos if p.has_gps]
    if not gps:
        return {}
    xyz = lla_to_utm(
        georef.epsg,
        np.array([p.latitude for p in gps]),
        np.array([p.longitude for p in gps]),
        np.array([p.altitude or 0.0 for p in gps]),
    )
    return {p.filename: row - georef.offset for p, row in zip(gps, xyz, strict=True)}


def gps_residuals_m(rec: pycolmap.Reconstruction, photos: list[Photo], georef: GeoReference) -> np.ndarray:
    """Camera centre minus GPS position (N x 3 metres) for every registered, geotagged photo."""
    local = gps_local_m(photos, georef)
    rows = [
        im.projection_center() - local[im.name]
        for im in rec.images.values()
        if im.has_pose and im.name in local
    ]
    return np.array(rows).reshape(-1, 3)


def gps_errors(residuals_m: np.ndarray) -> dict[str, object]:
    """ODM's gps_errors block: per-axis mean, std and RMS, their norm, and the horizontal RMS."""
    if len(residuals_m) == 0:
        return {}
    axes = ("x", "y", "z")
    rms = np.sqrt(np.mean(residuals_m**2, axis=0))
    return {
        "mean": dict(zip(axes, map(float, residuals_m.mean(axis=0)), strict=True)),
        "std": dict(zip(axes, map(float, residuals_m.std(axis=0)), strict=True)),
        "error": dict(zip(axes, map(float, rms), strict=True)),
        "average_error": float(np.linalg.norm(rms)),
        "horizontal_rms": float(np.sqrt(np.mean(np.sum(residuals_m[:, :2] ** 2, axis=1)))),
    }
