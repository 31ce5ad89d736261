"""A DEM as a colour-relief hillshade (RGBA), the picture ODM tiles for dsm_tiles/ and dtm_tiles/.

ODM runs `gdaldem color-relief` (a percentage ramp) and `gdaldem hillshade` (azimuth 315, altitude 45),
then merges them in HSV. Here: the ramp spans the 2nd..98th percentile of the elevations, and the colour
is darkened by the hillshade (Horn's gradient). Done in row blocks with a one-row halo, so the DEM never
has to fit in memory; nodata is transparent.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from odm_core.errors import OdmStageError
from odm_core.raster.geotiff import RGBA, rgba_profile

AZIMUTH_DEG = 315.0
ALTITUDE_DEG = 45.0
BLOCK_ROWS = 1024
STATS_PX = 1024  # elevation percentiles from a copy at most this size (the COG's overviews)
SHADE_FLOOR = 0.35  # share of the colour kept in full shadow
# Colour ramp stops (position 0..1, RGB): ODM's color_relief.txt is a similar blue-green-yellow-red ramp.
RAMP = np.array(
    [
        (0.00, 38, 70, 160),
        (0.25, 40, 150, 190),
        (0.50, 90, 190, 90),
        (0.75, 240, 210, 80),
        (1.00, 200, 60, 40),
    ],
    np.float32,
)


def elevation_range(src: rasterio.io.DatasetReader) -> tuple[float, float]:
    """2nd and 98th percentile of the valid elevations, from a decimated read (overviews when present)."""
    scale = max(1.0, max(src.width, src.height) / STATS_PX)
    shape = (max(1, round(src.height / scale)), max(1, round(src.width / scale)))
    sample = src.read(1, out_shape=shape, masked=True)
    values = sample.compressed()
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise OdmStageError(f"{src.name} has no elevation at all: nothing to draw tiles of")
    low, high = np.percentile(values, [2, 98])
    return float(low), float(max(high, low + 1e-3))


def colour_ramp(t: np.ndarray) -> np.ndarray:
    """RGB (float, 0..255) of positions t in 0..1 along RAMP."""
    return np.stack([np.interp(t, RAMP[:, 0], RAMP[:, c]) for c in (1, 2, 3)], axis=-1)


def hillshade(z: np.ndarray, xres_m: float, yres_m: float) -> np.ndarray:
    """Hillshade (0..1) of the inner cells of z (one cell of halo each side), Horn's method as in gdaldem;
    NaN neighbours count as flat."""
    a, b, c = z[:-2, :-2], z[:-2, 1:-1], z[:-2, 2:]
    d, f = z[1:-1, :-2], z[1:-1, 2:]
    g, h, i = z[2:, :-2], z[2:, 1:-1], z[2:, 2:]
    dzdx = ((c + 2 * f + i) - (a + 2 * d + g)) / (8 * xres_m)
    dzdy = ((g + 2 * h + i) - (a + 2 * b + c)) / (8 * yres_m)
    dzdx, dzdy = np.nan_to_num(dzdx), np.nan_to_num(dzdy)
    slope = np.arctan(np.hypot(dzdx, dzdy))
    aspect = np.arctan2(dzdy, -dzdx)
    zenith = math.radians(90.0 - ALTITUDE_DEG)
    azimuth = math.radians((360.0 - AZIMUTH_DEG + 90.0) % 360.0)
    shade = math.cos(zenith) * np.cos(slope) + math.sin(zenith) * np.sin(slope) * np.cos(azimuth - aspect)
    return np.clip(shade, 0.0, 1.0)


def write_colored_hillshade(dem: Path, out: Path) -> Path:
    """Write the DEM's colour-relief hillshade as an RGBA uint8 GeoTIFF on the DEM's grid."""
    with rasterio.open(dem) as src:
        low, high = elevation_range(src)
        xres, yres = abs(src.transform.a), abs(src.transform.e)
        profile = rgba_profile(src.width, src.height, src.crs, src.transform)
        with rasterio.open(out, "w", **profile) as dst:
            dst.colorinterp = RGBA
            for row0 in range(0, src.height, BLOCK_ROWS):
                rows = min(BLOCK_ROWS, src.height - row0)
                top, bottom = max(0, row0 - 1), min(src.height, row0 + rows + 1)
                block = src.read(1, window=Window(0, top, src.width, bottom - top), masked=True)
                padded = np.pad(block.filled(np.nan).astype(np.float32), 1, constant_values=np.nan)
                z = padded[row0 - top : row0 - top + rows + 2]  # rows row0 - 1 .. row0 + rows
                valid = np.isfinite(z[1:-1, 1:-1])
                shade = hillshade(z, xres, yres)
                rgb = colour_ramp(np.nan_to_num(np.clip((z[1:-1, 1:-1] - low) / (high - low), 0.0, 1.0)))
                rgb *= (SHADE_FLOOR + (1 - SHADE_FLOOR) * shade)[..., None]
                rgba = np.zeros((rows, src.width, 4), np.uint8)
                rgba[..., :3] = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
                rgba[..., 3] = np.where(valid, 255, 0)
                dst.write(np.moveaxis(rgba, 2, 0), window=Window(0, row0, src.width, rows))
    return out
