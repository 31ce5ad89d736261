"""Issue #18's split acceptance: a synthetic survey split on a node with two process workers, held
against its truth, with the peak memory of every process the runs start.

    .venv/bin/python benchmarks/bench_split_node.py --workdir ../split300 [--cols 20 --rows 15]

Renders the survey (`odmflow synthetic`, nadir photos at 640 x 480) unless WORKDIR/survey exists, starts a
node without its own worker (`odmflow server up --no-worker`, free ports), two process workers on its
pool as README's "workers on other machines" starts them (`prefect worker start --limit 2`, `--limit 1`),
submits a copy of the photos with `odmflow submit -o split=100 -o split-overlap=40 -o dsm=true`, samples
the RSS of every process below the two workers each second (the runs, their Dask workers, the SfM
mapping child), and when the run has ended evaluates the merged products: orthophoto tile shifts against
the truth (all tiles, and tiles that cross a cutline), the DSM on open ground, duplicate points.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import laspy
import numpy as np
import psutil

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MIB = 2**20


def odmflow(*args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run([str(BIN / "odmflow"), *args], env=env, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"odmflow {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sampler(threading.Thread):
    """Peak RSS of every descendant of `roots`, keyed by pid, with its command line."""

    def __init__(self, roots: list[int]) -> None:
        super().__init__(daemon=True)
        self.roots, self.peaks, self.commands = roots, dict[int, float](), dict[int, str]()
        self.owners: dict[int, int] = {}  # pid -> the root (worker) it runs under
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(1.0):
            for root in self.roots:
                try:
                    procs = psutil.Process(root).children(recursive=True)
                except psutil.Error:
                    continue
                for p in procs:
                    try:
                        rss = p.memory_info().rss / MIB
                        if p.pid not in self.commands:
                            self.commands[p.pid] = " ".join(p.cmdline())[:160]
                            self.owners[p.pid] = root
                    except psutil.Error:
                        continue
                    self.peaks[p.pid] = max(self.peaks.get(p.pid, 0.0), rss)


def evaluate(truth: Path, project: Path) -> None:
    from odm_core.evaluate.dem_truth import dem_accuracy
    from odm_core.evaluate.ortho_truth import ortho_accuracy
    from odm_core.layout import ProjectTree
    from odm_core.split.partition import Ownership

    tree = ProjectTree(project)
    acc = ortho_accuracy(truth, tree.orthophoto_tif, tree.shots_geojson)
    shifts = np.array([s for _, _, s in acc.tile_shifts])
    print(
        f"orthophoto vs truth: median {acc.median_shift_px:.3f} px, p90 {np.percentile(shifts, 90):.3f}, ",
        end="",
    )
    print(f"{acc.tiles} tiles")
    submodels = json.loads(tree.split_json.read_text())["submodels"]
    owners = Ownership([np.array(s["core_xy_m"]) for s in submodels])
    half = 64 * acc.cell_m
    seam = []
    for x, y, shift in acc.tile_shifts:
        corners = np.array(
            [[x - half, y - half], [x + half, y + half], [x - half, y + half], [x + half, y - half]]
        )
        if len(set(owners.owner(corners).tolist())) > 1:
            seam.append(shift)
    print(
        f"  tiles across a cutline: {len(seam)}, median {np.median(seam):.3f} px,",
        f"p90 {np.percentile(seam, 90):.3f}",
    )
    gsd_m = json.loads((truth / "truth.json").read_text())["gsd_m"]
    dem = dem_accuracy(truth, tree.dsm_tif, tree.shots_geojson)
    print(
        f"DSM on open ground: RMSE {dem.open_ground_rmse_m:.3f} m,",
        f"median |dz| {dem.open_ground_median_abs_m:.3f} m",
        end="",
    )
    print(f" (2 GSD = {2 * gsd_m:.3f} m), {dem.cells} cells")
    las = laspy.read(tree.georeferenced_model_laz)
    xyz = np.column_stack([las.X, las.Y, las.Z])
    print(f"merged cloud: {len(xyz):,} points, {len(xyz) - len(np.unique(xyz, axis=0)):,} twice")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--cols", type=int, default=20)
    parser.add_argument("--rows", type=int, default=15)
    parser.add_argument("--split", type=int, default=100)
    parser.add_argument("--timeout-s", type=float, default=3 * 3600)
    args = parser.parse_args()
    work = args.workdir.resolve()
    survey, project, home = work / "survey", work / "p-split", work / "home"
    if not survey.exists():
        dims = ["--cols", str(args.cols), "--rows", str(args.rows), "--width", "640", "--height", "480"]
        odmflow("synthetic", str(survey), *dims, "--oblique", "0")
    if project.exists():
        raise SystemExit(f"{project} exists: remove it (or choose another --workdir) to measure a fresh run")
    shutil.copytree(survey / "images", project / "images")
    up = ["--home", str(home), "--port", str(free_port()), "--node-port", str(free_port()), "--no-worker"]
    odmflow("server", "up", *up, "--timeout", "180")
    state = json.loads((home / "state.json").read_text())
    env = {**os.environ, "PREFECT_API_URL": state["api_url"], "ODMFLOW_HOME": str(REPO)}
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    workers: list[subprocess.Popen[bytes]] = []
    try:
        workers += [start_worker(work, name, limit, env) for name, limit in (("A", 2), ("B", 1))]
        sampler = Sampler([w.pid for w in workers])
        sampler.start()
        start = time.perf_counter()
        print(
            odmflow(
                "submit",
                str(project),
                "-o",
                f"split={args.split}",
                "-o",
                "split-overlap=40",
                "-o",
                "dsm=true",
                env=env,
            )
        )
        wait_for(state["api_url"], project.name, start + args.timeout_s)
        print(f"run ended after {time.perf_counter() - start:.0f} s")
        sampler.stopped.set()
        status = subprocess.run([str(BIN / "odmflow"), "status", project.name], env=env, capture_output=True)
        print(status.stdout.decode() + status.stderr.decode())
        report_memory(sampler, {w.pid: name for w, name in zip(workers, "AB", strict=True)})
        evaluate(survey / "truth", project)
    finally:
        for w in workers:
            w.terminate()
        odmflow("server", "down", "--home", str(home))


def start_worker(work: Path, name: str, limit: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A process worker of the node's pool named `name` taking `limit` runs at once, logging into `work`."""
    log = (work / f"worker-{name}.log").open("wb")
    command = [str(BIN / "prefect"), "worker", "start", "--pool", "odmflow-process", "--type", "process"]
    command += ["--name", name, "--limit", str(limit), "--install-policy", "never"]
    return subprocess.Popen(command, env=env, stdout=log, stderr=log)


def wait_for(api_url: str, name: str, deadline: float) -> None:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    while time.perf_counter() < deadline:
        with SyncPrefectClient(api_url) as client:
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))
        if runs and runs[0].state and runs[0].state.is_final():
            print(f"run {name}: {runs[0].state.name}")
            return
        time.sleep(10)
    raise SystemExit(f"the run {name} did not end in time")


def report_memory(sampler: Sampler, names: dict[int, str]) -> None:
    print("peak RSS per process (MiB), largest first, under worker A or B:")
    for pid, peak in sorted(sampler.peaks.items(), key=lambda kv: -kv[1])[:16]:
        print(f"  {peak:7.0f}  {names[sampler.owners[pid]]}  {pid}  {sampler.commands.get(pid, '?')}")


if __name__ == "__main__":
    main()
