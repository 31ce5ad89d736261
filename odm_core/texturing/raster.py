"""Texel rasterisation (numba) and bilinear photo sampling (OpenCV) for baking atlas pages.

Texel convention: texel (x, y) covers [x, x+1) x [y, y+1) of the page, its centre at (x + 0.5, y + 0.5);
a texel belongs to a triangle when its centre does (top-left fill rule not needed: the first triangle wins).
Photo pixels follow COLMAP (top-left pixel centre at (0.5, 0.5)); OpenCV's remap puts it at (0, 0).
"""

from __future__ import annotations

import cv2
import numba
import numpy as np

from odm_core.photos.decode import read_image

REMAP_COLS = 4096  # remap maps are reshaped to rows of this many samples
MAX_ROWS = 32000  # OpenCV refuses maps of more than 32767 rows


@numba.njit(cache=True, nogil=True)
def _rasterise(tri: np.ndarray, width: int, height: int, out_texel: np.ndarray, out_bary: np.ndarray,
               out_face: np.ndarray) -> int:  # fmt: skip
    """Texels whose centre lies in each triangle tri (K, 3, 2): flat index y * width + x, barycentrics
    (of corners 1 and 2) and triangle index, written into the out arrays; returns how many."""
    n = 0
    cap = len(out_texel)
    for k in range(tri.shape[0]):
        x0, y0 = tri[k, 0, 0], tri[k, 0, 1]
        x1, y1 = tri[k, 1, 0], tri[k, 1, 1]
        x2, y2 = tri[k, 2, 0], tri[k, 2, 1]
        det = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        if det == 0.0:
            continue
        xmin = max(int(np.floor(min(x0, x1, x2) - 0.5)), 0)
        xmax = min(int(np.ceil(max(x0, x1, x2) - 0.5)), width - 1)
        ymin = max(int(np.floor(min(y0, y1, y2) - 0.5)), 0)
        ymax = min(int(np.ceil(max(y0, y1, y2) - 0.5)), height - 1)
        for y in range(ymin, ymax + 1):
            py = y + 0.5
            for x in range(xmin, xmax + 1):
                px = x + 0.5
                b1 = ((px - x0) * (y2 - y0) - (x2 - x0) * (py - y0)) / det
                b2 = ((x1 - x0) * (py - y0) - (px - x0) * (y1 - y0)) / det
                eps = -1e-6
                if b1 >= eps and b2 >= eps and 1.0 - b1 - b2 >= eps and n < cap:
                    out_texel[n] = y * width + x
                    out_bary[n, 0] = b1
                    out_bary[n, 1] = b2
                    out_face[n] = k
                    n += 1
    return n


def bbox_texels(tri: np.ndarray) -> np.ndarray:
    """(K,) int64 upper bound of the texels each triangle (K, 3, 2) covers (its bounding box)."""
    lo = np.floor(tri.min(axis=1) - 0.5)
    hi = np.ceil(tri.max(axis=1) - 0.5)
    return np.prod(np.maximum(hi - lo + 1, 0), axis=1).astype(np.int64)


def rasterise(tri: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Texels covered by triangles tri (K, 3, 2) in texels: (T,) int64 flat index, (T, 3) float32
    barycentrics, (T,) int64 triangle index."""
    cap = int(bbox_texels(tri).sum()) if len(tri) else 0
    texel = np.empty(cap, np.int64)
    bary = np.empty((cap, 2), np.float32)
    face = np.empty(cap, np.int64)
    n = _rasterise(np.ascontiguousarray(tri, np.float64), width, height, texel, bary, face)
    b = np.empty((n, 3), np.float32)
    b[:, 1:] = bary[:n]
    b[:, 0] = 1.0 - b[:, 1] - b[:, 2]
    return texel[:n], b, face[:n]


def sample_bilinear(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Colours (P, C) float32 of `image` (H, W, C) at COLMAP pixel coordinates xy (P, 2), bilinear, the
    border replicated. The maps are laid out REMAP_COLS wide, at most MAX_ROWS rows per remap."""
    p = len(xy)
    rows = -(-p // REMAP_COLS)
    map_x = np.zeros(rows * REMAP_COLS, np.float32)
    map_y = np.zeros(rows * REMAP_COLS, np.float32)
    map_x[:p] = xy[:, 0] - 0.5
    map_y[:p] = xy[:, 1] - 0.5
    parts = [np.zeros((0, image.shape[2]), np.float32)]
    for r0 in range(0, rows, MAX_ROWS):
        mx = map_x.reshape(rows, REMAP_COLS)[r0 : r0 + MAX_ROWS]
        my = map_y.reshape(rows, REMAP_COLS)[r0 : r0 + MAX_ROWS]
        part = cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        parts.append(np.asarray(part, np.float32).reshape(-1, image.shape[2]))
    return np.concatenate(parts)[:p]


def read_photo(path: str) -> np.ndarray:
    """A photo decoded as (H, W, 3) uint8 BGR (photos.decode.read_image); raises naming the file."""
    image = read_image(path, cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot decode photo {path} for texturing")
    return image
