"""Which solution is level? Our camera centres, ODM's (through the DSM difference) and the photos' altitudes.

    .venv/bin/python benchmarks/brighton_tilt.py DONE_PROJECT [--reference model.laz]

DONE_PROJECT is a finished `odmflow run --dsm` of the Brighton Beach photos. A DJI drone holds its height
by its barometer, which each photo records (XMP RelativeAltitude): a plane through the photos' horizontal
GPS positions and those altitudes is the flight's own level. The script prints its tilt, the tilt of the
plane through our camera centres, and that plane carried into the frame of ODM's solution (by the plane
fitted to our DSM minus ODM's, `odm_core/dem_compare.py`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import laspy
import numpy as np

from odm_core.evaluate.dem_compare import compare_dsm
from odm_core.layout import ProjectTree

sys.path.insert(0, str(Path(__file__).parent))
from bench_dense import SHARED  # noqa: E402


def plane_gradient(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares dz/dx, dz/dy of z over (x, y), and the standard deviation left over."""
    design = np.column_stack([x - x.mean(), y - y.mean(), np.ones_like(x)])
    coef = np.linalg.lstsq(design, z, rcond=None)[0]
    return coef[:2], float(np.std(z - design @ coef))


def describe(name: str, gradient: np.ndarray, extra: str = "") -> None:
    tilt = math.degrees(math.atan(float(np.hypot(*gradient))))
    azimuth = math.degrees(math.atan2(gradient[1], gradient[0]))
    print(f"{name}: tilt {tilt:.3f} deg, rising toward {azimuth:.0f} deg (east = 0, north = 90){extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("project", type=Path)
    parser.add_argument("--reference", type=Path, default=SHARED / "model.laz")
    args = parser.parse_args()
    tree = ProjectTree(args.project)
    for needed in (tree.images_json, tree.shots_geojson, tree.dsm_tif, args.reference):
        if not needed.is_file():
            parser.error(f"{needed} is missing: give a project finished with `odmflow run --dsm`")
    photos = {p["filename"]: p for p in json.loads(tree.images_json.read_text())}
    shots = json.loads(tree.shots_geojson.read_text())["features"]
    names = [f["properties"]["filename"] for f in shots]
    centres = np.array([f["properties"]["translation"] for f in shots])
    if any(photos[n].get("relative_altitude") is None for n in names):
        parser.error(f"{tree.images_json}: some photos record no barometric (DJI relative) altitude")
    relative = np.array([photos[n]["relative_altitude"] for n in names], float)
    x, y = centres[:, 0], centres[:, 1]
    print(f"{len(names)} cameras over {np.ptp(x):.1f} x {np.ptp(y):.1f} m")
    print(f"barometric altitudes: {relative.min():.2f} to {relative.max():.2f} m, std {relative.std():.3f} m")
    flight, left = plane_gradient(x, y, relative)
    describe("plane of the photos' altitudes", flight, f", {left:.3f} m left over")
    ours, left = plane_gradient(x, y, centres[:, 2])
    describe("plane of our camera centres", ours, f", {left:.3f} m left over")
    ref = laspy.read(args.reference)
    comparison = compare_dsm(tree.dsm_tif, np.column_stack([ref.x, ref.y, ref.z]))
    difference = np.asarray(comparison.plane_gradient)
    after = f" (median after the plane {comparison.median_after_plane_m:.3f} m)"
    describe("our DSM minus ODM's", difference, after)
    in_odm = ours - difference
    span = float(np.hypot(*in_odm)) * max(np.ptp(x), np.ptp(y))
    describe("our camera centres in ODM's frame", in_odm, f": {span:.2f} m of height across the block")


if __name__ == "__main__":
    main()
