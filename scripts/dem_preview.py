"""Hillshaded, colour-ramped PNG views of DEMs (GeoTIFF) side by side, for README pictures and checks.

    .venv/bin/python scripts/dem_preview.py OUT.png DSM.tif [DTM.tif ...] [--size 700]

Each view is read from the raster's overviews at about --size pixels across; nodata shows dark grey.
All views share one elevation ramp (the first raster's 2nd-98th percentile).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image, ImageDraw
from rasterio.enums import Resampling


def read_small(path: Path, size: int) -> tuple[np.ndarray, float]:
    """The raster at about size px across (NaN for nodata) and its cell size in metres there."""
    with rasterio.open(path) as src:
        scale = max(1.0, max(src.width, src.height) / size)
        shape = (max(1, round(src.height / scale)), max(1, round(src.width / scale)))
        values = src.read(1, out_shape=shape, masked=True, resampling=Resampling.average)
        return values.filled(np.nan).astype(np.float64), src.res[0] * src.width / shape[1]


def hillshade(
    z: np.ndarray, cell_m: float, azimuth_deg: float = 315.0, altitude_deg: float = 45.0
) -> np.ndarray:
    gy, gx = np.gradient(np.nan_to_num(z, nan=np.nanmedian(z)), cell_m)
    slope = np.arctan(np.hypot(gx, gy))
    aspect = np.arctan2(-gx, gy)
    az, alt = np.radians(azimuth_deg), np.radians(altitude_deg)
    shade = np.sin(alt) * np.cos(slope) + np.cos(alt) * np.sin(slope) * np.cos(az - aspect)
    return np.clip(shade, 0, 1)


def ramp(t: np.ndarray) -> np.ndarray:
    """Blue-green-yellow-brown-white elevation colours for t in [0, 1]."""
    stops = np.array([[40, 70, 160], [60, 150, 80], [230, 220, 110], [150, 90, 50], [250, 250, 250]], float)
    x = np.nan_to_num(np.clip(t, 0, 1)) * (len(stops) - 1)
    i = np.minimum(x.astype(int), len(stops) - 2)
    f = (x - i)[..., None]
    return stops[i] * (1 - f) + stops[i + 1] * f


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("rasters", type=Path, nargs="+")
    parser.add_argument("--size", type=int, default=700)
    args = parser.parse_args()
    views = [read_small(p, args.size) for p in args.rasters]
    lo, hi = np.nanpercentile(views[0][0], [2, 98])
    panels = []
    for (z, cell), path in zip(views, args.rasters, strict=True):
        rgb = ramp((z - lo) / max(hi - lo, 1e-6)) * (0.35 + 0.65 * hillshade(z, cell))[..., None]
        rgb[np.isnan(z)] = 30
        panel = Image.new("RGB", (z.shape[1], z.shape[0] + 22), (255, 255, 255))
        panel.paste(Image.fromarray(rgb.astype(np.uint8)), (0, 22))
        ImageDraw.Draw(panel).text((4, 4), f"{path.name}: {lo:.1f}-{hi:.1f} m (2-98%)", fill=(0, 0, 0))
        panels.append(panel)
    out = Image.new(
        "RGB",
        (sum(p.width for p in panels) + 10 * (len(panels) - 1), max(p.height for p in panels)),
        (255, 255, 255),
    )
    x = 0
    for p in panels:
        out.paste(p, (x, 0))
        x += p.width + 10
    out.save(args.out)


if __name__ == "__main__":
    main()
