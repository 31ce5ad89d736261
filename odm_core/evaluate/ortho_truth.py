"""An orthophoto against the synthetic true orthophoto: per-tile displacement by phase correlation.

The camera-centre similarity (the GPS noise's share) is applied to our pixels' positions first, as for the
dense cloud and the DEM; the true orthophoto is resampled onto our pixels, and every fully covered tile is
phase-correlated with it. A displacement here is a local misplacement of the orthophoto: a wrong surface
height under the photos, or a seam between photos that disagree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import rasterio

from odm_core.evaluate.dense_truth import camera_similarity, nadir_centres

TILE_PX = 128
MIN_RESPONSE = 0.1  # phase correlation peaks weaker than this are texture-less tiles, not measurements


@dataclass(frozen=True)
class OrthoAccuracy:
    cell_m: float
    tiles: int
    median_shift_px: float
    p90_shift_px: float
    covered: float  # share of the nadir block's cells with a valid (alpha) orthophoto pixel
    # each measured tile: its centre (x, y) in the orthophoto's CRS and its shift in pixels
    tile_shifts: tuple[tuple[float, float, float], ...] = ()


def ortho_accuracy(truth_dir: Path, ortho: Path, cameras: Path | None) -> OrthoAccuracy:
    """Tile shifts of `ortho` against the true orthophoto, in our pixels, after the camera similarity
    (`cameras`: shots.geojson, or reconstruction.json for a model without georeference). Our pixels are
    placed at the true mean ground height, taken into our frame through the similarity."""
    scale, rotation, shift = camera_similarity(truth_dir, cameras)
    truth_meta = json.loads((truth_dir / "truth.json").read_text())
    true_ground = np.array(
        [*np.mean(nadir_centres(truth_dir), axis=0), np.mean(truth_meta["terrain_altitude_range"])]
    )
    ground_z = float((rotation.T @ (true_ground - shift) / scale)[2])
    with rasterio.open(ortho) as src:
        ours = src.read()
        rows, cols = np.mgrid[0 : src.height, 0 : src.width]
        x, y = rasterio.transform.xy(src.transform, rows.ravel(), cols.ravel())
        cell_m, transform = src.res[0], src.transform
    pts = np.column_stack([np.asarray(x), np.asarray(y), np.full(len(rows.ravel()), ground_z)])
    pts = scale * pts @ rotation.T + shift
    with rasterio.open(truth_dir / "orthophoto.tif") as truth:
        inverse = ~truth.transform
        tc, tr = inverse @ (pts[:, 0], pts[:, 1])
        reference = truth.read()
    map_x = (np.asarray(tc) - 0.5).astype(np.float32).reshape(ours.shape[1:])
    map_y = (np.asarray(tr) - 0.5).astype(np.float32).reshape(ours.shape[1:])
    true_grey = cv2.remap(_grey(reference[:3]), map_x, map_y, cv2.INTER_LINEAR, borderValue=-1)
    our_grey = _grey(ours[:3])
    valid = (ours[3] > 0) & (true_grey >= 0)
    shifts: list[float] = []
    centres: list[tuple[float, float]] = []
    window = cv2.createHanningWindow((TILE_PX, TILE_PX), cv2.CV_32F)
    for r in range(0, ours.shape[1] - TILE_PX + 1, TILE_PX):
        for c in range(0, ours.shape[2] - TILE_PX + 1, TILE_PX):
            if not valid[r : r + TILE_PX, c : c + TILE_PX].all():
                continue
            a = our_grey[r : r + TILE_PX, c : c + TILE_PX]
            b = true_grey[r : r + TILE_PX, c : c + TILE_PX]
            (dx, dy), response = cv2.phaseCorrelate(_normalise(b), _normalise(a), window)
            if response >= MIN_RESPONSE:
                shifts.append(np.hypot(dx, dy))
                centres.append(rasterio.transform.xy(transform, r + TILE_PX / 2, c + TILE_PX / 2))
    return OrthoAccuracy(
        cell_m=cell_m,
        tiles=len(shifts),
        median_shift_px=float(np.median(shifts)) if shifts else float("inf"),
        p90_shift_px=float(np.percentile(shifts, 90)) if shifts else float("inf"),
        covered=float(valid.mean()),
        tile_shifts=tuple((float(x), float(y), float(d)) for (x, y), d in zip(centres, shifts, strict=True)),
    )


def _grey(rgb: np.ndarray) -> np.ndarray:
    return (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]).astype(np.float32)


def _normalise(tile: np.ndarray) -> np.ndarray:
    return ((tile - tile.mean()) / max(float(tile.std()), 1e-6)).astype(np.float32)
