"""The georeferenced cloud cut once into the boxes that tile units read (odm_dem, odm_orthophoto).

A DEM or orthophoto tile unit needs only the points inside its tile and halo. Each unit reading the whole
LAZ and keeping its part costs tiles x cloud. Instead the cloud is read once, in pieces of PIECE_POINTS
consecutive points, each piece a unit of its own: it seeks to its range of the LAZ (laspy; LAZ is
compressed in chunks, so a reader decompresses only its range) and writes, for every box, the points
inside it as one member of an .npz. A tile unit then reads its own member of each piece (an .npz member
is read alone), so no unit and no process holds the whole cloud and the cloud is decompressed once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import laspy
import numpy as np

from odm_core.artifacts import sha256_text, unit_checkpoint_valid
from odm_core.worker import peak_rss_mb, prepare_unit, save_arrays

PIECE_POINTS = 2_000_000  # points a piece unit reads: about 64 MB of positions and classes
Box = tuple[float, float, float, float]  # minx, miny, maxx, maxy in the cloud's CRS (metres)


@dataclass(frozen=True)
class CloudPiece:
    """Points [start, start + count) of `laz`, cut into `boxes` (name, bounds), written to `out`."""

    laz: str
    start: int
    count: int
    boxes: tuple[tuple[str, Box], ...]
    out: str
    key: str


@dataclass(frozen=True)
class PieceResult:
    n_points: int  # -1: reused from its checkpoint
    seconds: float
    peak_rss_mb: float = 0.0


def plan_pieces(
    laz: Path, boxes: tuple[tuple[str, Box], ...], folder: Path, key: str
) -> tuple[CloudPiece, ...]:
    """One piece per PIECE_POINTS points of `laz` (none for an empty cloud), written into `folder` as
    cloud_K.npz; `key` (the stage's, with the boxes) keys their checkpoints."""
    with laspy.open(laz) as reader:
        n_points = int(reader.header.point_count)
    boxes_key = sha256_text(f"{key}|{boxes}")
    return tuple(
        CloudPiece(
            str(laz),
            start,
            min(PIECE_POINTS, n_points - start),
            boxes,
            str(folder / f"cloud_{start // PIECE_POINTS}.npz"),
            sha256_text(f"{boxes_key}|{start}"),
        )
        for start in range(0, n_points, PIECE_POINTS)
    )


def run_cloud_piece(piece: CloudPiece) -> PieceResult:
    """Read the piece's points and write each box's as an (n, 4) float64 array of x, y, z and the LAS
    classification (the function Dask workers execute; reuses its checkpoint when the key matches)."""
    if unit_checkpoint_valid(Path(piece.out), piece.key):
        return PieceResult(-1, 0.0)
    prepare_unit()
    start = time.perf_counter()
    with laspy.open(piece.laz) as reader:
        reader.seek(piece.start)
        points = reader.read_points(piece.count)
    x, y = np.asarray(points.x), np.asarray(points.y)
    xyzc = np.column_stack([x, y, np.asarray(points.z), np.asarray(points.classification, np.float64)])
    members = {}
    for name, (minx, miny, maxx, maxy) in piece.boxes:
        members[name] = xyzc[(x >= minx) & (x < maxx) & (y >= miny) & (y < maxy)]
    save_arrays(Path(piece.out), piece.key, **members)
    return PieceResult(len(x), time.perf_counter() - start, peak_rss_mb())


def box_points(pieces: tuple[str, ...], name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, z, classification) of box `name` from every piece file, each (n,); empty with no piece."""
    parts = []
    for path in pieces:
        with np.load(path) as data:
            parts.append(data[name])
    xyzc = np.concatenate(parts) if parts else np.zeros((0, 4))
    return xyzc[:, 0], xyzc[:, 1], xyzc[:, 2], xyzc[:, 3].astype(np.uint8)
