"""Dense cloud against the synthetic truth: height error on the true surface and coverage of the ground.

The GPS noise in the photos moves the whole model by a small similarity (the SfM tests measure that); it
is removed first, with the similarity that maps the reconstructed camera centres onto the true ones, so
what remains is the error of dense matching itself. The raw offset is reported beside it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import laspy
import numpy as np
import rasterio
from scipy.spatial import Delaunay, cKDTree
from scipy.spatial.transform import Rotation


@dataclass(frozen=True)
class DenseAccuracy:
    """Median |dz| to the true DSM (after removing the camera similarity); coverage of the nadir block."""

    n_points: int
    median_abs_dz_m: float
    raw_median_dz_m: float
    coverage: float
    cell_m: float


def similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(scale, rotation, translation) of the least-squares similarity dst ~ s R src + t (Umeyama)."""
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    u, sigma, vt = np.linalg.svd((dst - mu_d).T @ (src - mu_s))
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ d @ vt
    scale = float(np.trace(np.diag(sigma) @ d) / np.sum((src - mu_s) ** 2))
    return scale, rotation, mu_d - scale * rotation @ mu_s


def camera_similarity(truth_dir: Path, cameras: Path | None) -> tuple[float, np.ndarray, np.ndarray]:
    """The similarity taking our camera centres onto the true ones: the GPS noise's share of any error (or,
    for a model without GPS, its arbitrary frame), removed before comparing products with the truth.

    `cameras` is shots.geojson (UTM centres) or, for a project without georeference (products in model
    coordinates, no coords.txt), opensfm/reconstruction.json; None: the identity, so that products are
    compared where they are (absolute accuracy, as with GCPs).
    """
    if cameras is None:
        return 1.0, np.eye(3), np.zeros(3)
    truth = json.loads((truth_dir / "cameras.json").read_text())["photos"]
    true_centre = {
        t["filename"]: [t["centre_utm"][k] for k in ("easting", "northing", "altitude")] for t in truth
    }
    ours = our_centres(cameras)
    names = sorted(ours)
    return similarity(np.array([ours[n] for n in names]), np.array([true_centre[n] for n in names]))


def our_centres(cameras: Path) -> dict[str, np.ndarray]:
    """Camera centres by photo name from shots.geojson (`translation`) or reconstruction.json (-R^T t)."""
    doc = json.loads(cameras.read_text())
    if cameras.suffix == ".geojson":
        return {
            f["properties"]["filename"]: np.array(f["properties"]["translation"]) for f in doc["features"]
        }
    centres = {}
    for name, shot in doc[0]["shots"].items():
        cam_from_world = Rotation.from_rotvec(shot["rotation"]).as_matrix()
        centres[name] = -cam_from_world.T @ np.array(shot["translation"])
    return centres


def nadir_centres(truth_dir: Path) -> np.ndarray:
    """True horizontal centres of the nadir photos."""
    truth = json.loads((truth_dir / "cameras.json").read_text())["photos"]
    return np.array(
        [[t["centre_utm"]["easting"], t["centre_utm"]["northing"]] for t in truth if t["kind"] == "nadir"]
    )


def dense_accuracy(truth_dir: Path, laz: Path, shots_geojson: Path, cell_m: float) -> DenseAccuracy:
    """Compare a georeferenced dense cloud (LAZ, UTM) with truth_dir's DSM, on cells of cell_m metres."""
    scale, rotation, shift = camera_similarity(truth_dir, shots_geojson)
    las = laspy.read(laz)
    raw = np.column_stack([las.x, las.y, las.z])
    points = scale * raw @ rotation.T + shift
    with rasterio.open(truth_dir / "dsm.tif") as dsm:
        surface = dsm.read(1)
        rows, cols = rasterio.transform.rowcol(dsm.transform, points[:, 0], points[:, 1])
        rows, cols = np.asarray(rows), np.asarray(cols)
        ok = (rows >= 0) & (cols >= 0) & (rows < dsm.height) & (cols < dsm.width)
        z_true = np.full(len(points), np.nan)
        z_true[ok] = surface[rows[ok], cols[ok]]
        z_true[z_true == dsm.nodata] = np.nan
    dz = points[:, 2] - z_true
    raw_rows, raw_cols = rasterio.transform.rowcol(dsm.transform, raw[:, 0], raw[:, 1])
    raw_dz = raw[:, 2] - _sample(surface, np.asarray(raw_rows), np.asarray(raw_cols))
    nadir = nadir_centres(truth_dir)
    return DenseAccuracy(
        n_points=len(points),
        median_abs_dz_m=float(np.nanmedian(np.abs(dz))),
        raw_median_dz_m=float(np.nanmedian(raw_dz)),
        coverage=_coverage(points[:, :2], nadir, cell_m),
        cell_m=cell_m,
    )


def _sample(surface: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    ok = (rows >= 0) & (cols >= 0) & (rows < surface.shape[0]) & (cols < surface.shape[1])
    out = np.full(len(rows), np.nan)
    out[ok] = surface[rows[ok], cols[ok]]
    return out


def _coverage(xy: np.ndarray, nadir_centres: np.ndarray, cell_m: float) -> float:
    """Share of the ground inside the hull of the nadir camera centres (seen by every photo row) with a
    dense point within cell_m: sampled on a grid of cell_m / 2."""
    lo, hi = nadir_centres.min(axis=0), nadir_centres.max(axis=0)
    step = cell_m / 2
    gx, gy = np.meshgrid(np.arange(lo[0], hi[0], step), np.arange(lo[1], hi[1], step))
    samples = np.column_stack([gx.ravel(), gy.ravel()])
    samples = samples[Delaunay(nadir_centres).find_simplex(samples) >= 0]
    if not len(samples) or not len(xy):
        return 0.0
    distance = cKDTree(xy).query(samples, distance_upper_bound=cell_m, workers=-1)[0]
    return float(np.mean(distance <= cell_m))
