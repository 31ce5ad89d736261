"""Per-face view selection (mvs-texturing's, as ODM runs texrecon): which photo textures each face.

From the per-view data-term files (data_term.py, one Dask unit per photo): every (face, view) pair a
view sees with its GMI quality and mean colour; photometric outliers dropped (outliers.gauss_clamping);
texrecon's data costs and Potts smoothness over the face-adjacency graph solved by alpha-expansion
(mrf.py); faces no view keeps are UNSEEN. Each face's corners are then projected into its photo (full
size, lens distortion included, COLMAP pixels) for the atlas: the Labeling hand-over (labeling.py).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from odm_core.camera.view import ViewCamera
from odm_core.mesh.ply import TriangleMesh
from odm_core.ortho.render import project
from odm_core.texturing.data_term import DataTermUnit, data_term, plan_data_term
from odm_core.texturing.labeling import UNSEEN, Labeling
from odm_core.texturing.mrf import face_edges, patches, unary_costs
from odm_core.texturing.mrf_tiles import solve_potts_tiled
from odm_core.texturing.outliers import gauss_clamping
from odm_core.worker import MapUnits, load_arrays, serial_map


@dataclass(frozen=True)
class FaceViews:
    """Every (face, view) pair a view sees: face (P,) int64, view (P,) int64 index into the views,
    quality (P,) float64, colour (P, 3) float64 mean YCbCr 0-1."""

    face: np.ndarray
    view: np.ndarray
    quality: np.ndarray
    colour: np.ndarray


@dataclass(frozen=True)
class ViewSelection:
    """The labeling and what the user is told about it."""

    labeling: Labeling
    faces: int
    seen: int  # faces a photo textures
    patches: int  # connected pieces of faces textured by one photo (the MRF's result)
    patches_best_view: int  # the same had each face simply taken its best view
    pairs: int  # (face, view) pairs seen
    outliers: int  # pairs dropped as photometric outliers
    share: tuple[tuple[str, float], ...]  # (photo name, fraction of the faces it textures), largest first
    mrf_seconds: float

    def summary(self) -> list[str]:
        top = ", ".join(f"{name} {100 * f:.1f}%" for name, f in self.share[:3])
        return [
            f"view selection: {self.seen:,} of {self.faces:,} faces textured "
            f"({100 * self.seen / max(self.faces, 1):.1f}%) in {self.patches:,} patches "
            f"(best view per face: {self.patches_best_view:,}); {self.outliers:,} of {self.pairs:,} "
            f"face views dropped as colour outliers; most used photos: {top or 'none'}"
        ]


def load_face_views(unit_paths: Sequence[Path], n_faces: int) -> FaceViews:
    """The pairs of the data-term files, the i-th file being view i. Raises ValueError naming a file whose
    face ids do not fit the mesh (written for another mesh)."""
    parts = []
    for i, path in enumerate(unit_paths):
        try:
            arrays = load_arrays(path)
        except (OSError, ValueError, KeyError) as exc:
            raise FileNotFoundError(
                f"the data term {path} cannot be read ({exc}): run its unit again"
            ) from exc
        face = arrays["face"].astype(np.int64)
        if len(face) and (face.min() < 0 or face.max() >= n_faces):
            raise ValueError(f"the data term {path} names faces beyond the mesh's {n_faces:,}: stale file")
        parts.append((face, np.full(len(face), i), arrays["quality"], arrays["colour"]))
    if not parts:
        return FaceViews(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 3)))
    return FaceViews(
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]).astype(np.int64),
        np.concatenate([p[2] for p in parts]).astype(np.float64),
        np.concatenate([p[3] for p in parts]).astype(np.float64).reshape(-1, 3),
    )


def select_views(
    mesh: TriangleMesh, views: Sequence[ViewCamera], unit_paths: Sequence[Path], outliers: bool = True
) -> ViewSelection:
    """Label each face of `mesh` with the view (index into `views`) that textures it (module docstring).

    unit_paths: the data-term files of `views`, in the same order (data_term's outputs)."""
    if len(unit_paths) != len(views):
        raise ValueError(f"{len(unit_paths)} data-term files for {len(views)} views")
    pairs = load_face_views(unit_paths, mesh.n_faces)
    keep = gauss_clamping(pairs.face, pairs.colour) if outliers else np.ones(len(pairs.face), bool)
    face, view, quality = pairs.face[keep], pairs.view[keep], pairs.quality[keep]
    cost = unary_costs(face, view, quality)
    edges = face_edges(mesh.faces)
    seen = np.zeros(mesh.n_faces, bool)
    seen[face] = True
    edges = edges[seen[edges[:, 0]] & seen[edges[:, 1]]]
    start = time.perf_counter()
    centres = mesh.vertices[mesh.faces].mean(axis=1)[:, :2]
    labels = _solve(centres, seen, edges, face, view, cost)
    mrf_seconds = time.perf_counter() - start
    best = np.full(mesh.n_faces, UNSEEN, np.int64)
    order = np.lexsort((cost, face))
    first = np.r_[True, face[order][1:] != face[order][:-1]]
    best[face[order][first]] = view[order][first]
    labeling = Labeling(labels.astype(np.int32), corner_pixels(mesh, views, labels))
    counts = np.bincount(labels[seen], minlength=len(views))
    share = sorted(
        ((views[int(i)].name, counts[i] / mesh.n_faces) for i in np.flatnonzero(counts)), key=lambda s: -s[1]
    )
    return ViewSelection(
        labeling=labeling,
        faces=mesh.n_faces,
        seen=int(seen.sum()),
        patches=patches(labels, edges, seen),
        patches_best_view=patches(best, edges, seen),
        pairs=len(pairs.face),
        outliers=int((~keep).sum()),
        share=tuple((name, float(f)) for name, f in share),
        mrf_seconds=mrf_seconds,
    )


def _solve(
    centres: np.ndarray,
    seen: np.ndarray,
    edges: np.ndarray,
    face: np.ndarray,
    view: np.ndarray,
    cost: np.ndarray,
) -> np.ndarray:
    """(M,) int64 labels (view indices, UNSEEN for faces of no pair) from the MRF over the seen faces
    (centres: (M, 2) face centres, metres), solved in tiles (mrf_tiles) with sites renumbered for gco."""
    labels = np.full(len(centres), UNSEEN, np.int64)
    if not seen.any():
        return labels
    site_of = np.cumsum(seen) - 1
    labels[seen] = solve_potts_tiled(centres[seen], site_of[edges], site_of[face], view, cost)
    return labels


def corner_pixels(mesh: TriangleMesh, views: Sequence[ViewCamera], labels: np.ndarray) -> np.ndarray:
    """(M, 3, 2) float32 each face's corners in its label's photo (full size, distorted, COLMAP pixels),
    NaN for UNSEEN faces."""
    uv = np.full((mesh.n_faces, 3, 2), np.nan, np.float32)
    for i in np.unique(labels[labels != UNSEEN]):
        faces = np.flatnonzero(labels == i)
        u, v, _ = project(views[int(i)], mesh.vertices[mesh.faces[faces]].reshape(-1, 3))
        uv[faces] = np.stack([u, v], axis=1).reshape(-1, 3, 2)
    return uv


def run_selection(
    mesh: TriangleMesh,
    mesh_path: Path,
    views: list[ViewCamera],
    workdir: Path,
    key: str,
    cast_width: int = 1000,
    nadir: bool = False,
    map_units: MapUnits = serial_map,
) -> ViewSelection:
    """The whole selection in one call: plan the data-term units, run them through `map_units` (Dask's, or
    one after another here), select. `mesh` is `mesh_path` read (the units read the file themselves)."""
    units: list[DataTermUnit] = plan_data_term(mesh_path, views, workdir, key, cast_width, nadir)
    paths = [Path(p) for p in map_units(data_term, units)]
    return select_views(mesh, views, paths)
