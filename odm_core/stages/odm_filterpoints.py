"""The `odm_filterpoints` stage: crop, remove outliers from and thin the dense cloud (ODM's FPCFilter).

Steps in ODM's order: crop to --boundary (or --auto-boundary), statistical outlier removal
(--pc-filter, 16 neighbours as ODM's meanK), thinning (--pc-sample). Every point field is kept.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from odm_core.artifacts import write_json
from odm_core.camera.view import ViewCamera
from odm_core.cloud.ply import read_ply, write_ply, xyz
from odm_core.errors import OdmStageError
from odm_core.geo.boundary import Ring, boundary_in_model, hull_polygon, inside
from odm_core.geo.georef import GeoReference
from odm_core.layout import ProjectTree
from odm_core.options import FilterpointsOptions
from odm_core.sfm.reconstruction import average_gsd_cm, camera_centres
from odm_core.worker import MapUnits, serial_map

log = logging.getLogger(__name__)

SOR_NEIGHBOURS = 16  # ODM's meanK
SPACING_SAMPLE = 100_000  # points whose nearest-neighbour distance gives the spacing
SAMPLING_SAMPLE = 20_000  # points whose depths in each view give its depth map's sampling distance
GSD_MARGIN = 100.0  # --auto-boundary's margin in GSDs when --auto-boundary-distance is 0 (as ODM)

Polygons = list[list[Ring]]

_CROP_HINT = {
    "--boundary": "--boundary removed every point: check that the polygon covers the survey "
    "(and its CRS, WGS84 longitude/latitude unless the GeoJSON names one)",
    "--auto-boundary": "--auto-boundary removed every point: raise --auto-boundary-distance "
    "or turn --auto-boundary off",
}


@dataclass(frozen=True)
class FilterpointsResult:
    """Counts, the filtered cloud's spacing and the output files of odm_filterpoints."""

    n_input: int
    n_points: int
    spacing_m: float
    outputs: tuple[Path, ...]

    def summary(self) -> list[str]:
        """The run summary's lines for this stage."""
        kept = f"{self.n_points} of {self.n_input} points kept, spacing {self.spacing_m:.3f} m"
        return [f"odm_filterpoints: {kept}"]


def odm_filterpoints(tree: ProjectTree, opts: FilterpointsOptions) -> FilterpointsResult:
    """Filter the dense cloud (the sparse one with --fast-orthophoto) into odm_filterpoints/.

    Writes point_cloud.ply and point_cloud_stats.json ({"spacing", "count", "input_count", "dense"}, and
    for a dense cloud "depthmap_sampling": see depthmap_sampling_m).
    Raises OdmStageError when the input is missing or empty, or when a step removes every point.
    """
    source, stage = (tree.sparse_ply, "opensfm") if opts.fast_orthophoto else (tree.openmvs_model, "openmvs")
    if not source.is_file():
        raise OdmStageError(f"{source} is missing: run the {stage} stage first")
    points = read_ply(source)
    n_input = len(points)
    _require(n_input, f"{source} has no points: the {stage} stage reconstructed nothing to filter")
    pos = xyz(points)

    crop = crop_polygons(tree, opts)
    if crop is not None:
        option, polygons = crop
        keep = inside_polygons(pos[:, :2], polygons)
        points, pos = points[keep], pos[keep]
        _require(len(points), _CROP_HINT[option])
    if opts.pc_filter > 0:
        keep = statistical_inliers(pos, opts.pc_filter)
        points, pos = points[keep], pos[keep]
        _require(len(points), "--pc-filter removed every point: raise it, or set it to 0 to skip filtering")
    if opts.pc_sample > 0:
        keep = voxel_thin(pos, opts.pc_sample)
        points, pos = points[keep], pos[keep]

    spacing = median_spacing(pos)
    stats: dict[str, object] = {
        "spacing": spacing,
        "count": len(points),
        "input_count": n_input,
        "dense": not opts.fast_orthophoto,
    }
    sampling = None if opts.fast_orthophoto else depthmap_sampling_m(tree.openmvs_views, pos)
    if sampling is not None:
        stats["depthmap_sampling"] = sampling
    outputs = (
        write_ply(tree.filtered_point_cloud, points),
        write_json(tree.filtered_point_cloud_stats, stats),
    )
    return FilterpointsResult(n_input=n_input, n_points=len(points), spacing_m=spacing, outputs=outputs)


def _require(n: int, message: str) -> None:
    if n == 0:
        raise OdmStageError(message)


def crop_polygons(tree: ProjectTree, opts: FilterpointsOptions) -> tuple[str, Polygons] | None:
    """(option name, crop polygons in the model frame), or None when nothing is cropped.

    --boundary wins over --auto-boundary; both need a georeferenced project and, as in ODM, are
    ignored with a warning without one.
    """
    option = "--boundary" if opts.boundary is not None else "--auto-boundary" if opts.auto_boundary else None
    if option is None:
        return None
    if not tree.coords_txt.is_file():
        log.warning("%s ignored: the project is not georeferenced (no GPS or GCPs), as in ODM", option)
        return None
    georef = GeoReference.read(tree.coords_txt)
    if opts.boundary is not None:
        return option, boundary_in_model(opts.boundary, georef.epsg, georef.offset)
    polygon = auto_boundary(tree.reconstruction_json, opts.auto_boundary_distance)
    return None if polygon is None else (option, [polygon])


