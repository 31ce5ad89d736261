"""odm_meshing: the 3D mesh (screened Poisson, trimmed, decimated) and the 2.5D mesh of the filtered cloud.

As ODM's stages/odm_meshing.py: odm_meshing/odm_mesh.ply unless --skip-3dmodel (which --fast-orthophoto
sets), odm_meshing/odm_25dmesh.ply unless --use-3dmesh; both in the model frame (UTM minus the
coords.txt offset, as the cloud), decimated to 2 x --mesh-size faces as ODM's ReconstructMesh call does
(--mesh-size being at most the cloud's point count: max_vertices).
Unlike ODM, the 3D mesh is trimmed where the cloud gives no support (mesh/poisson.py).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from odm_core.cloud.ply import read_ply, vertex_count, xyz
from odm_core.cloud.stats import recorded_sampling_m, recorded_spacing_m
from odm_core.errors import OdmStageError
from odm_core.layout import ProjectTree
from odm_core.mesh.decimate import decimate, target_faces
from odm_core.mesh.height_field import grid_cell_m, grid_mesh, height_grid, xy_bounds
from odm_core.mesh.ply import TriangleMesh, write_mesh_ply
from odm_core.mesh.poisson import poisson_depth, screened_poisson, trim_to_cloud
from odm_core.options import MeshingOptions
from odm_core.worker import MapUnits, serial_map

log = logging.getLogger(__name__)
Progress = Callable[[float, str], None]

TRIM_SAMPLINGS = 2.0  # a vertex farther than this many of the cloud's sampling distances is unsupported
TRIM_CELLS = 1.5  # ...and than this many of Poisson's finest octree cells
RADIUS_STEPS = 3  # ODM's 2.5D DSM: get_dem_radius_steps(stats, 3, ...)
FAST_ORTHOPHOTO_COARSER = 8.0  # ODM: the sparse cloud's 2.5D DSM at 8 x the resolution


@dataclass(frozen=True)
class MeshingResult:
    """Face and vertex counts of the meshes made (None where not built) and the output files."""

    faces_3d: int | None
    vertices_3d: int | None
    poisson_faces: int | None
    poisson_depth: int | None
    trimmed_fraction: float | None
    faces_25d: int | None
    vertices_25d: int | None
    cell_m_25d: float | None
    outputs: tuple[Path, ...]

    def summary(self) -> list[str]:
        """The run summary's lines for this stage."""
        lines = []
        if self.faces_3d is not None:
            lines.append(
                f"odm_meshing: 3D mesh {self.faces_3d:,} faces, {self.vertices_3d:,} vertices (Poisson "
                f"depth {self.poisson_depth}: {self.poisson_faces:,} faces, "
                f"{100 * (self.trimmed_fraction or 0):.1f}% trimmed where no point supports it)"
            )
        if self.faces_25d is not None:
            lines.append(
                f"odm_meshing: 2.5D mesh {self.faces_25d:,} faces, {self.vertices_25d:,} vertices "
                f"(height grid {100 * (self.cell_m_25d or 0):.1f} cm)"
            )
        return lines


def _noop(fraction: float, message: str) -> None:
    return None


def odm_meshing(
    tree: ProjectTree, opts: MeshingOptions, num_threads: int = -1, progress: Progress = _noop
) -> MeshingResult:
    """Mesh odm_filterpoints/point_cloud.ply into odm_meshing/ (see the module docstring).

    Raises OdmStageError when the filtered cloud is missing or too small to mesh."""
    cloud = tree.filtered_point_cloud
    if not cloud.is_file():
        raise OdmStageError(f"{cloud} is missing: run the odm_filterpoints stage first")
    n_points = vertex_count(cloud)
    if n_points < 3:
        raise OdmStageError(f"{cloud} has {n_points} points: too few to mesh")
    stats = tree.filtered_point_cloud_stats
    sampling = recorded_sampling_m(stats) or recorded_spacing_m(stats) or 0.0
    threads = num_threads if num_threads > 0 else 1
    outputs: list[Path] = []
    mesh3d = surface = poisson_faces = trimmed = depth = None
    if opts.skip_3dmodel:
        tree.odm_mesh.unlink(missing_ok=True)
    if opts.use_3dmesh:
        tree.odm_25dmesh.unlink(missing_ok=True)
    with ThreadPoolExecutor(
        max_workers=1
    ) as pool:  # the 2.5D mesh beside Poisson, whose 2 threads scale poorly
        making_25d = None if opts.use_3dmesh else pool.submit(_mesh_25d, tree, n_points, opts)
        if not opts.skip_3dmodel:
            points = read_ply(cloud)  # Poisson takes the whole cloud (the 2.5D mesh reads it in chunks)
            depth = _depth(opts, xyz(points), sampling)
            progress(
                0.05,
                f"Poisson reconstruction of {len(points):,} points (octree depth {depth}); the 2.5D mesh",
            )
            surface, poisson_faces, trimmed = _trimmed_3d(tree, points, sampling, depth, threads, progress)
            faces = target_faces(max_vertices(opts.mesh_size, len(points)))
            progress(0.65, f"decimating {surface.n_faces:,} faces to {faces:,}")
            mesh3d = decimate(surface, faces, tree.odm_meshing)
            outputs.append(write_mesh_ply(tree.odm_mesh, mesh3d))
        mesh25, cell = making_25d.result() if making_25d is not None else (None, None)
    if mesh25 is not None:
        outputs.append(write_mesh_ply(tree.odm_25dmesh, mesh25))
    return MeshingResult(
        faces_3d=mesh3d.n_faces if mesh3d else None,
        vertices_3d=mesh3d.n_vertices if mesh3d else None,
        poisson_faces=poisson_faces,
        poisson_depth=depth,
        trimmed_fraction=trimmed,
        faces_25d=mesh25.n_faces if mesh25 else None,
        vertices_25d=mesh25.n_vertices if mesh25 else None,
        cell_m_25d=cell,
        outputs=tuple(outputs),
    )


