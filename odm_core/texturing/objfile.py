"""The textured model's OBJ and MTL files, written as texrecon writes them (mvs-texturing `obj_model.cpp`,
`material_lib.cpp`), and a minimal reader for them (the GLB writer and the tests).

OBJ: `mtllib NAME.mtl`, `v` (model frame, 6 decimals), `vt` (u, 1 - v: texrecon flips V so that V points
up the image), `vn`, then per material `usemtl materialNNNN` and its faces `f v/vt/vn` (1-based).
MTL: per material texrecon's Ka/Kd/Ks/Tr/illum/Ns lines and `map_Kd NAME_materialNNNN_map_Kd.png`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from odm_core.artifacts import atomic_path, write_text

MODEL_NAME = "odm_textured_model_geo"
LEGACY_MTL = "odm_textured_model.mtl"  # ODM's copy for older viewers (stages/mvstex.py)


def material_name(page: int) -> str:
    return f"material{page:04d}"


def texture_name(page: int, prefix: str = MODEL_NAME) -> str:
    return f"{prefix}_{material_name(page)}_map_Kd.png"


def mtl_text(n_materials: int, prefix: str = MODEL_NAME) -> str:
    """texrecon's MTL for materials 0 .. n-1."""
    return "".join(
        f"newmtl {material_name(p)}\nKa 1.000000 1.000000 1.000000\nKd 1.000000 1.000000 1.000000\n"
        f"Ks 0.000000 0.000000 0.000000\nTr 0.000000\nillum 1\nNs 1.000000\n"
        f"map_Kd {texture_name(p, prefix)}\n"
        for p in range(n_materials)
    )


def write_obj(
    path: Path,
    vertices: np.ndarray,
    normals: np.ndarray,
    vt: np.ndarray,
    faces: np.ndarray,
    pages: np.ndarray,
) -> Path:
    """Write the OBJ. vertices, normals (N, 3); vt (T, 2) normalised, V down the image (flipped here);
    faces (M, 2, 3) int [vertex ids, vt ids] 0-based; pages (M,) material of each face."""
    order = np.argsort(pages, kind="stable")
    buf = io.StringIO()
    buf.write(f"mtllib {path.stem}.mtl\n")
    buf.write(_rows("v %.6f %.6f %.6f\n", vertices))
    buf.write(_rows("vt %.6f %.6f\n", np.column_stack([vt[:, 0], 1.0 - vt[:, 1]])))
    buf.write(_rows("vn %.6f %.6f %.6f\n", normals))
    for page in np.unique(pages):
        sel = order[pages[order] == page]
        v, t = faces[sel, 0] + 1, faces[sel, 1] + 1
        rows = np.stack([v, t, v], axis=2).reshape(-1, 9)
        buf.write(f"usemtl {material_name(int(page))}\n")
        buf.write(_rows("f %d/%d/%d %d/%d/%d %d/%d/%d\n", rows))
    return write_text(path, buf.getvalue())


def _rows(fmt: str, array: np.ndarray) -> str:
    """`fmt` (one row's format, ending in a newline) applied to every row of the 2D array: the text
    numpy.savetxt writes, in one formatting call instead of one per row."""
    return (fmt * len(array)) % tuple(array.ravel().tolist())


def write_mtl(out_dir: Path, n_materials: int) -> tuple[Path, Path]:
    """The MTL and ODM's legacy copy odm_textured_model.mtl."""
    text = mtl_text(n_materials)
    return write_text(out_dir / f"{MODEL_NAME}.mtl", text), write_text(out_dir / LEGACY_MTL, text)


@dataclass(frozen=True)
class ObjModel:
    """vertices (N, 3) float64; vt (T, 2) float64 as in the file (V up); groups: material name -> (K, 3, 2)
    int64 0-based [corner, (vertex, vt)]; textures: material name -> its map_Kd path."""

    vertices: np.ndarray
    vt: np.ndarray
    groups: dict[str, np.ndarray]
    textures: dict[str, Path]


def read_mtl(path: Path) -> dict[str, Path]:
    """material name -> map_Kd path (next to the MTL). Raises naming the file for a missing texture."""
    textures: dict[str, Path] = {}
    current = ""
    for line in path.read_text().splitlines():
        parts = line.split(maxsplit=1)
        if parts and parts[0] == "newmtl":
            current = parts[1].strip()
        elif parts and parts[0] == "map_Kd" and current:
            textures[current] = path.parent / parts[1].strip()
            if not textures[current].is_file():
                raise FileNotFoundError(f"{path}: texture {textures[current]} of {current} is missing")
    return textures


def read_obj(path: Path) -> ObjModel:
    """Read an OBJ of triangles `f v/vt[/vn]` with its MTL; raises naming the file on what it lacks."""
    lines = path.read_text().splitlines()
    mtl = [ln.split(maxsplit=1)[1] for ln in lines if ln.startswith("mtllib ")]
    if not mtl:
        raise ValueError(f"{path}: no mtllib line")
    textures = read_mtl(path.parent / mtl[0].strip())

    def floats(prefix: str, n: int) -> np.ndarray:
        rows = [ln[len(prefix) :] for ln in lines if ln.startswith(prefix)]
        return np.array(" ".join(rows).split(), np.float64).reshape(-1, n)

    groups: dict[str, list[str]] = {}
    current = None
    for ln in lines:
        if ln.startswith("usemtl "):
            current = ln.split(maxsplit=1)[1].strip()
            if current not in textures:
                raise ValueError(f"{path}: material {current} is not defined in {mtl[0]}")
            groups.setdefault(current, [])
        elif ln.startswith("f "):
            if current is None:
                raise ValueError(f"{path}: a face before any usemtl")
            groups[current].append(ln[2:])
    parsed = {}
    for name, rows in groups.items():
        per_corner = rows[0].split()[0].count("/") + 1 if rows else 2
        idx = np.array(" ".join(rows).replace("/", " ").split(), np.int64).reshape(-1, 3, per_corner)
        if per_corner < 2:
            raise ValueError(f"{path}: faces of {name} have no texture coordinates")
        parsed[name] = idx[:, :, :2] - 1
    return ObjModel(floats("v ", 3), floats("vt ", 2), parsed, textures)


def copy_file(src: Path, dst: Path) -> Path:
    """Copy src to dst atomically (a baked page to its texrecon name)."""
    with atomic_path(dst) as tmp, src.open("rb") as fin, tmp.open("wb") as fout:
        while chunk := fin.read(1 << 22):
            fout.write(chunk)
    return dst
