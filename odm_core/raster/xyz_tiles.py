"""XYZ PNG tiles of an RGBA raster (--tiles), laid out as `gdal2tiles.py --xyz` writes them.

Google/OSM scheme: EPSG:3857, 256 px tiles, `{z}/{x}/{y}.png` with y counted down from the north. The
highest zoom is the first whose pixel is at least as fine as the raster's; it is warped from the raster
in blocks of tiles. Every lower zoom is the 2 x 2 average of its four children, as gdal2tiles does, down
to the zoom where the whole raster spans about one tile. Tiles with no data at all are not written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.transform import from_bounds
from rasterio.warp import calculate_default_transform, reproject, transform_bounds

from odm_core.artifacts import atomic_dir
from odm_core.errors import OdmStageError

TILE_PX = 256
HALF_WORLD_M = math.pi * 6378137.0  # EPSG:3857 spans [-HALF_WORLD_M, HALF_WORLD_M] on both axes
MAX_ZOOM = 24
BLOCK_TILES = 8  # base tiles warped per reproject call (8 x 8 tiles = 2048 x 2048 px)
WEB_MERCATOR = "EPSG:3857"


@dataclass(frozen=True)
class TileRange:
    """Tiles x0..x1, y0..y1 (inclusive) of one zoom."""

    zoom: int
    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def count(self) -> int:
        return (self.x1 - self.x0 + 1) * (self.y1 - self.y0 + 1)


@dataclass(frozen=True)
class XyzResult:
    min_zoom: int
    max_zoom: int
    files: tuple[Path, ...]


def tile_size_m(zoom: int) -> float:
    """Width of one tile in EPSG:3857 metres."""
    return 2 * HALF_WORLD_M / 2**zoom


def pixel_size_m(zoom: int) -> float:
    """Width of one tile pixel in EPSG:3857 metres (156543.03 m at zoom 0)."""
    return tile_size_m(zoom) / TILE_PX


def tile_bounds_m(zoom: int, x: int, y: int) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of tile z/x/y in EPSG:3857 metres."""
    size = tile_size_m(zoom)
    left, top = -HALF_WORLD_M + x * size, HALF_WORLD_M - y * size
    return left, top - size, left + size, top


def tile_of(x_m: float, y_m: float, zoom: int) -> tuple[int, int]:
    """The (x, y) of the tile holding an EPSG:3857 point at a zoom."""
    size, last = tile_size_m(zoom), 2**zoom - 1
    x = math.floor((x_m + HALF_WORLD_M) / size)
    y = math.floor((HALF_WORLD_M - y_m) / size)
    return min(max(x, 0), last), min(max(y, 0), last)


def zoom_range(pixel_m: float, extent_px: int) -> tuple[int, int]:
    """(min, max) zoom for a raster of `pixel_m` EPSG:3857 metres per pixel and `extent_px` pixels across.

    max: the first zoom whose pixel is at least as fine as the raster's; min: gdal2tiles' rule, the last
    zoom whose pixel is at least as coarse as the whole raster spread over one tile."""
    zmax = math.ceil(math.log2(pixel_size_m(0) / pixel_m) - 1e-9)
    zmin = math.floor(math.log2(pixel_size_m(0) * TILE_PX / (pixel_m * extent_px)) + 1e-9)
    zmax = min(max(zmax, 0), MAX_ZOOM)
    return min(max(zmin, 0), zmax), zmax


def plan_tiles(src_path: Path) -> list[TileRange]:
    """The tile ranges of every zoom covering the raster, highest zoom first."""
    with rasterio.open(src_path) as src:
        if src.crs is None:
            raise OdmStageError(f"{src_path} has no CRS: it cannot be tiled; re-run the stage that wrote it")
        transform, width, height = calculate_default_transform(
            src.crs, WEB_MERCATOR, src.width, src.height, *src.bounds
        )
        left, bottom, right, top = transform_bounds(src.crs, WEB_MERCATOR, *src.bounds, densify_pts=21)
    zmin, zmax = zoom_range(abs(transform.a), max(width, height))
    ranges = []
    for zoom in range(zmax, zmin - 1, -1):
        x0, y0 = tile_of(left, top, zoom)
        eps = 1e-6 * pixel_size_m(zoom)  # a right/bottom edge exactly on a tile edge stays out of it
        x1, y1 = tile_of(right - eps, bottom + eps, zoom)
        ranges.append(TileRange(zoom, x0, y0, x1, y1))
    return ranges


def tile_path(out_dir: Path, zoom: int, x: int, y: int) -> Path:
    return out_dir / str(zoom) / str(x) / f"{y}.png"


