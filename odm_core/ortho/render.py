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

from collections import OrderedDict
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
BLOCK_PX = 512  # cells a side of a render block: bounds memory, and each block projects only its photos
MAX_BLOCK_PX = 2048  # a block grows to 4 halos a side (fine cells, wide halo) up to this
CACHED_PHOTOS = 48  # decoded photos kept between blocks


@dataclass(frozen=True)
class SurfaceWindow:
    """A surface to render: heights (rows, cols) in the model frame, NaN where none; cell (0, 0)'s centre at
    (x0, y0), rows going south, square cells of cell_m metres."""

    z: np.ndarray
    x0: float
    y0: float
    cell_m: float


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


def render_surface(
    surface: SurfaceWindow,
    keep: tuple[slice, slice],
    views: list[ViewCamera],
    photo_px_m: float,
    halo_px: int,
) -> tuple[np.ndarray, int]:
    """(RGBA uint8 of the `keep` window of the surface, how many photos were used), block by block.

    Each block of BLOCK_PX cells (more, up to MAX_BLOCK_PX, where the halo is wide in cells) is rendered
    from the photos that see it, with `halo_px` cells of the surface around it for the z-buffer (a roof
    that far away still hides the ground behind it): the memory and the projections are a block's,
    whatever the size of the surface or the survey, and the surface outside `keep` is only looked at."""
    rows, cols = keep
    out = np.zeros((rows.stop - rows.start, cols.stop - cols.start, 4), np.uint8)
    cache: OrderedDict[str, PhotoImage] = OrderedDict()
    used: set[str] = set()
    block = min(MAX_BLOCK_PX, max(BLOCK_PX, 4 * halo_px))  # the halo's share of the work at most 2.25x
    for r0 in range(rows.start, rows.stop, block):
        for c0 in range(cols.start, cols.stop, block):
            core = (r0, min(rows.stop, r0 + block), c0, min(cols.stop, c0 + block))
            used |= _render_block(surface, core, halo_px, views, photo_px_m, cache, out, keep)
    return out, len(used)


def _render_block(
    surface: SurfaceWindow,
    core: tuple[int, int, int, int],
    halo_px: int,
    views: list[ViewCamera],
    photo_px_m: float,
    cache: OrderedDict[str, PhotoImage],
    out: np.ndarray,
    keep: tuple[slice, slice],
) -> set[str]:
    r0, r1, c0, c1 = core
    if not np.isfinite(surface.z[r0:r1, c0:c1]).any():
        return set()
    rows, cols = surface.z.shape
    pr0, pc0 = max(0, r0 - halo_px), max(0, c0 - halo_px)
    zz = surface.z[pr0 : min(rows, r1 + halo_px), pc0 : min(cols, c1 + halo_px)]
    rr, cc = np.nonzero(np.isfinite(zz))
    rr, cc = rr + pr0, cc + pc0
    x = surface.x0 + cc * surface.cell_m
    y = surface.y0 - rr * surface.cell_m
    world = np.column_stack([x, y, zz[rr - pr0, cc - pc0]])
    seeing = [v for v in views if sees_some(v, world)]
    images = [_photo(cache, v, photo_px_m, surface.cell_m) for v in seeing]
    rgb, weight = render(world, seeing, images)
    mine = (rr >= r0) & (rr < r1) & (cc >= c0) & (cc < c1) & (weight > 0)
    at = (rr[mine] - keep[0].start, cc[mine] - keep[1].start)
    out[at[0], at[1], :3] = np.clip(np.round(rgb[mine]), 0, 255).astype(np.uint8)
    out[at[0], at[1], 3] = 255
    return {v.name for v in seeing}


def _photo(
    cache: OrderedDict[str, PhotoImage], view: ViewCamera, photo_px_m: float, cell_m: float
) -> PhotoImage:
    """The decoded photo, from the cache of the most recently used ones when there."""
    if view.name in cache:
        cache.move_to_end(view.name)
        return cache[view.name]
    image = cache[view.name] = decode_photo(view, photo_px_m, cell_m)
    if len(cache) > CACHED_PHOTOS:
        cache.popitem(last=False)
    return image


def sees_some(view: ViewCamera, world: np.ndarray) -> bool:
    """Whether the photo's frame holds some of the points (a sample of 2000 of them)."""
    sample = world[:: max(1, len(world) // 2000)]
    u, v, depth = project(view, sample)
    return bool(np.any((u >= 0) & (v >= 0) & (u < view.width) & (v < view.height) & (depth > 0)))
