"""Compare two georeferenced point clouds: the raw offset, then distances after a rigid ICP alignment.

Used to hold odmflow's dense cloud next to another engine's (ODM's own cloud of the same photos): the
offset found by the alignment measures the difference in georeferencing, the distances after it the
difference in shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

ICP_RADII_M = (8.0, 4.0, 2.0, 1.0, 0.5, 0.25, 0.25)  # coarse to fine correspondence distances
ICP_VOXEL_M = 0.1  # finest thinning of both clouds for the alignment (distances use every point)
FOOTPRINT_M = 0.5  # ours farther than this (horizontally) from every reference point lie beyond its extent
RAW_SAMPLE = 20_000  # points whose distance before alignment gives its median (far points are slow)


@dataclass(frozen=True)
class CloudComparison:
    """Distances from our points to the reference's, before and after aligning ours onto it."""

    n_ours: int
    n_reference: int
    alignment_translation_m: tuple[float, float, float]
    alignment_rotation_deg: float
    raw_median_m: float
    median_m: float
    p90_m: float
    reference_covered: float  # share of reference points with one of ours within cover_radius_m
    cover_radius_m: float
    beyond_reference: float  # share of ours beyond the reference's horizontal extent (FOOTPRINT_M)
    p90_within_m: float  # p90 distance of ours within that extent


def rigid_icp(ours: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """4 x 4 rigid transform taking ours onto reference: median shift, then point-to-plane ICP (open3d)."""
    import open3d as o3d

    source = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(ours))
    target = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(reference))
    transform = np.eye(4)
    transform[:3, 3] = np.median(reference, axis=0) - np.median(ours, axis=0)
    reg = o3d.pipelines.registration
    for radius in ICP_RADII_M:
        voxel = max(ICP_VOXEL_M, radius / 8)  # coarse steps on coarse clouds
        thinned = target.voxel_down_sample(voxel)
        thinned.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=max(0.5, 4 * voxel), max_nn=30))
        fit = reg.registration_icp(
            source.voxel_down_sample(voxel),
            thinned,
            radius,
            transform,
            reg.TransformationEstimationPointToPlane(),
            reg.ICPConvergenceCriteria(max_iteration=100),
        )
        transform = fit.transformation
    return transform


def compare_clouds(ours: np.ndarray, reference: np.ndarray, cover_radius_m: float = 0.25) -> CloudComparison:
    """Compare N x 3 clouds in the same CRS (coordinates are centred internally for precision)."""
    centre = reference.mean(axis=0)
    a, b = ours - centre, reference - centre
    ref_tree = cKDTree(b)
    sample = np.random.default_rng(0).choice(len(a), min(len(a), RAW_SAMPLE), replace=False)
    raw = ref_tree.query(a[sample], workers=-1)[0]
    transform = rigid_icp(a, b)
    aligned = a @ transform[:3, :3].T + transform[:3, 3]
    after = ref_tree.query(aligned, workers=-1)[0]
    back = cKDTree(aligned).query(b, distance_upper_bound=cover_radius_m, workers=-1)[0]
    flat = cKDTree(b[:, :2]).query(aligned[:, :2], distance_upper_bound=FOOTPRINT_M, workers=-1)[0]
    within = flat <= FOOTPRINT_M
    angle = np.degrees(np.arccos(np.clip((np.trace(transform[:3, :3]) - 1) / 2, -1.0, 1.0)))
    mean = a.mean(axis=0)
    shift = transform[:3, :3] @ mean + transform[:3, 3] - mean  # how far our centroid moved
    return CloudComparison(
        n_ours=len(ours),
        n_reference=len(reference),
        alignment_translation_m=(float(shift[0]), float(shift[1]), float(shift[2])),
        alignment_rotation_deg=float(angle),
        raw_median_m=float(np.median(raw)),
        median_m=float(np.median(after)),
        p90_m=float(np.percentile(after, 90)),
        reference_covered=float(np.mean(back <= cover_radius_m)),
        cover_radius_m=cover_radius_m,
        beyond_reference=float(1.0 - within.mean()),
        p90_within_m=float(np.percentile(after[within], 90)) if within.any() else float("nan"),
    )
