"""The raster products on Brighton Beach: wall time and memory of `odm_dem` (--dsm --dtm) and
`odm_orthophoto`, the DSM against ODM's own cloud of the same photos gridded on the same grid, and a
--fast-orthophoto run end to end.

    .venv/bin/python benchmarks/bench_rasters.py [IMAGES_DIR] [--project DONE_PROJECT] [--reference model.laz]

Runs `odmflow run` as a user would: up to `odm_georeferencing` first (not timed; or copies --project, a
finished default run), then the two stages alone (`--rerun-from odm_dem --end-with odm_orthophoto --dsm
--dtm`); their own seconds are the CLI's 'stage seconds' line. Then compares the DSM with the reference
(odm_core/dem_compare.py), validates the rasters as COGs, and times `odmflow run --fast-orthophoto` on a
fresh copy of the photos.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import laspy
import numpy as np

from odm_core.evaluate.dem_compare import compare_dsm
from odm_core.layout import ProjectTree

sys.path.insert(0, str(Path(__file__).parent))
from bench_dense import SHARED, odmflow  # noqa: E402

STAGE_SECONDS = re.compile(r"stage seconds: .*?odm_dem ([\d.]+), odm_orthophoto ([\d.]+)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("images", nargs="?", type=Path, default=SHARED / "images")
    parser.add_argument("--project", type=Path, help="a finished default run to copy instead of processing")
    parser.add_argument("--reference", type=Path, default=SHARED / "model.laz")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        tree = ProjectTree(Path(tmp) / "project")
        if args.project:
            shutil.copytree(args.project, tree.root, symlinks=True)
        else:
            shutil.copytree(args.images, tree.images)
            odmflow("run", str(tree.root), "--end-with", "odm_georeferencing")
        start = time.perf_counter()
        args_run = ["--rerun-from", "odm_dem", "--end-with", "odm_orthophoto", "--dsm", "--dtm"]
        out = odmflow("run", str(tree.root), *args_run)
        wall = time.perf_counter() - start
        dem_s, ortho_s = map(float, STAGE_SECONDS.search(out).groups())  # type: ignore[union-attr]
        print(
            f"odm_dem --dsm --dtm: {dem_s:.1f} s, odm_orthophoto: {ortho_s:.1f} s, together "
            f"{dem_s + ortho_s:.1f} s ({wall:.1f} s with Prefect start-up)"
        )
        for stage in ("odm_dem:", "odm_orthophoto:"):
            print(next(line for line in out.splitlines() if line.startswith(stage)))
        children_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"largest process of the runs (CLI or Dask worker): {children_peak:.0f} MiB peak RSS")
        from rio_cogeo.cogeo import cog_validate

        for raster in (tree.dsm_tif, tree.dtm_tif, tree.orthophoto_tif):
            valid, errors, warnings = cog_validate(str(raster))
            print(f"{raster.name}: COG valid {valid} {errors or ''} {warnings or ''}")
        if args.reference.is_file():
            ref = laspy.read(args.reference)
            cmp = compare_dsm(tree.dsm_tif, np.column_stack([ref.x, ref.y, ref.z]))
            print(
                f"DSM cells compared: {cmp.cells_compared} ({100 * cmp.share_of_ours_compared:.0f}% of ours)"
            )
            print(f"median |dz| before any offset: {cmp.median_raw_m:.3f} m")
            shift = tuple(round(v, 3) for v in cmp.offset_xyz_m)
            print(f"constant offset removed {shift} m: median |dz| {cmp.median_after_offset_m:.3f} m")
            tilt = f"tilt {cmp.plane_tilt_deg:.2f} deg also removed"
            print(f"{tilt}: median |dz| {cmp.median_after_plane_m:.3f} m, p90 {cmp.p90_after_plane_m:.3f} m")
        if keep := os.environ.get("ODMFLOW_BENCH_KEEP"):  # a folder to keep the rasters in (README pictures)
            for folder in (tree.dem, tree.orthophoto):
                shutil.copytree(folder, Path(keep) / folder.name, dirs_exist_ok=True)
        fast = ProjectTree(Path(tmp) / "fast")
        shutil.copytree(args.images, fast.images)
        start = time.perf_counter()
        out = odmflow("run", str(fast.root), "--fast-orthophoto")
        print(
            f"--fast-orthophoto end to end: {time.perf_counter() - start:.1f} s (Prefect start-up included)"
        )
        print(next(line for line in out.splitlines() if line.startswith("stage seconds")))
        print(next(line for line in out.splitlines() if line.startswith("odm_orthophoto:")))
        if keep:
            shutil.copytree(fast.orthophoto, Path(keep) / "fast_orthophoto", dirs_exist_ok=True)


if __name__ == "__main__":
    main()
