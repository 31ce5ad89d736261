"""A mesh against the synthetic truth and against the cloud it was made from.

Height error: the mesh's vertices (model frame + the coords.txt offset = UTM), moved by the similarity
that maps our camera centres onto the true ones (the GPS noise's share, as for the dense cloud), against
the true DSM under them; vertical distance bounds the distance to the surface from above. Support: the
distance from every face's centroid and vertices to the nearest cloud point (a bubble or a skirt over
empty space is far from every point).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from scipy.spatial import cKDTree

from odm_core.cloud.ply import read_ply, xyz
from odm_core.evaluate.dense_truth import camera_similarity
from odm_core.geo.georef import GeoReference
from odm_core.mesh.ply import read_mesh_ply


@dataclass(frozen=True)
class MeshAccuracy:
    """Median and 90th percentile of |dz| to the true DSM (m), the farthest face from the cloud (m)."""

    n_faces: int
    median_abs_dz_m: float
    p90_abs_dz_m: float
    max_face_to_cloud_m: float
    p99_face_to_cloud_m: float


def mesh_accuracy(
    truth_dir: Path, mesh_ply: Path, cloud_ply: Path, coords_txt: Path, shots: Path
) -> MeshAccuracy:
    """Compare mesh_ply (model frame) with truth_dir's dsm.tif and with cloud_ply (model frame)."""
    mesh = read_mesh_ply(mesh_ply)
    offset = GeoReference.read(coords_txt).offset
    scale, rotation, shift = camera_similarity(truth_dir, shots)
    utm = scale * (mesh.vertices + offset) @ rotation.T + shift
    with rasterio.open(truth_dir / "dsm.tif") as dsm:
        surface = dsm.read(1).astype(np.float64)
        surface[surface == dsm.nodata] = np.nan
        rows, cols = (np.asarray(a) for a in rasterio.transform.rowcol(dsm.transform, utm[:, 0], utm[:, 1]))
    inside = (rows >= 0) & (cols >= 0) & (rows < surface.shape[0]) & (cols < surface.shape[1])
    dz = np.abs(utm[inside, 2] - surface[rows[inside], cols[inside]])
    dz = dz[np.isfinite(dz)]
    cloud = cKDTree(xyz(read_ply(cloud_ply)))
    probes = np.concatenate([mesh.face_centres(), mesh.vertices])
    distance, _ = cloud.query(probes, k=1, workers=-1)
    return MeshAccuracy(
        n_faces=mesh.n_faces,
        median_abs_dz_m=float(np.median(dz)),
        p90_abs_dz_m=float(np.percentile(dz, 90)),
        max_face_to_cloud_m=float(distance.max()),
        p99_face_to_cloud_m=float(np.percentile(distance, 99)),
    )