def auto_boundary(reconstruction_json: Path, distance_m: float) -> list[Ring] | None:
    """The camera centres' convex hull grown by distance_m (0: by 100 x the average GSD, as ODM).

    None, with a warning, when there are no cameras or the GSD cannot be estimated.
    """
    if not reconstruction_json.is_file():
        raise OdmStageError(f"{reconstruction_json} is missing: --auto-boundary needs the opensfm stage")
    recons = json.loads(reconstruction_json.read_text())
    centres = np.vstack([np.zeros((0, 3))] + [camera_centres(r) for r in recons])
    if len(centres) == 0:
        log.warning("--auto-boundary ignored: the reconstruction has no cameras")
        return None
    if distance_m <= 0:
        gsd_cm = average_gsd_cm(recons[0])
        if gsd_cm is None:
            log.warning("--auto-boundary ignored: no GSD estimate; set --auto-boundary-distance")
            return None
        distance_m = GSD_MARGIN * gsd_cm / 100.0
    return hull_polygon(centres[:, :2], distance_m)


def inside_polygons(xy: np.ndarray, polygons: Polygons) -> np.ndarray:
    """Boolean mask of points inside the polygons; only points in their bounding box are tested."""
    vertices = np.vstack([ring for poly in polygons for ring in poly])
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    near = np.flatnonzero(np.all((xy >= lo) & (xy <= hi), axis=1))
    mask = np.zeros(len(xy), dtype=bool)
    mask[near] = inside(xy[near], polygons)
    return mask


def statistical_inliers(pos: np.ndarray, std_ratio: float) -> np.ndarray:
    """Sorted indices of points whose mean distance to their 16 nearest neighbours is within
    std_ratio standard deviations of the cloud's mean (open3d's remove_statistical_outlier).

    open3d also drops points whose neighbours all coincide with them (mean distance 0). Clouds of
    at most 16 points are kept whole: too few for the statistics (open3d would drop them all).
    """
    if len(pos) <= SOR_NEIGHBOURS:
        return np.arange(len(pos))
    import open3d as o3d  # imported here: it takes most of a second to load

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.ascontiguousarray(pos, dtype=np.float64)))
    _, kept = cloud.remove_statistical_outlier(nb_neighbors=SOR_NEIGHBOURS, std_ratio=std_ratio)
    return np.sort(np.asarray(kept, dtype=np.int64))


def voxel_thin(pos: np.ndarray, size: float) -> np.ndarray:
    """Sorted indices of at most one point per cube of `size` metres: the point nearest its cube's centre.

    The grid starts at the cloud's minimum corner; ties go to the lowest index, so the result does not
    depend on anything but the positions and their order.
    """
    origin = pos.min(axis=0)
    cells = np.floor((pos - origin) / size).astype(np.int64)
    offset = pos - (origin + (cells + 0.5) * size)
    dist2 = np.einsum("ij,ij->i", offset, offset)
    order = np.lexsort((dist2, cells[:, 2], cells[:, 1], cells[:, 0]))
    sorted_cells = cells[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = np.any(sorted_cells[1:] != sorted_cells[:-1], axis=1)
    return np.sort(order[first])


def median_spacing(pos: np.ndarray, sample: int = SPACING_SAMPLE, seed: int = 0) -> float:
    """Median nearest-neighbour distance (metres) of up to `sample` points, against the whole cloud."""
    if len(pos) < 2:
        return 0.0
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(pos), size=min(sample, len(pos)), replace=False)
    dist, _ = cKDTree(pos).query(pos[picks], k=2, workers=-1)
    return float(np.median(dist[:, 1]))


def depthmap_sampling_m(views_json: Path, pos: np.ndarray) -> float | None:
    """The distance on the surface between neighbouring depth-map pixels (the median over the views of
    their points' median depth / focal length): the dense cloud's own sampling, however finely the
    views' points interleave (the nearest-neighbour spacing is smaller). None without the dense plan."""
    if not views_json.is_file() or len(pos) == 0:
        return None
    rng = np.random.default_rng(0)
    sample = pos[rng.choice(len(pos), size=min(SAMPLING_SAMPLE, len(pos)), replace=False)]
    per_view = []
    for doc in json.loads(views_json.read_text()):
        view = ViewCamera.from_doc(doc)
        u, v, z = view.project(sample)
        seen = view.in_depth_map(u, v, z)
        if seen.any():
            per_view.append(float(np.median(z[seen])) / view.dm_focal_px)
    return float(np.median(per_view)) if per_view else None


def run(
    tree: ProjectTree, opts: FilterpointsOptions, key: str = "", map_units: MapUnits = serial_map
) -> FilterpointsResult:
    """The stage in one process (what tests, benchmarks and scripts call; `key` and `map_units` serve
    the stages that fan out units, this one has none)."""
    return odm_filterpoints(tree, opts)