def _depth(opts: MeshingOptions, pos: np.ndarray, sampling_m: float) -> int:
    """--mesh-octree-depth, capped where a cell would be finer than the cloud's sampling (said in the log)."""
    depth = poisson_depth(opts.mesh_octree_depth, float(np.max(np.ptp(pos, axis=0))), sampling_m)
    if depth < opts.mesh_octree_depth:
        log.info(
            "odm_meshing: Poisson octree depth %d, not --mesh-octree-depth %d: a deeper cell would be finer "
            "than the cloud's %.1f cm sampling (raise --pc-quality for a denser cloud and a finer mesh)",
            depth, opts.mesh_octree_depth, 100 * sampling_m,
        )  # fmt: skip
    return depth


def _trimmed_3d(
    tree: ProjectTree,
    points: np.ndarray,
    sampling_m: float,
    depth: int,
    threads: int,
    progress: Progress,
) -> tuple[TriangleMesh, int, float]:
    """(the trimmed Poisson mesh, Poisson's face count, the fraction of faces trimmed)."""
    pos = xyz(points)
    normals = np.column_stack([points[f"n{a}"] for a in "xyz"])
    try:
        poisson = screened_poisson(pos, normals, depth, threads)
    except ValueError as err:
        raise OdmStageError(f"odm_meshing: {err} (from {tree.filtered_point_cloud})") from None
    distance = max(TRIM_SAMPLINGS * sampling_m, TRIM_CELLS * poisson.cell_m)
    progress(0.5, f"trimming {poisson.mesh.n_faces:,} faces farther than {distance:.2f} m from the cloud")
    trimmed = trim_to_cloud(poisson.mesh, pos, distance)
    if trimmed.n_faces == 0:
        raise OdmStageError(
            f"odm_meshing: no face of the Poisson surface lies within {distance:.2f} m of the cloud "
            f"{tree.filtered_point_cloud}; check the dense cloud (odm_filterpoints)"
        )
    return trimmed, poisson.mesh.n_faces, 1.0 - trimmed.n_faces / poisson.mesh.n_faces


def _mesh_25d(tree: ProjectTree, n_points: int, opts: MeshingOptions) -> tuple[TriangleMesh, float]:
    """(the decimated 2.5D mesh, its height grid's cell in metres): ODM's DSM resolution is the cloud's
    spacing (radius_steps[0] / multiplier), 8 x coarser for the sparse cloud of --fast-orthophoto. The
    cloud is gridded from the file a chunk at a time: the grid is bounded by --mesh-size, the cloud is not."""
    points = tree.filtered_point_cloud
    stats = tree.filtered_point_cloud_stats
    spacing = recorded_spacing_m(stats) or 0.0
    if not _dense(tree):
        spacing *= FAST_ORTHOPHOTO_COARSER
    vertices = max_vertices(opts.mesh_size, n_points)
    bounds = xy_bounds(points)
    cell = grid_cell_m(bounds, spacing, vertices)
    radii = [max(spacing, recorded_sampling_m(stats) or 0.0, cell)]
    for _ in range(RADIUS_STEPS - 1):
        radii.append(radii[-1] * math.sqrt(2))
    mesh = grid_mesh(height_grid(points, cell, tuple(radii), bounds))
    if mesh.n_faces == 0:
        raise OdmStageError(f"odm_meshing: the 2.5D grid of {tree.filtered_point_cloud} has no cell to mesh")
    return decimate(mesh, target_faces(vertices), tree.odm_meshing), cell


def max_vertices(mesh_size: int, n_points: int) -> int:
    """The meshes' vertex budget: --mesh-size (ODM: "the maximum vertex count"), and no more than the cloud
    has points: a finer mesh only interpolates between them, at the texturing's cost."""
    return max(1, min(mesh_size, n_points))


def _dense(tree: ProjectTree) -> bool:
    """Whether odm_filterpoints recorded a dense cloud (False for --fast-orthophoto's sparse one)."""
    stats = tree.filtered_point_cloud_stats
    return bool(json.loads(stats.read_text()).get("dense", True)) if stats.is_file() else True


def run(
    tree: ProjectTree, opts: MeshingOptions, key: str = "", map_units: MapUnits = serial_map
) -> MeshingResult:
    """The stage in one process (what tests, benchmarks and scripts call; no units)."""
    return odm_meshing(tree, opts)
