"""LAS/LAZ writing shared by the sparse and the dense cloud: point format 7, CRS, atomic writes."""

from __future__ import annotations

from pathlib import Path

import laspy
import numpy as np
from pyproj import CRS

from odm_core.artifacts import atomic_path

LAS_SCALE = 0.001  # millimetres, as ODM


def las_points(
    pos: np.ndarray, colours: np.ndarray, crs: CRS | None = None, user_data: np.ndarray | None = None
) -> laspy.LasData:
    """LAS 1.4 point format 7: positions at 1 mm, 8-bit colours as 16-bit (x 257), optional CRS (WKT)
    and per-point user_data (ODM stores the view count there)."""
    header = laspy.LasHeader(point_format=7, version="1.4")
    header.offsets = np.floor(pos.min(axis=0)) if len(pos) else np.zeros(3)
    header.scales = np.full(3, LAS_SCALE)
    if crs is not None:
        header.add_crs(crs)
    las = laspy.LasData(header)
    las.x, las.y, las.z = pos[:, 0], pos[:, 1], pos[:, 2]
    las.red, las.green, las.blue = (colours.astype(np.uint16) * 257).T
    if user_data is not None:
        las.user_data = user_data
    return las


def write_las(path: Path, las: laspy.LasData, compress: bool) -> Path:
    """Write LAZ (compress, lazrs on all cores) or plain LAS, atomically.

    laspy is handed an open file: given a path it picks compression by the suffix (here the temporary
    name's `.part`) and ignores do_compress.
    """
    backend = laspy.LazBackend.LazrsParallel if compress else None
    with atomic_path(path) as tmp, tmp.open("w+b") as f:
        las.write(f, do_compress=compress, laz_backend=backend)
    return path
