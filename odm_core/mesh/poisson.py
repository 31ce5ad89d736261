"""The 3D mesh: screened Poisson reconstruction of the oriented dense cloud, trimmed to the cloud.

Poisson as ODM runs PoissonRecon (opendm/mesh.py: --pointWeight 4 --samplesPerNode 1 --linearFit, Neumann
boundary), through open3d's build of Kazhdan's code (Kazhdan and Hoppe, "Screened Poisson Surface
Reconstruction", ACM TOG 2013). ODM keeps the surface Poisson extends over empty space (bubbles, skirts);
here every vertex farther from the cloud than the trim distance goes, with the faces that use it, and so
do the small pieces left floating (as OpenMVS ReconstructMesh --remove-spurious does for ODM).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from odm_core.mesh.ply import TriangleMesh

POINT_WEIGHT = 4.0  # ODM's --pointWeight
SAMPLES_PER_NODE = 1.0  # ODM's --samplesPerNode
SCALE = 1.1  # PoissonRecon's default: the octree cube over the cloud's bounding cube
NORMAL_NEIGHBOURS = 16  # points whose plane gives a normal where the cloud has none
MIN_PIECE_FRACTION = 0.001  # pieces with fewer faces than this share of the mesh are dropped...
MIN_PIECE_FACES = 100  # ...or than this many


@dataclass(frozen=True)
class PoissonMesh:
    """The reconstructed mesh and the edge of its finest octree cell (metres)."""

    mesh: TriangleMesh
    cell_m: float


def poisson_depth(requested: int, extent_m: float, spacing_m: float) -> int:
    """The octree depth to run: ODM's --mesh-octree-depth (`requested`), capped at the deepest level whose
    finest cell (SCALE x extent_m / 2^depth, metres) is no finer than the cloud's point spacing (metres;
    0 or less: no cap). A cell finer than the samples holds no detail they have: it only interpolates
    between them, and each level deeper costs about 3x the time (Brighton, 282k points 12.9 cm apart:
    depth 11 took 30.3 s and 1.8M faces to decimate, depth 10 10.4 s and 0.66M, the same surface to within
    1 mm median of the cloud)."""
    depth = requested
    while spacing_m > 0 and depth > 1 and SCALE * extent_m / 2**depth < spacing_m:
        depth -= 1
    return depth


def screened_poisson(xyz: np.ndarray, normals: np.ndarray, depth: int, threads: int) -> PoissonMesh:
    """Screened Poisson surface of points (N x 3, metres) with unit normals (N x 3) facing the cameras
    (zero normals, as a sparse cloud's: estimated from neighbours and turned up).

    depth is ODM's --mesh-octree-depth (the finest cell is 1.1 x the cloud's largest extent / 2^depth).
    Raises ValueError when the cloud has fewer than 3 points or Poisson returns no face.
    """
    import open3d as o3d  # imported here: a second of import time the other stages do not need

    if len(xyz) < 3:
        raise ValueError(f"Poisson reconstruction needs points; the cloud has {len(xyz)}")
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(xyz, np.float64)))
    if np.linalg.norm(normals, axis=1).min(initial=1.0) > 0.5:
        cloud.normals = o3d.utility.Vector3dVector(np.asarray(normals, np.float64))
    else:  # a sparse cloud has none: from each point's neighbours, turned up (the cameras are above)
        cloud.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(NORMAL_NEIGHBOURS))
        cloud.orient_normals_to_align_with_direction(np.array([0.0, 0.0, 1.0]))
    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
        mesh, _densities = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(
            cloud,
            depth=depth,
            scale=SCALE,
            linear_fit=True,
            n_threads=max(1, threads),
            samples_per_node=SAMPLES_PER_NODE,
            point_weight=POINT_WEIGHT,
        )
    faces = np.asarray(mesh.triangles, np.int64)
    if len(faces) == 0:
        raise ValueError("Poisson reconstruction returned no surface")
    extent = float(np.max(np.ptp(xyz, axis=0)))
    return PoissonMesh(TriangleMesh(np.asarray(mesh.vertices, np.float64), faces), SCALE * extent / 2**depth)


def trim_to_cloud(mesh: TriangleMesh, xyz: np.ndarray, max_distance_m: float) -> TriangleMesh:
    """The faces whose three vertices lie within max_distance_m of a cloud point, less the small pieces
    (connected by shared vertices) that are left: fewer faces than MIN_PIECE_FACES or
    MIN_PIECE_FRACTION of the rest. Returns the compacted mesh (possibly empty)."""
    distance, _ = cKDTree(xyz).query(mesh.vertices, k=1, workers=-1)
    near = distance <= max_distance_m
    faces = mesh.faces[near[mesh.faces].all(axis=1)]
    kept = drop_small_pieces(TriangleMesh(mesh.vertices, faces))
    return kept.compacted() if kept.n_faces else TriangleMesh(np.zeros((0, 3)), np.zeros((0, 3), np.int64))


def drop_small_pieces(mesh: TriangleMesh) -> TriangleMesh:
    """The mesh without its connected pieces of fewer than max(MIN_PIECE_FACES, MIN_PIECE_FRACTION of
    the faces) faces."""
    if mesh.n_faces == 0:
        return mesh
    labels = face_pieces(mesh)
    sizes = np.bincount(labels)
    keep = sizes[labels] >= max(MIN_PIECE_FACES, MIN_PIECE_FRACTION * mesh.n_faces)
    return TriangleMesh(mesh.vertices, mesh.faces[keep])


def face_pieces(mesh: TriangleMesh) -> np.ndarray:
    """Connected-piece label of every face (faces sharing a vertex are connected): the components of
    the bipartite graph of faces and their vertices."""
    n_faces = mesh.n_faces
    n = n_faces + len(mesh.vertices)
    rows = np.repeat(np.arange(n_faces), 3)
    graph = coo_matrix((np.ones(3 * n_faces, np.int8), (rows, n_faces + mesh.faces.ravel())), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels[:n_faces]
