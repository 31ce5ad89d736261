"""Dense point clouds in memory (a numpy structured array) and as binary PLY files.

The fields are ODM's: position, normal, colour and `views` (how many photos saw the point).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from odm_core.artifacts import atomic_path

POINT_DTYPE = np.dtype(
    [
        ("x", "<f4"),
        ("y", "<f4"),
        ("z", "<f4"),
        ("nx", "<f4"),
        ("ny", "<f4"),
        ("nz", "<f4"),
        ("red", "u1"),
        ("green", "u1"),
        ("blue", "u1"),
        ("views", "u1"),
    ]
)
_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "<i2", "int16": "<i2", "ushort": "<u2", "uint16": "<u2",
    "int": "<i4", "int32": "<i4", "uint": "<u4", "uint32": "<u4",
    "float": "<f4", "float32": "<f4", "double": "<f8", "float64": "<f8",
}  # fmt: skip
_NAMES = {"f4": "float", "u1": "uchar", "f8": "double", "i4": "int", "u2": "ushort"}


def empty_points(n: int) -> np.ndarray:
    """n zeroed points with ODM's fields."""
    return np.zeros(n, dtype=POINT_DTYPE)


def xyz(points: np.ndarray) -> np.ndarray:
    """N x 3 float64 positions."""
    return np.column_stack([points["x"], points["y"], points["z"]]).astype(np.float64)


def rgb(points: np.ndarray) -> np.ndarray:
    """N x 3 uint8 colours."""
    return np.column_stack([points["red"], points["green"], points["blue"]])


def write_ply(path: Path, points: np.ndarray) -> Path:
    """Binary little-endian PLY with one vertex element holding the array's fields (atomically)."""
    props = "".join(f"property {_NAMES[points.dtype[n].str[1:]]} {n}\n" for n in points.dtype.names or ())
    header = f"ply\nformat binary_little_endian 1.0\nelement vertex {len(points)}\n{props}end_header\n"
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        f.write(header.encode("ascii"))
        f.write(np.ascontiguousarray(points).tobytes())
    return path


def vertex_layout(path: Path) -> tuple[int, np.dtype, int]:
    """(the byte offset of the vertex data, its record dtype, the vertex count) of a binary little-endian
    PLY. Raises ValueError for another format or list properties in the vertices."""
    with path.open("rb") as f:
        if f.readline().strip() != b"ply":
            raise ValueError(f"{path} is not a PLY file")
        fmt, count, fields = "", 0, []
        in_vertex = False
        while (line := f.readline()) and line.strip() != b"end_header":
            words = line.decode("ascii", "replace").split()
            if words[:1] == ["format"]:
                fmt = words[1]
            elif words[:1] == ["element"]:
                in_vertex = words[1] == "vertex"
                count = int(words[2]) if in_vertex else count
            elif words[:1] == ["property"] and in_vertex:
                if words[1] == "list":
                    raise ValueError(f"{path}: list properties in vertices are not supported")
                fields.append((words[2], _PLY_TYPES[words[1]]))
        if fmt != "binary_little_endian":
            raise ValueError(f"{path}: only binary little-endian PLY is read (found {fmt or 'none'})")
        return f.tell(), np.dtype(fields), count


def vertex_count(path: Path) -> int:
    """How many vertices the PLY holds (its header's count). Raises ValueError as vertex_layout."""
    return vertex_layout(path)[2]


def vertex_records(path: Path, piece: int | None = None) -> Iterator[np.ndarray]:
    """The PLY's vertex records (its own dtype) in arrays of at most `piece` (None: all in one), read one
    after the other: a pass over the cloud holds a piece, not the cloud. Raises ValueError as
    vertex_layout, and when the file is shorter than its header says."""
    offset, dtype, count = vertex_layout(path)
    piece = piece or max(count, 1)
    with path.open("rb") as f:
        f.seek(offset)
        for start in range(0, count, piece):
            part = np.fromfile(f, dtype=dtype, count=min(piece, count - start))
            if len(part) < min(piece, count - start):
                raise ValueError(f"{path} is truncated: {start + len(part)} of {count} vertices")
            yield part


def xyz_pieces(path: Path, piece: int) -> Iterator[np.ndarray]:
    """vertex_records' positions: float64 (n, 3) arrays of at most `piece` vertices."""
    return (xyz(part) for part in vertex_records(path, piece))


def read_ply(path: Path) -> np.ndarray:
    """The vertices of a binary little-endian PLY as a structured array, with ODM's fields filled in.

    Fields the file lacks (normals, colour, views) are zero; other elements after the vertices are ignored.
    """
    raw = next(vertex_records(path), None)
    if raw is None:
        return empty_points(0)
    points = empty_points(len(raw))
    for name in POINT_DTYPE.names or ():
        if name in (raw.dtype.names or ()):
            points[name] = raw[name]
    return points
