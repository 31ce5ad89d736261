"""GPS against a reconstruction: photos' positions in the model frame, and ODM's gps_errors statistics."""

from __future__ import annotations

import warnings

import numpy as np
import pycolmap

from odm_core.geo.georef import GeoReference, lla_to_utm
from odm_core.photos.photo import Photo


def gps_local_m(photos: list[Photo], georef: GeoReference) -> dict[str, np.ndarray]:
    """Each geotagged photo's GPS position in the model frame (UTM minus the offset; no altitude: z NaN)."""
    gps = [p for p in photos if p.has_gps]
    if not gps:
        return {}
    xyz = lla_to_utm(
        georef.epsg,
        np.array([p.latitude for p in gps]),
        np.array([p.longitude for p in gps]),
        np.array([np.nan if p.altitude is None else p.altitude for p in gps]),
    )
    return {p.filename: row - georef.offset for p, row in zip(gps, xyz, strict=True)}


def gps_residuals_m(
    rec: pycolmap.Reconstruction, photos: list[Photo], georef: GeoReference
) -> dict[str, np.ndarray]:
    """Camera centre minus GPS position (3 metres; z NaN without altitude) per registered, geotagged photo."""
    local = gps_local_m(photos, georef)
    return {
        im.name: np.asarray(im.projection_center()) - local[im.name]
        for im in rec.images.values()
        if im.has_pose and im.name in local
    }


def gps_errors(residuals_m: np.ndarray) -> dict[str, object]:
    """ODM's gps_errors block: per-axis mean, std and RMS, their norm, and the horizontal RMS. Photos
    without an altitude (z NaN) count horizontally only; z is None when no photo has one."""
    if len(residuals_m) == 0:
        return {}
    axes = ("x", "y", "z")
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN z column: no altitude at all
        rms = np.sqrt(np.nanmean(residuals_m**2, axis=0))
        mean, std = np.nanmean(residuals_m, axis=0), np.nanstd(residuals_m, axis=0)
    return {
        "mean": dict(zip(axes, map(finite_or_none, mean), strict=True)),
        "std": dict(zip(axes, map(finite_or_none, std), strict=True)),
        "error": dict(zip(axes, map(finite_or_none, rms), strict=True)),
        "average_error": float(np.linalg.norm(rms[np.isfinite(rms)])),
        "horizontal_rms": float(np.sqrt(np.mean(np.sum(residuals_m[:, :2] ** 2, axis=1)))),
    }


def finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
