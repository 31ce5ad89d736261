"""A DSM or DTM against the synthetic truth: height error on open ground, building edges, terrain under them.

As for the dense cloud, the similarity that maps the reconstructed camera centres onto the true ones (the
GPS noise's share) is applied to every cell first; then each cell's height is compared with the true
surface, and the roofs' outlines (cells higher than half a building's height) with the true footprints.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from scipy import ndimage
from scipy.spatial import Delaunay

from odm_core.evaluate.dense_truth import camera_similarity, nadir_centres

OPEN_GROUND_MARGIN_M = 1.0  # cells this close to a footprint are not "open ground"


@dataclass(frozen=True)
class DemAccuracy:
    cells: int
    cell_m: float
    open_ground_rmse_m: float
    open_ground_median_abs_m: float
    edge_median_cells: float  # our roof outline's distance to the true one
    edge_p90_cells: float
    raw_median_dz_m: float


def _inside(corners: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Points inside a convex polygon (corners in order, either winding: the shoelace area's sign tells
    which side of each edge is the inside)."""
    nxt = np.roll(corners, -1, axis=0)
    winding = np.sign(np.sum(corners[:, 0] * nxt[:, 1] - nxt[:, 0] * corners[:, 1]))
    out = np.ones(x.shape, bool)
    for a, b in zip(corners, nxt, strict=True):
        cross = (b[0] - a[0]) * (y - a[1]) - (b[1] - a[1]) * (x - a[0])
        out &= cross * winding >= 0
    return out


def dem_accuracy(truth_dir: Path, dem: Path, shots_geojson: Path | None, surface: str = "dsm") -> DemAccuracy:
    """Compare the DSM (surface="dsm") or the DTM ("dtm": terrain under the buildings) with the truth."""
    scale, rotation, shift = camera_similarity(truth_dir, shots_geojson)
    with rasterio.open(dem) as src:
        ours = src.read(1, masked=True).filled(np.nan).astype(np.float64)
        rows, cols = np.mgrid[0 : src.height, 0 : src.width]
        x, y = rasterio.transform.xy(src.transform, rows.ravel(), cols.ravel())
        cell_m = src.res[0]
    z = np.where(np.isfinite(ours), ours, np.nanmedian(ours)).ravel()  # nodata cells still get an x, y
    pts = np.column_stack([np.asarray(x), np.asarray(y), z]) * scale @ rotation.T + shift
    tx, ty, tz = (pts[:, i].reshape(ours.shape) for i in range(3))
    tz[~np.isfinite(ours)] = np.nan
    buildings = json.loads((truth_dir / "truth.json").read_text())["buildings"]
    footprint = np.zeros(ours.shape, bool)
    roof_mask = np.zeros(ours.shape, bool)
    for b in buildings:
        inside = _inside(np.array(b["corners_utm"]), tx, ty)
        footprint |= inside
        near = ndimage.binary_dilation(inside, iterations=max(1, int(3.0 / cell_m)))
        roof_mask |= near & (tz > b["roof_altitude"] - b["height_m"] / 2)
    with rasterio.open(truth_dir / "dsm.tif") as truth:
        r, c = rasterio.transform.rowcol(truth.transform, tx.ravel(), ty.ravel())
        r, c = np.asarray(r).reshape(ours.shape), np.asarray(c).reshape(ours.shape)
        ok = (r >= 0) & (c >= 0) & (r < truth.height) & (c < truth.width)
        true_z = np.full(ours.shape, np.nan)
        true_z[ok] = truth.read(1)[r[ok], c[ok]]
        true_z[true_z == truth.nodata] = np.nan
    dz = tz - true_z
    margin = int(np.ceil(OPEN_GROUND_MARGIN_M / cell_m))
    block = Delaunay(nadir_centres(truth_dir)).find_simplex(np.column_stack([tx.ravel(), ty.ravel()])) >= 0
    open_ground = ~ndimage.binary_dilation(footprint, iterations=margin) & np.isfinite(dz)
    open_ground &= block.reshape(ours.shape)  # the block every photo row sees, as for the dense cloud
    seen = np.isfinite(ours)
    edge_d = _edge_distances(footprint, roof_mask, seen) if surface == "dsm" else np.array([0.0])
    raw_z = ours - true_z
    return DemAccuracy(
        cells=int(np.isfinite(ours).sum()),
        cell_m=cell_m,
        open_ground_rmse_m=float(np.sqrt(np.mean(dz[open_ground] ** 2))),
        open_ground_median_abs_m=float(np.median(np.abs(dz[open_ground]))),
        edge_median_cells=float(np.median(edge_d)),
        edge_p90_cells=float(np.percentile(edge_d, 90)),
        raw_median_dz_m=float(np.nanmedian(raw_z)),
    )


