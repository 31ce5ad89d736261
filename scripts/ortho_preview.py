"""An orthophoto (RGBA GeoTIFF) as a PNG: whole at about --size px across, or a full-resolution crop.

    .venv/bin/python scripts/ortho_preview.py ORTHO.tif OUT.png [--size 900] [--crop COL ROW WIDTH HEIGHT]

Pixels the alpha band marks empty show dark grey.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.enums import Resampling
from rasterio.windows import Window


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("ortho", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", type=int, default=900)
    parser.add_argument("--crop", type=int, nargs=4, metavar=("COL", "ROW", "WIDTH", "HEIGHT"))
    args = parser.parse_args()
    with rasterio.open(args.ortho) as src:
        if args.crop:
            rgba = src.read(window=Window(*args.crop))
        else:
            scale = max(1.0, max(src.width, src.height) / args.size)
            shape = (src.count, max(1, round(src.height / scale)), max(1, round(src.width / scale)))
            rgba = src.read(out_shape=shape, resampling=Resampling.average)
    rgb = np.moveaxis(rgba[:3], 0, 2).copy()
    rgb[rgba[3] < 128] = 40
    Image.fromarray(rgb).save(args.out)


if __name__ == "__main__":
    main()