def _write_png(path: Path, rgba: np.ndarray) -> bool:
    """Write an RGBA tile unless it is fully transparent; True when written."""
    if not rgba[..., 3].any():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA)):
        raise OdmStageError(f"could not write tile {path}: check the disk")
    return True


def render_base_tiles(src_path: Path, out_dir: Path, tiles: TileRange) -> int:
    """Warp the tiles of one zoom/region from an RGBA uint8 raster (alpha = band 4); returns tiles written."""
    written = 0
    with rasterio.open(src_path) as src:
        if src.count != 4 or src.dtypes[0] != "uint8":
            raise OdmStageError(
                f"{src_path}: XYZ tiles need an RGBA uint8 raster, not {src.count} bands of {src.dtypes[0]}"
            )
        for bx in range(tiles.x0, tiles.x1 + 1, BLOCK_TILES):
            for by in range(tiles.y0, tiles.y1 + 1, BLOCK_TILES):
                nx, ny = min(BLOCK_TILES, tiles.x1 + 1 - bx), min(BLOCK_TILES, tiles.y1 + 1 - by)
                left, _, _, top = tile_bounds_m(tiles.zoom, bx, by)
                _, bottom, right, _ = tile_bounds_m(tiles.zoom, bx + nx - 1, by + ny - 1)
                block = np.zeros((4, ny * TILE_PX, nx * TILE_PX), np.uint8)
                reproject(
                    rasterio.band(src, [1, 2, 3, 4]),
                    block,
                    dst_transform=from_bounds(left, bottom, right, top, nx * TILE_PX, ny * TILE_PX),
                    dst_crs=WEB_MERCATOR,
                    src_alpha=4,
                    dst_alpha=4,
                    resampling=Resampling.bilinear,
                )
                rgba = np.moveaxis(block, 0, 2)
                for i in range(nx):
                    for j in range(ny):
                        tile = rgba[j * TILE_PX : (j + 1) * TILE_PX, i * TILE_PX : (i + 1) * TILE_PX]
                        written += _write_png(tile_path(out_dir, tiles.zoom, bx + i, by + j), tile)
    return written


def downsample_tiles(out_dir: Path, zoom: int) -> int:
    """Build zoom `zoom` from the tiles of zoom + 1 already in out_dir (alpha-weighted 2 x 2 mean)."""
    children = sorted(out_dir.glob(f"{zoom + 1}/*/*.png"))
    parents = sorted({(int(p.parent.name) // 2, int(p.stem) // 2) for p in children})
    written = 0
    for x, y in parents:
        mosaic = np.zeros((2 * TILE_PX, 2 * TILE_PX, 4), np.float32)
        for dx in (0, 1):
            for dy in (0, 1):
                child = tile_path(out_dir, zoom + 1, 2 * x + dx, 2 * y + dy)
                if child.is_file():
                    bgra = cv2.imread(str(child), cv2.IMREAD_UNCHANGED)
                    if bgra is None:
                        raise OSError(f"{child}: not a readable PNG tile")
                    rgba = cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGBA)
                    rows, cols = (
                        slice(dy * TILE_PX, (dy + 1) * TILE_PX),
                        slice(dx * TILE_PX, (dx + 1) * TILE_PX),
                    )
                    mosaic[rows, cols] = rgba
        written += _write_png(tile_path(out_dir, zoom, x, y), _halve(mosaic))
    return written


def _halve(rgba: np.ndarray) -> np.ndarray:
    """2 x 2 mean of an RGBA float image, colours weighted by alpha (no dark fringes at data edges)."""
    h, w = rgba.shape[0] // 2, rgba.shape[1] // 2
    quads = rgba.reshape(h, 2, w, 2, 4)
    alpha = quads[..., 3:4]
    alpha_sum = alpha.sum(axis=(1, 3))
    colour = (quads[..., :3] * alpha).sum(axis=(1, 3)) / np.maximum(alpha_sum, 1e-6)
    out = np.concatenate([colour, alpha_sum / 4.0], axis=-1)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def write_xyz_tiles(src_path: Path, out_dir: Path) -> XyzResult:
    """Every zoom's tiles of an RGBA raster into out_dir, replaced as a whole only once all are written."""
    ranges = plan_tiles(src_path)
    with atomic_dir(out_dir) as tmp:
        render_base_tiles(src_path, tmp, ranges[0])
        for tiles in ranges[1:]:
            downsample_tiles(tmp, tiles.zoom)
    files = tuple(sorted(out_dir.rglob("*.png")))
    return XyzResult(ranges[-1].zoom, ranges[0].zoom, files)
