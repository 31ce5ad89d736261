"""Wall time and peak memory of `dataset` + `opensfm` on Brighton Beach (or any photo folder).

    .venv/bin/python benchmarks/bench_sfm.py [IMAGES_DIR] [--threads N] [--workers N]

Runs the stage functions directly (no Prefect start-up) on a temporary copy of the photos; with --workers,
the feature and matching units go to a local Dask cluster of that many single-threaded workers, as in a
pipeline run. Prints when each phase (extraction, matching, mapping) started.
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from odm_core.layout import ProjectTree
from odm_core.options import DatasetOptions, OpensfmOptions
from odm_core.stages.dataset import dataset
from odm_core.stages.opensfm import opensfm
from odm_core.worker import MapUnits, serial_map

DEFAULT_IMAGES = Path(__file__).resolve().parents[2] / "shared/datasets/brighton_beach/images"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _phases(start: float) -> Callable[[float, str], None]:
    """A progress callback that prints the time of each new phase (the message's first words)."""
    seen: set[str] = set()

    def report(fraction: float, message: str) -> None:
        phase = message.split()[0] if message else ""
        if phase not in seen:
            seen.add(phase)
            print(f"  {time.perf_counter() - start:6.1f} s  {message}")

    return report


@contextmanager
def _units_map(workers: int) -> Iterator[MapUnits]:
    if workers <= 0:
        yield serial_map
        return
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1) as cluster, Client(cluster) as client:
        yield lambda fn, units: client.gather(client.map(fn, units, pure=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("images", nargs="?", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--workers", type=int, default=0, help="Dask workers for the units (0: none)")
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
        with _units_map(args.workers) as map_units:
            t1 = time.perf_counter()
            sfm = opensfm(tree, OpensfmOptions(), args.threads, _phases(t1), reuse=True, map_units=map_units)
            t2 = time.perf_counter()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"photos: {ds.n_photos} ({args.images}), threads: {args.threads}, Dask workers: {args.workers}")
    print(f"dataset: {t1 - t0:.1f} s")
    print(
        f"opensfm: {t2 - t1:.1f} s, {sfm.n_registered}/{sfm.n_photos} registered, {sfm.n_points} points, "
        f"{sfm.mean_reprojection_error_px:.3f} px, GPS RMS {sfm.gps_rms_horizontal_m or float('nan'):.2f} m"
    )
    print(f"dataset + opensfm: {t2 - t0:.1f} s wall, peak memory {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
