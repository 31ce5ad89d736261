"""Orthorectifying photos onto a surface tile: which photos see each cell, and their blended colour.

Each cell of the tile (with its halo) is a point on the surface. For every photo whose frame holds part of
the tile, the points are projected through the photo's lens (pycolmap, distortion included); a z-buffer of
the same points seen from the photo marks the ones something nearer hides (a roof over the ground behind
it), so buildings are not smeared onto the ground. Each photo that sees a cell weighs it by how straight
down it looks and how far from the photo's border the cell falls; the colours are averaged with those
weights raised to a high power: in effect the best photo, but blended where two are about as good, so
no hard seam shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from odm_core.camera.view import REDUCED_DECODE, ViewCamera
from odm_core.dem.gridding import bilinear
from odm_core.photos.decode import read_image

ZBUFFER_PX = 4  # photo pixels per z-buffer cell
OCCLUSION_TOL_M = 0.3  # a point this much behind the nearest surface along the ray still counts as seen
OCCLUSION_TOL_REL = 0.005
BORDER_FEATHER = 0.1  # weights fall to 0 over the outer 10% of a photo's frame
WEIGHT_POWER = 8.0


@dataclass(frozen=True)
class PhotoImage:
    """A photo decoded at 1/scale of its size (RGB), and that scale."""

    pixels: np.ndarray
    scale: int


def decode_photo(view: ViewCamera, photo_px_m: float, cell_m: float) -> PhotoImage:
    """The photo at the largest libjpeg reduction (1, 2, 4, 8) that keeps its pixels finer than a cell."""
    factor = 1
    for f in (2, 4, 8):
        if photo_px_m * f <= cell_m:
            factor = f
    image = read_image(view.photo, REDUCED_DECODE[factor] | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise FileNotFoundError(f"cannot read photo {view.photo}")
    return PhotoImage(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), factor)


def project(view: ViewCamera, world: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Photo pixel coordinates (u, v; COLMAP convention, full size) and depth of model-frame points."""
    cam = world @ view.rotation.T + view.translation
    depth = cam[:, 2]
    uv = np.full((len(cam), 2), np.nan)
    ahead = depth > 1e-6
    uv[ahead] = view.lens().img_from_cam(cam[ahead])
    return uv[:, 0], uv[:, 1], depth


def visible(view: ViewCamera, u: np.ndarray, v: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Points inside the photo's frame that no nearer point of the same surface hides (z-buffer)."""
    inside = np.isfinite(u) & (u >= 0) & (v >= 0) & (u < view.width) & (v < view.height) & (depth > 0)
    cols = -(-view.width // ZBUFFER_PX)
    cell = (v[inside] // ZBUFFER_PX).astype(np.int64) * cols + (u[inside] // ZBUFFER_PX).astype(np.int64)
    nearest = np.full(cols * -(-view.height // ZBUFFER_PX), np.inf)
    np.minimum.at(nearest, cell, depth[inside])
    seen = np.zeros(len(u), bool)
    d = depth[inside]
    seen[np.nonzero(inside)[0]] = d <= nearest[cell] + OCCLUSION_TOL_M + OCCLUSION_TOL_REL * d
    return seen


def view_weight(view: ViewCamera, world: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """How good a view each photo has of each point: straight down, away from the frame's border."""
    ray = view.centre - world
    cos_down = ray[:, 2] / np.maximum(np.linalg.norm(ray, axis=1), 1e-9)
    edge = np.minimum.reduce([u, v, view.width - u, view.height - v]) / (
        BORDER_FEATHER * min(view.width, view.height)
    )
    return np.clip(cos_down, 0, 1) ** 2 * np.clip(edge, 0, 1)


def render(
    world: np.ndarray, views: list[ViewCamera], images: list[PhotoImage]
) -> tuple[np.ndarray, np.ndarray]:
    """(RGB float colours, total weight) of N model-frame surface points, blended over the photos."""
    total = np.zeros((len(world), 3))
    weight_sum = np.zeros(len(world))
    for view, image in zip(views, images, strict=True):
        u, v, depth = project(view, world)
        seen = visible(view, u, v, depth)
        if not seen.any():
            continue
        idx = np.nonzero(seen)[0]
        w = view_weight(view, world[idx], u[idx], v[idx]) ** WEIGHT_POWER
        colour = _sample(image, u[idx], v[idx])
        total[idx] += w[:, None] * colour
        weight_sum[idx] += w
    with np.errstate(invalid="ignore", divide="ignore"):
        rgb = total / weight_sum[:, None]
    return rgb, weight_sum


def _sample(image: PhotoImage, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear colours at full-size photo coordinates (COLMAP convention) from the reduced image."""
    return bilinear(image.pixels, u / image.scale - 0.5, v / image.scale - 0.5).astype(np.float64)
