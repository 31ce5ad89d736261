"""all.zip as NodeODM packs it: paths relative to the project, no top-level folder, stored uncompressed.

The default list is NodeODM's (`Task.js` allPaths); a task's `outputs` replace it. Only paths that exist
go in; folders go in whole. task_output.txt (the task's whole console) is written first.
"""

from __future__ import annotations

import os
import posixpath
import zipfile
from collections.abc import Callable
from pathlib import Path

DEFAULT_PATHS = (
    *(f"odm_orthophoto/odm_orthophoto.{ext}" for ext in ("tif", "tfw", "png", "wld", "mbtiles", "kmz")),
    "odm_orthophoto/odm_orthophoto_extent.dxf",
    "odm_orthophoto/cutline.gpkg",
    "odm_georeferencing",
    "odm_texturing",
    "odm_dem/dsm.tif",
    "odm_dem/dtm.tif",
    "odm_dem/dsm.euclideand.tif",
    "odm_dem/dtm.euclideand.tif",
    "dsm_tiles",
    "dtm_tiles",
    "orthophoto_tiles",
    "potree_pointcloud",
    "entwine_pointcloud",
    "3d_tiles",
    "images.json",
    "cameras.json",
    "task_output.txt",
    "log.json",
    "odm_report",
)


def safe_outputs(paths: list[str]) -> list[str]:
    """A client's `outputs`, as NodeODM's parseUnsafePathsList makes them: normalised, no leading '..'."""
    cleaned = []
    for raw in paths:
        norm = posixpath.normpath(str(raw).replace("\\", "/")).lstrip("/")
        while norm.startswith("../") or norm == "..":
            norm = norm[3:] if norm.startswith("../") else ""
        if norm and norm != ".":
            cleaned.append(norm)
    return cleaned


def _entries(root: Path, rel: str) -> list[tuple[Path, str]]:
    """The files under one listed path, with their names in the zip; nothing outside the project."""
    base = root.resolve()
    path = (base / rel).resolve()
    if not path.is_relative_to(base) or not path.exists():
        return []
    if path.is_file():
        return [(path, path.relative_to(base).as_posix())]
    found = []
    for folder, _dirs, files in os.walk(path):
        for name in sorted(files):
            f = Path(folder) / name
            if f.is_file() and not f.is_symlink():
                found.append((f, f.relative_to(base).as_posix()))
    return found


def build_zip(
    root: Path, target: Path, outputs: list[str], console: list[str], stop: Callable[[], bool]
) -> int:
    """Write all.zip for the project at `root` into `target` (atomically); returns its size.

    `stop()` is asked between files; when true the partial zip is deleted and InterruptedError raised.
    """
    (root / "task_output.txt").write_text("\n".join(console) + "\n", encoding="utf-8")
    listed = safe_outputs(outputs) or list(DEFAULT_PATHS)
    part = target.with_name(target.name + ".part")
    seen: set[str] = set()
    try:
        with zipfile.ZipFile(part, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for rel in listed:
                for path, arcname in _entries(root, rel):
                    if stop():
                        raise InterruptedError("cancelled while packing all.zip")
                    if arcname not in seen:
                        seen.add(arcname)
                        zf.write(path, arcname)
        part.replace(target)
    finally:
        part.unlink(missing_ok=True)
    return target.stat().st_size
