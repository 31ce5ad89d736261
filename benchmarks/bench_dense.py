"""The dense stage on Brighton Beach: wall time and memory with 1 and 2 Dask workers, and accuracy.

    .venv/bin/python benchmarks/bench_dense.py [IMAGES_DIR] [--project DONE] [--reference model.laz]
        [--workers 1 2]

Runs `odmflow run` as a user would: first up to `opensfm` (not timed; or a copy of a project `--project`
that got that far), then for each worker count the dense stage through the run's local Dask cluster, its
per-view checkpoints deleted first, two ways:
- alone (`--rerun-from openmvs --end-with openmvs --max-concurrency N`): the run starts with this stage,
  so the stage also waits for the cluster to start and its workers to import their libraries;
- in a run (`--rerun-from opensfm --end-with openmvs`): the cluster starts while `opensfm` works, as in
  a full run, so the stage finds it ready.
Then the rest of the pipeline, and last the machine's ceiling for this work: the same view units on a
plain Dask LocalCluster (no Prefect, no planning or merging), 1 then 2 workers. The stage's own time is
the CLI's 'stage seconds' line (Prefect's start-up excluded). Then our LAZ is compared with the reference
cloud (ODM's own, for Brighton) after a rigid ICP alignment.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import laspy
import numpy as np

from odm_core.evaluate.cloud_compare import compare_clouds
from odm_core.layout import ProjectTree

SHARED = Path(__file__).resolve().parents[2] / "shared/datasets/brighton_beach"
STAGE_SECONDS = re.compile(r"stage seconds: .*?openmvs ([\d.]+)")
DENSE = re.compile(r"openmvs: (\d+) dense points .*worker peak memory (\d+) MiB")


def odmflow(*args: str) -> str:
    """Run the CLI; return its output (raises with the output when it fails)."""
    cmd = [sys.executable, "-m", "odmflow", *args]
    done = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def dense_run(tree: ProjectTree, workers: int, rerun_from: str) -> tuple[float, int, int, float]:
    """(stage seconds, points, worker peak MiB, wall seconds incl. Prefect start) of one dense run."""
    shutil.rmtree(tree.depthmaps, ignore_errors=True)
    start = time.perf_counter()
    out = odmflow(
        "run",
        str(tree.root),
        "--rerun-from",
        rerun_from,
        "--end-with",
        "openmvs",
        "--max-concurrency",
        str(workers),
    )
    wall = time.perf_counter() - start
    seconds = float(STAGE_SECONDS.search(out).group(1))  # type: ignore[union-attr]
    points, peak = map(int, DENSE.search(out).groups())  # type: ignore[union-attr]
    return seconds, points, peak, wall


def plain_dask_units(tree: ProjectTree, workers: int) -> tuple[float, float]:
    """(wall seconds, summed unit seconds) of the dense stage's view units alone on a plain LocalCluster."""
    from distributed import Client, LocalCluster

    from odm_core.dense.units import run_unit_after
    from odm_core.options import OpenmvsOptions
    from odm_core.stages.openmvs import plan_openmvs

    plan = plan_openmvs(tree, OpenmvsOptions(), "plain-dask-bench")
    shutil.rmtree(tree.depthmaps, ignore_errors=True)
    env = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None, env=env)
    with cluster, Client(cluster) as client:
        client.run(lambda: __import__("odm_core.dense.fusion"))
        start = time.perf_counter()
        writers: dict[str, object] = {}
        for phase in plan.phases:
            for unit in phase:
                inputs = [writers[path] for path in unit.sources if path in writers]
                writers[unit.out] = client.submit(run_unit_after, unit, *inputs, pure=False)
        results = client.gather(list(writers.values()))
        wall = time.perf_counter() - start
    shutil.rmtree(tree.depthmaps, ignore_errors=True)
    return wall, sum(r.seconds for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("images", nargs="?", type=Path, default=SHARED / "images")
    parser.add_argument("--project", type=Path, help="a project already processed up to opensfm (copied)")
    parser.add_argument("--reference", type=Path, default=SHARED / "model.laz")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    if not args.images.is_dir():
        raise SystemExit(f"no photo folder at {args.images}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        tree = ProjectTree(Path(tmp) / "project")
        if args.project:
            shutil.copytree(args.project, tree.root, symlinks=True)
        else:
            shutil.copytree(args.images, tree.images)
        odmflow("run", str(tree.root), "--end-with", "opensfm")
        for how, rerun_from in (("alone", "openmvs"), ("in a run", "opensfm")):
            timings = {}
            for workers in args.workers:
                timings[workers] = dense_run(tree, workers, rerun_from)
                seconds, points, peak, wall = timings[workers]
                print(f"openmvs {how}, {workers} Dask worker(s): {seconds:.1f} s ({wall:.1f} s run), "
                      f"{points} points, worker peak memory {peak} MiB")  # fmt: skip
            if 1 in timings and 2 in timings:
                print(f"speed-up 1 -> 2 workers, stage {how}: {timings[1][0] / timings[2][0]:.2f}x")
        rest = odmflow("run", str(tree.root))
        print(next(line for line in rest.splitlines() if line.startswith("stage seconds")))
        children_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"largest process of all runs (CLI or Dask worker): {children_peak:.0f} MiB peak RSS")
        las = laspy.read(tree.georeferenced_model_laz)
        ours = np.column_stack([las.x, las.y, las.z])
        plain = {}
        for workers in args.workers:
            plain[workers] = plain_dask_units(tree, workers)
            print(f"view units on plain Dask (no Prefect), {workers} worker(s): {plain[workers][0]:.1f} s "
                  f"({plain[workers][1]:.1f} s of unit work)")  # fmt: skip
        if 1 in plain and 2 in plain:
            print(f"speed-up 1 -> 2 workers, units on plain Dask: {plain[1][0] / plain[2][0]:.2f}x")
    if args.reference.is_file():
        ref = laspy.read(args.reference)
        cmp = compare_clouds(ours, np.column_stack([ref.x, ref.y, ref.z]))
        print(f"LAZ points: {cmp.n_ours} (reference {cmp.n_reference})")
        shift = np.round(cmp.alignment_translation_m, 3).tolist()
        print(f"before alignment: median distance {cmp.raw_median_m:.3f} m")
        print(f"alignment: shift {shift} m, rotation {cmp.alignment_rotation_deg:.3f} deg")
        print(f"after ICP: median ours->reference {cmp.median_m:.3f} m, p90 {cmp.p90_m:.3f} m")
        beyond = 100 * cmp.beyond_reference
        print(f"ours beyond the reference's extent: {beyond:.1f}%; p90 within it {cmp.p90_within_m:.3f} m")
        covered = 100 * cmp.reference_covered
        print(f"reference points with one of ours within {cmp.cover_radius_m} m: {covered:.1f}%")


if __name__ == "__main__":
    main()
