"""Decimation to ODM's face count: quadric edge collapse by COLMAP (pycolmap.simplify_mesh).

ODM passes --mesh-size (a vertex count) to OpenMVS ReconstructMesh as --target-face-num 2 x mesh-size
(opendm/mesh.py). COLMAP's QEM keeps open boundaries in place (boundary quadrics), which kept the largest
error on Brighton's mesh at 1.3 cm where fast-simplification's reached 34 cm
(../shared/reference/mesh-texturing.md, section 1.3).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from odm_core.mesh.ply import TriangleMesh, read_mesh_ply, write_mesh_ply


def target_faces(mesh_size: int) -> int:
    """ODM's face target for a --mesh-size (vertex count): twice as many faces."""
    return 2 * mesh_size


def decimate(mesh: TriangleMesh, max_faces: int, workdir: Path) -> TriangleMesh:
    """The mesh with at most about max_faces faces (unchanged when it has no more than that).

    Runs in `workdir` (temporary PLY files, removed after). Raises RuntimeError when COLMAP writes
    nothing."""
    import pycolmap

    if mesh.n_faces <= max_faces:
        return mesh
    options = pycolmap.MeshSimplificationOptions()
    options.target_face_ratio = max_faces / mesh.n_faces
    workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=workdir, prefix=".decimate-") as tmp:
        source, result = Path(tmp) / "in.ply", Path(tmp) / "out.ply"
        write_mesh_ply(source, mesh)
        pycolmap.simplify_mesh(source, result, options)
        if not result.is_file():
            raise RuntimeError(f"COLMAP's mesh simplification wrote no mesh ({mesh.n_faces} faces in)")
        return read_mesh_ply(result).compacted()
