"""Top views of georeferenced clouds (LAZ) side by side, coloured by their RGB, as a PNG (README pictures).

    .venv/bin/python scripts/cloud_preview.py OUT.png CLOUD.laz [OTHER.laz ...] [--size 700]

Every view shares the first cloud's extent and scale; each pixel shows the highest point that falls in it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import laspy
import numpy as np
from PIL import Image, ImageDraw


def top_view(las: laspy.LasData, lo: np.ndarray, res_m: float, shape: tuple[int, int]) -> np.ndarray:
    """H x W x 3 image of the highest point per cell (dark where empty)."""
    h, w = shape
    col = ((np.asarray(las.x) - lo[0]) / res_m).astype(np.int64)
    row = (h - 1 - (np.asarray(las.y) - lo[1]) / res_m).astype(np.int64)
    ok = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    order = np.argsort(np.asarray(las.z)[ok])  # later (higher) points overwrite lower ones
    colours = np.column_stack([las.red, las.green, las.blue])
    if colours.max() > 255:  # 16-bit colours (LAS convention); some writers store 8-bit values as they are
        colours = colours // 257
    rgb = colours[ok][order].astype(np.uint8)
    img = np.full((h, w, 3), 24, np.uint8)
    img[row[ok][order], col[ok][order]] = rgb
    return img


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("clouds", type=Path, nargs="+")
    parser.add_argument("--size", type=int, default=700)
    args = parser.parse_args()
    clouds = [laspy.read(p) for p in args.clouds]
    first = np.column_stack([clouds[0].x, clouds[0].y])
    lo, hi = np.percentile(first, 0.5, axis=0) - 2, np.percentile(first, 99.5, axis=0) + 2
    res_m = float(np.max(hi - lo)) / args.size
    shape = (int((hi[1] - lo[1]) / res_m) + 1, int((hi[0] - lo[0]) / res_m) + 1)
    panels = [Image.fromarray(top_view(c, lo, res_m, shape)) for c in clouds]
    out = Image.new(
        "RGB", (sum(p.width for p in panels) + 10 * (len(panels) - 1), shape[0] + 24), (255, 255, 255)
    )
    x = 0
    for path, cloud, panel in zip(args.clouds, clouds, panels, strict=True):
        out.paste(panel, (x, 24))
        ImageDraw.Draw(out).text((x + 4, 6), f"{path.name}: {len(cloud.points):,} points", fill=(0, 0, 0))
        x += panel.width + 10
    out.save(args.out)


if __name__ == "__main__":
    main()