def _edge_distances(footprint: np.ndarray, roof: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Distance (cells) from each cell of our roofs' outline to the nearest cell of the true outline."""
    true_edge = footprint & ~ndimage.binary_erosion(footprint)
    our_edge = roof & ~ndimage.binary_erosion(roof) & valid
    our_edge &= ndimage.binary_erosion(valid, iterations=2)  # not the raster's own border
    if not true_edge.any() or not our_edge.any():
        return np.array([np.inf])
    distance = ndimage.distance_transform_edt(~true_edge)
    return distance[our_edge]


def dem_tilt_deg(truth_dir: Path, dem: Path, sample: int = 200_000) -> float:
    """Tilt (degrees) of the plane fitted to our DEM minus the true DSM at the same UTM position, over
    the ground away from buildings (2 m margin): the georeferencing's own tilt, no similarity removed."""
    with rasterio.open(dem) as src:
        ours = src.read(1, masked=True).filled(np.nan).astype(np.float64).ravel()
        rows, cols = np.mgrid[0 : src.height, 0 : src.width]
        x, y = (np.asarray(v) for v in rasterio.transform.xy(src.transform, rows.ravel(), cols.ravel()))
    keep = np.flatnonzero(np.isfinite(ours))
    keep = np.random.default_rng(0).choice(keep, min(sample, len(keep)), replace=False)
    x, y, ours = x[keep], y[keep], ours[keep]
    with rasterio.open(truth_dir / "dsm.tif") as truth:
        r, c = (np.asarray(v) for v in rasterio.transform.rowcol(truth.transform, x, y))
        ok = (r >= 0) & (c >= 0) & (r < truth.height) & (c < truth.width)
        true_z = np.full(len(x), np.nan)
        true_z[ok] = truth.read(1)[r[ok], c[ok]]
        true_z[true_z == truth.nodata] = np.nan
    near = np.zeros(len(x), bool)
    for b in json.loads((truth_dir / "truth.json").read_text())["buildings"]:
        corners = np.array(b["corners_utm"])
        centre = corners.mean(axis=0)
        near |= _inside(centre + (corners - centre) * 1.0, x, y) | (
            np.hypot(x - centre[0], y - centre[1]) < np.max(np.linalg.norm(corners - centre, axis=1)) + 2.0
        )
    use = np.isfinite(true_z) & ~near
    dz, px, py = ours[use] - true_z[use], x[use] - x[use].mean(), y[use] - y[use].mean()
    design = np.column_stack([px, py, np.ones(len(px))])
    inliers = np.ones(len(dz), bool)
    for _ in range(3):  # least squares, then without the cells more than 3 robust sigmas off
        coef = np.linalg.lstsq(design[inliers], dz[inliers], rcond=None)[0]
        residual = dz - design @ coef
        inliers = np.abs(residual) <= 3.0 * 1.4826 * np.median(np.abs(residual - np.median(residual))) + 1e-6
    return float(np.degrees(np.arctan(np.hypot(coef[0], coef[1]))))
