"""Texture patches (mvs-texturing's `generate_texture_patches`): connected faces sharing an edge and a
label, each patch's vertices duplicated into its own "wedges" whose UVs are the labelled photo's pixels.

Shapes: M faces, N mesh vertices, W wedges (one per (patch, vertex) pair), E interior edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from odm_core.mesh.ply import TriangleMesh


@dataclass(frozen=True)
class Charts:
    """faces: (M, 3) int64 mesh vertex ids of the faces kept; face_index: (M,) int64 their ids in the input
    mesh; labels: (M,) int32 view index (UNSEEN = -1); patch: (M,) int64 patch id per face; wedge: (M, 3)
    int64 wedge id per corner; wedge_vertex: (W,) int64 mesh vertex of each wedge; wedge_patch: (W,) int64;
    wedge_uv: (W, 2) float32 photo pixels (COLMAP) of each wedge, 0 for unseen patches."""

    faces: np.ndarray
    face_index: np.ndarray
    labels: np.ndarray
    patch: np.ndarray
    wedge: np.ndarray
    wedge_vertex: np.ndarray
    wedge_patch: np.ndarray
    wedge_uv: np.ndarray

    @property
    def n_patches(self) -> int:
        return int(self.patch.max()) + 1 if len(self.patch) else 0

    @property
    def wedge_label(self) -> np.ndarray:
        """(W,) int32 the label of each wedge's patch."""
        out = np.empty(len(self.wedge_vertex), np.int32)
        out[self.wedge.ravel()] = np.repeat(self.labels, 3)
        return out


def edge_face_pairs(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of faces sharing an edge: ((P, 2) int64 face ids, (P, 2) int64 the edge's two vertex ids).

    Edges shared by more than two faces (non-manifold) pair consecutive faces in sorted order.
    """
    m = len(faces)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges.sort(axis=1)
    face_of = np.tile(np.arange(m, dtype=np.int64), 3)
    key = edges[:, 0] * (int(faces.max(initial=0)) + 1) + edges[:, 1]
    order = np.argsort(key, kind="stable")
    same = key[order[1:]] == key[order[:-1]]
    a, b = order[:-1][same], order[1:][same]
    return np.stack([face_of[a], face_of[b]], axis=1), edges[a]


def build_charts(mesh: TriangleMesh, labels: np.ndarray, uv_px: np.ndarray, keep_unseen: bool) -> Charts:
    """Patches and wedges of `mesh` (M0 faces) for labels (M0,) and uv_px (M0, 3, 2); unseen faces are
    dropped unless `keep_unseen`, then they form patches of label -1 (mvs-texturing's unseen patch)."""
    keep = np.ones(len(labels), bool) if keep_unseen else labels >= 0
    face_index = np.nonzero(keep)[0]
    faces = np.asarray(mesh.faces, np.int64)[face_index]
    lab = np.asarray(labels, np.int32)[face_index]
    pairs, _ = edge_face_pairs(faces)
    pairs = pairs[lab[pairs[:, 0]] == lab[pairs[:, 1]]]
    m = len(faces)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(m, m))
    _, patch = connected_components(graph, directed=False)
    patch = patch.astype(np.int64)
    n_vertices = int(mesh.vertices.shape[0])
    key = (patch[:, None] * n_vertices + faces).ravel()
    uniq, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    uv = np.nan_to_num(np.asarray(uv_px, np.float32)[face_index].reshape(-1, 2)[first], nan=0.0)
    return Charts(
        faces=faces,
        face_index=face_index,
        labels=lab,
        patch=patch,
        wedge=inverse.reshape(-1, 3).astype(np.int64),
        wedge_vertex=(uniq % n_vertices).astype(np.int64),
        wedge_patch=(uniq // n_vertices).astype(np.int64),
        wedge_uv=uv.astype(np.float32),
    )


def source_resolution(mesh: TriangleMesh, charts: Charts) -> float:
    """The photos' resolution on the surface, pixels per metre: sqrt(sum of the seen faces' pixel areas /
    sum of their 3D areas) (an area-weighted mean; the atlas' texels_per_unit)."""
    seen = charts.labels >= 0
    p = np.asarray(mesh.vertices, np.float64)[charts.faces[seen]]
    area3d = 0.5 * np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1)
    uv = charts.wedge_uv[charts.wedge[seen]].astype(np.float64)
    d1, d2 = uv[:, 1] - uv[:, 0], uv[:, 2] - uv[:, 0]
    area_px = 0.5 * np.abs(d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0])
    if area3d.sum() <= 0 or area_px.sum() <= 0:
        raise ValueError("no seen face has an area in 3D and in its photo: nothing to texture")
    return float(np.sqrt(area_px.sum() / area3d.sum()))


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(N, 3) float32 area-weighted unit vertex normals (0, 0, 1 where a vertex has no area)."""
    p = vertices[faces]
    fn = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    n = np.zeros_like(vertices, dtype=np.float64)
    for k in range(3):
        np.add.at(n, faces[:, k], fn)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    out = np.where(length > 0, n / np.maximum(length, 1e-300), [0.0, 0.0, 1.0])
    return out.astype(np.float32)
