"""Top view of a project's sparse cloud with its camera centres, as a PNG (for README pictures).

.venv/bin/python scripts/sparse_preview.py PROJECT OUT.png [--size 900]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import laspy
import numpy as np
from PIL import Image, ImageDraw

from odm_core.layout import ProjectTree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("project", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", type=int, default=900)
    args = parser.parse_args()
    tree = ProjectTree(args.project)
    las = laspy.read(tree.sparse_laz)
    xyz = np.column_stack([las.x, las.y, las.z])
    rgb = (np.column_stack([las.red, las.green, las.blue]) // 257).astype(np.uint8)
    shots = json.loads(tree.shots_geojson.read_text())["features"]
    cams = np.array([f["properties"]["translation"] for f in shots])
    lo = np.minimum(np.percentile(xyz[:, :2], 1, axis=0), cams[:, :2].min(axis=0)) - 5
    hi = np.maximum(np.percentile(xyz[:, :2], 99, axis=0), cams[:, :2].max(axis=0)) + 5
    scale = (args.size - 20) / float(np.max(hi - lo))
    w, h = (np.ceil((hi - lo) * scale) + 20).astype(int)

    def px(p: np.ndarray) -> np.ndarray:
        return np.column_stack([10 + (p[:, 0] - lo[0]) * scale, h - 10 - (p[:, 1] - lo[1]) * scale])

    img = Image.new("RGB", (int(w), int(h)), (20, 20, 24))
    draw = ImageDraw.Draw(img)
    for (x, y), c in zip(px(xyz[:, :2]), rgb, strict=True):
        draw.rectangle([x - 1, y - 1, x + 1, y + 1], fill=tuple(int(v) for v in c))
    for x, y in px(cams[:, :2]):
        draw.ellipse([x - 5, y - 5, x + 5, y + 5], outline=(255, 60, 60), width=2)
    draw.text((12, 8), f"{len(xyz)} sparse points, {len(cams)} cameras (red), north up", fill=(240, 240, 240))
    img.save(args.out)


if __name__ == "__main__":
    main()
