"""Wall time and peak memory of `dataset` + `opensfm` on Brighton Beach (or any photo folder).

    .venv/bin/python benchmarks/bench_sfm.py [IMAGES_DIR] [--threads N]

Runs the stage functions directly (no Prefect start-up) on a temporary copy of the photos.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

from odm_core.layout import ProjectTree
from odm_core.options import DatasetOptions, OpensfmOptions
from odm_core.stages.dataset import dataset
from odm_core.stages.opensfm import opensfm

DEFAULT_IMAGES = Path(__file__).resolve().parents[2] / "shared/datasets/brighton_beach/images"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("images", nargs="?", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    if not args.images.is_dir():
        raise SystemExit(f"no photo folder at {args.images}")
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        tree = ProjectTree(Path(tmp))
        shutil.copytree(args.images, tree.images)
        t0 = time.perf_counter()
        ds = dataset(tree, DatasetOptions())
        t1 = time.perf_counter()
        sfm = opensfm(tree, OpensfmOptions(), num_threads=args.threads)
        t2 = time.perf_counter()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"photos: {ds.n_photos} ({args.images}), threads: {args.threads}")
    print(f"dataset: {t1 - t0:.1f} s")
    print(
        f"opensfm: {t2 - t1:.1f} s, {sfm.n_registered}/{sfm.n_photos} registered, {sfm.n_points} points, "
        f"{sfm.mean_reprojection_error_px:.3f} px, GPS RMS {sfm.gps_rms_horizontal_m or float('nan'):.2f} m"
    )
    print(f"dataset + opensfm: {t2 - t0:.1f} s wall, peak memory {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
