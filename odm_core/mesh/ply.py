"""Triangle meshes and their PLY files (binary little-endian, as ODM's odm_mesh.ply and odm_25dmesh.ply).

Vertices are float32 x, y, z in the model frame (UTM minus the coords.txt offset, metres); faces are
lists of three int32 vertex indices. The reader takes any binary little-endian PLY whose vertices have
x, y, z among scalar properties and whose faces are 3-index lists (pycolmap's and open3d's output).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from odm_core.artifacts import atomic_path

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "<i2", "int16": "<i2",
    "ushort": "<u2", "uint16": "<u2", "int": "<i4", "int32": "<i4", "uint": "<u4", "uint32": "<u4",
    "float": "<f4", "float32": "<f4", "double": "<f8", "float64": "<f8",
}  # fmt: skip


@dataclass(frozen=True)
class TriangleMesh:
    """vertices (N x 3, float64, metres) and faces (M x 3, int64 indices into vertices)."""

    vertices: np.ndarray
    faces: np.ndarray

    @property
    def n_vertices(self) -> int:
        return len(self.vertices)

    @property
    def n_faces(self) -> int:
        return len(self.faces)

    def compacted(self) -> TriangleMesh:
        """The same faces over only the vertices they use, renumbered in order."""
        used = np.zeros(len(self.vertices), bool)
        used[self.faces.ravel()] = True
        new_index = np.cumsum(used) - 1
        return TriangleMesh(self.vertices[used], new_index[self.faces])

    def face_centres(self) -> np.ndarray:
        """Centroid of every face (M x 3)."""
        return self.vertices[self.faces].mean(axis=1)


def write_mesh_ply(path: Path, mesh: TriangleMesh) -> Path:
    """Write `mesh` as a binary PLY (float32 vertices, uchar-counted int32 faces), atomically."""
    faces = np.zeros(len(mesh.faces), dtype=[("n", "u1"), ("index", "<i4", (3,))])
    faces["n"] = 3
    faces["index"] = mesh.faces
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment odmflow\n"
        f"element vertex {mesh.n_vertices}\nproperty float x\nproperty float y\nproperty float z\n"
        f"element face {mesh.n_faces}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    with atomic_path(path) as tmp, tmp.open("wb") as out:
        out.write(header.encode("ascii"))
        out.write(np.ascontiguousarray(mesh.vertices, dtype="<f4").tobytes())
        out.write(faces.tobytes())
    return path


def read_mesh_ply(path: Path) -> TriangleMesh:
    """Read a binary little-endian triangle-mesh PLY. Raises ValueError naming the file otherwise."""
    with path.open("rb") as f:
        header = _read_header(f, path)
        vertex_fields, n_vertices = header["vertex"]
        vertices = np.fromfile(f, dtype=np.dtype(vertex_fields), count=n_vertices)
        face_fields, n_faces = header.get("face", ([], 0))
        if n_faces and (len(face_fields) != 1 or face_fields[0][1] != "list"):
            raise ValueError(f"{path}: faces must be one list property (vertex indices)")
        count_t, index_t = face_fields[0][2] if n_faces else ("u1", "<i4")
        face_dtype = np.dtype([("n", count_t), ("index", index_t, (3,))])
        faces = np.fromfile(f, dtype=face_dtype, count=n_faces)
    if n_faces and (faces["n"] != 3).any():
        raise ValueError(f"{path}: only triangle faces are supported")
    xyz = np.column_stack([vertices[a] for a in "xyz"]).astype(np.float64)
    return TriangleMesh(xyz, faces["index"].astype(np.int64))


def _read_header(f: object, path: Path) -> dict[str, tuple[list, int]]:
    """{element: (fields, count)}; a vertex field is (name, dtype), a list field ("name", "list", types)."""
    readline = f.readline  # type: ignore[attr-defined]
    if readline().strip() != b"ply" or readline().strip() != b"format binary_little_endian 1.0":
        raise ValueError(f"{path} is not a binary little-endian PLY")
    elements: dict[str, tuple[list, int]] = {}
    current = ""
    while (line := readline().decode("ascii", "replace").split()) != ["end_header"]:
        if not line:
            raise ValueError(f"{path}: PLY header ends without end_header")
        if line[0] == "element":
            current = line[1]
            elements[current] = ([], int(line[2]))
        elif line[0] == "property" and line[1] == "list":
            elements[current][0].append((line[4], "list", (_PLY_TYPES[line[2]], _PLY_TYPES[line[3]])))
        elif line[0] == "property":
            elements[current][0].append((line[2], _PLY_TYPES[line[1]]))
    if "vertex" not in elements:
        raise ValueError(f"{path}: PLY has no vertex element")
    return elements
