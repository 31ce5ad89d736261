"""The NodeODM node against `odmflow run` on Brighton Beach: the same photos and options through pyodm
and through the CLI must give the same orthophoto, DSM, DTM and LAZ.

    .venv/bin/python benchmarks/bench_node_brighton.py [IMAGES_DIR] [--options JSON]

Starts a node (`odmflow server up` in a temporary home, free ports, a token), processes the photos at full
resolution with pyodm (`create_task`, `wait_for_completion`, `download_assets`), prints the task's flow
run and its stage task runs as Prefect records them, then runs `odmflow run` with the same options on a
copy of the photos (plus `--gltf`, which the node adds as NodeODM adds its post-processing options) and
compares the products cell by cell and point by point. The default options add `max-concurrency: 1`:
the SfM engine's threads make its model vary from run to run otherwise (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import laspy
import numpy as np
import rasterio

sys.path.insert(0, str(Path(__file__).parent))
from bench_dense import SHARED, odmflow  # noqa: E402

PRODUCTS = ("odm_orthophoto/odm_orthophoto.tif", "odm_dem/dsm.tif", "odm_dem/dtm.tif")
LAZ = "odm_georeferencing/odm_georeferenced_model.laz"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def through_node(images: Path, options: dict[str, object], home: Path, out: Path) -> tuple[str, float]:
    """Process on a fresh node with pyodm; returns the task's uuid and its wall seconds."""
    from pyodm import Node

    state = json.loads((home / "state.json").read_text())
    node = Node.from_url(f"{state['node_url']}/?token={state['node_token']}")
    photos = sorted(str(p) for p in images.iterdir() if p.is_file())
    start = time.perf_counter()
    task = node.create_task(photos, options, name="brighton via pyodm")
    task.wait_for_completion(interval=5)
    task.download_assets(str(out))
    return task.uuid, time.perf_counter() - start


def stages_in_prefect(api_url: str, uuid: str) -> list[str]:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with SyncPrefectClient(api_url) as client:
        run = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[uuid])))[0]
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [run.id]}))
    print(f"flow run {run.name} ({run.id}): {run.state.name if run.state else '?'}, tags {run.tags}")
    return sorted({t.name.rsplit("-", 1)[0] for t in tasks})


def compare(a: Path, b: Path) -> bool:
    same = True
    for rel in PRODUCTS:
        if not (a / rel).exists() and not (b / rel).exists():
            continue
        with rasterio.open(a / rel) as ra, rasterio.open(b / rel) as rb:
            x, y = ra.read(), rb.read()
            equal = (
                x.shape == y.shape and ra.transform == rb.transform and np.array_equal(x, y, equal_nan=True)
            )
            diff = (
                ""
                if equal or x.shape != y.shape
                else f", max |diff| {np.nanmax(np.abs(x - y.astype(x.dtype))):g}"
            )
            print(f"{rel}: {x.shape} vs {y.shape}, {'identical' if equal else 'DIFFERENT'}{diff}")
            same &= equal
    pa, pb = laspy.read(a / LAZ), laspy.read(b / LAZ)
    xyz_a, xyz_b = (np.column_stack([p.X, p.Y, p.Z]) for p in (pa, pb))
    equal = xyz_a.shape == xyz_b.shape and np.array_equal(np.sort(xyz_a, axis=0), np.sort(xyz_b, axis=0))
    print(f"{LAZ}: {len(xyz_a)} vs {len(xyz_b)} points, {'identical' if equal else 'DIFFERENT'}")
    return same and equal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("images", nargs="?", type=Path, default=SHARED / "images")
    default = '{"dsm": true, "dtm": true, "max-concurrency": 1}'
    parser.add_argument("--options", default=default, help="NodeODM options (JSON)")
    args = parser.parse_args()
    options = json.loads(args.options)
    with tempfile.TemporaryDirectory() as tmp:
        home, via_node = Path(tmp) / "home", Path(tmp) / "via-node"
        up = ["--home", str(home), "--port", str(free_port()), "--node-port", str(free_port())]
        odmflow("server", "up", *up, "--node-token", "bench")
        try:
            uuid, node_s = through_node(args.images, options, home, via_node)
            api_url = json.loads((home / "state.json").read_text())["api_url"]
            print(f"node: {node_s:.1f} s, stages in Prefect: {', '.join(stages_in_prefect(api_url, uuid))}")
        finally:
            odmflow("server", "down", "--home", str(home))
        cli = Path(tmp) / "cli"
        shutil.copytree(args.images, cli / "images")
        flags = [f"--{k}" for k, v in options.items() if v is True] + ["--gltf"]
        flags += [x for k, v in options.items() if v is not True for x in (f"--{k}", str(v))]
        start = time.perf_counter()
        odmflow("run", str(cli), *flags)
        print(f"odmflow run {' '.join(flags)}: {time.perf_counter() - start:.1f} s")
        print("same products" if compare(via_node, cli) else "the products differ")


if __name__ == "__main__":
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    main()
