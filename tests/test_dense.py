"""The dense stages on the synthetic survey: accuracy against the truth, per-view resume, Dask clusters."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import laspy
import numpy as np
import pytest

from odm_core.camera.reconstruction import depthmap_size
from odm_core.cloud.ply import read_ply
from odm_core.evaluate.dense_truth import dense_accuracy
from odm_core.layout import ProjectTree
from odm_core.synthetic import SyntheticTruth
from tests.conftest import REPO, SYNTHETIC, run_cli
from tests.inprocess import AFTER_OPENSFM, copy_processed, expected, run_flow, states


def test_dense_cloud_lies_on_the_true_surface(survey: SyntheticTruth, processed: ProjectTree) -> None:
    size = depthmap_size(SYNTHETIC.image_width, SYNTHETIC.image_height, "medium")
    gsd_dm = survey.gsd_m * max(SYNTHETIC.image_width, SYNTHETIC.image_height) / size
    acc = dense_accuracy(
        survey.project_dir / "truth", processed.georeferenced_model_laz, processed.shots_geojson, gsd_dm
    )
    assert acc.n_points > 20_000
    assert acc.median_abs_dz_m <= gsd_dm  # acceptance: within one GSD at depth-map resolution
    assert acc.coverage >= 0.90


def test_georeferenced_laz_has_crs_colours_and_views(processed: ProjectTree) -> None:
    las = laspy.read(processed.georeferenced_model_laz)
    assert las.header.parse_crs().to_epsg() == 32632
    assert las.header.are_points_compressed
    filtered = read_ply(processed.filtered_point_cloud)
    assert len(las.points) == len(filtered)
    assert np.array_equal(np.asarray(las.user_data), filtered["views"])
    assert np.asarray(las.user_data).min() >= 2  # every fused point was seen by two photos or more
    assert np.array_equal(np.asarray(las.red) // 257, filtered["red"])
    views = json.loads(processed.openmvs_views.read_text())
    assert len(views) == survey_photos(processed) and all(v["stereo_neighbours"] for v in views)


def test_fusion_makes_each_surface_point_once(processed: ProjectTree) -> None:
    """Two views whose pixels confirm each other emit one point, not the same average twice."""
    pos = np.column_stack([read_ply(processed.openmvs_model)[a] for a in "xyz"])
    assert len(np.unique(pos, axis=0)) == len(pos)
    stats = json.loads(processed.filtered_point_cloud_stats.read_text())
    assert stats["spacing"] >= 0.5 * stats["depthmap_sampling"]  # not views' points stacked on each other


def survey_photos(tree: ProjectTree) -> int:
    return len(list(tree.images.iterdir()))


@pytest.mark.slow
def test_sigkill_during_openmvs_redoes_only_missing_views(
    processed: ProjectTree, tmp_path: Path, prefect_env: dict[str, str]
) -> None:
    tree = copy_processed(processed, tmp_path / "killed")
    log = tmp_path / "first.log"
    started = time.time()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "odmflow",
            "run",
            str(tree.root),
            "--rerun-from",
            "openmvs",
            "--end-with",
            "openmvs",
            "--pc-quality",
            "high",
        ],
        env=prefect_env,
        cwd=REPO,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while len(_fresh_depthmaps(tree, started)) < 3:
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its local Dask workers
    proc.wait()
    assert not tree.manifest("openmvs").exists()
    done = len(_fresh_depthmaps(tree, started))

    runs = run_flow(tree, pc_quality="high", end_with="openmvs")
    assert states(runs) == expected("openmvs", end_with="openmvs")
    dense = runs["openmvs"].result
    assert dense.units_reused >= done >= 3
    assert dense.units_computed + dense.units_reused == 3 * survey_photos(tree)
    assert tree.manifest("openmvs").is_file() and len(read_ply(tree.openmvs_model)) == dense.n_points
    assert not list(tree.root.rglob("*.part"))


def _fresh_depthmaps(tree: ProjectTree, since: float) -> list[Path]:
    """Finished depth maps (their checkpoint sidecar written) of this run."""
    if not tree.depthmaps.is_dir():
        return []
    return [p for p in tree.depthmaps.glob("*.depth.npz.json") if p.stat().st_mtime > since]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def dask_cluster(prefect_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """A separate `dask scheduler` and two single-threaded `dask worker` processes on 127.0.0.1."""
    address = f"tcp://127.0.0.1:{_free_port()}"
    bin_dir = Path(sys.executable).parent
    env = {**prefect_env, "DASK_LOGGING__DISTRIBUTED": "warning"}
    procs = [
        subprocess.Popen(
            [str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
             "--no-dashboard"],
            env=env, cwd=REPO, stdout=(tmp_path / "scheduler.log").open("wb"), stderr=subprocess.STDOUT,
        )
    ]  # fmt: skip
    from distributed import Client

    for i in range(2):
        procs.append(
            subprocess.Popen(
                [str(bin_dir / "dask"), "worker", address, "--nthreads", "1", "--no-dashboard",
                 "--name", f"test-worker-{i}"],
                env=env, cwd=REPO, stdout=(tmp_path / f"worker{i}.log").open("wb"), stderr=subprocess.STDOUT,
            )
        )  # fmt: skip
    try:
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.mark.slow
def test_dense_stage_on_an_existing_dask_cluster(
    processed: ProjectTree, tmp_path: Path, prefect_env: dict[str, str], dask_cluster: str
) -> None:
    from distributed import Client

    tree = copy_processed(processed, tmp_path / "on-cluster")
    shutil.rmtree(tree.depthmaps)
    with Client(dask_cluster) as client:
        worker_pids = set(client.run(os.getpid).values())
    runs = run_flow(tree, rerun_from="openmvs", end_with="openmvs", dask_address=dask_cluster)
    assert states(runs) == expected("openmvs", end_with="openmvs")
    dense = runs["openmvs"].result
    assert (dense.units_computed, dense.units_reused) == (3 * survey_photos(tree), 0)
    with Client(dask_cluster) as client:
        ran_on = client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert len(worker_pids) == 2 and all(n > 0 for n in ran_on.values())  # both workers took view units
    assert dense.n_points == len(read_ply(processed.openmvs_model))  # same cloud as the local cluster made


def test_bad_dask_address_is_refused_before_any_work(
    processed: ProjectTree, prefect_env: dict[str, str]
) -> None:
    result = run_cli(["run", str(processed.root), "--dask-address", "localhost:8786"], prefect_env)
    assert result.returncode == 2 and "--dask-address" in result.stderr, result.stderr


@pytest.mark.slow
def test_fast_orthophoto_skips_dense_matching(
    processed: ProjectTree, tmp_path: Path, prefect_env: dict[str, str]
) -> None:
    tree = copy_processed(processed, tmp_path / "fast")
    runs = run_flow(tree, fast_orthophoto=True)
    later = AFTER_OPENSFM[AFTER_OPENSFM.index("odm_filterpoints") :]  # split and merge: unchanged inputs
    assert states(runs) == expected(*later, skipped=("openmvs",))
    sparse = read_ply(tree.sparse_ply)
    assert len(laspy.read(tree.georeferenced_model_laz).points) <= len(sparse)
    assert tree.orthophoto_tif.is_file()  # ODM's fast orthophoto: rendered onto the sparse surface


def test_nested_flows_get_their_plan_by_path(processed: ProjectTree, prefect_env: dict[str, str]) -> None:
    """Prefect keeps a flow run's parameters in its API, at most 512 KiB: a dense plan passed as a
    parameter (about 19 KiB per photo) failed beyond about 27 photos, so plans travel as files."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    names = ["openmvs-views", "odm-orthophoto-tiles"]
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=names)))
    assert len(runs) >= 2
    for run in runs:
        assert Path(run.parameters["plan_file"]).is_file()
        assert len(json.dumps(run.parameters, default=str)) < 4096


def test_local_depth_bound_keeps_the_surface_and_is_tighter(processed: ProjectTree) -> None:
    """Each view's depth bound near its tie points lets every surface point through (the dense cloud,
    which lies on the true surface), and it is tighter than the global depth_max over most of each view
    (measured: 89-100% of each view's pixels below 0.95 x depth_max on the test survey)."""
    from odm_core.artifacts import read_plan

    views = read_plan(str(processed.plan("openmvs"))).views
    cloud = read_ply(processed.openmvs_model)
    world = np.column_stack([cloud["x"], cloud["y"], cloud["z"]])
    for view in views:
        bound = view.depth_bound()
        assert bound.shape == (view.dm_height, view.dm_width)
        assert np.all(bound <= view.depth_max + 1e-6)
        assert np.mean(bound < 0.95 * view.depth_max) >= 0.5, f"{view.name}: the bound is mostly global"
        u, v, z = view.project(world)
        seen = view.in_depth_map(u, v, z)
        beyond = z[seen] > bound[v[seen].astype(int), u[seen].astype(int)]
        assert beyond.mean() < 0.001, f"{view.name}: {beyond.mean():.2%} of the cloud lies beyond its bound"


def test_depth_bound_follows_its_grid() -> None:
    from odm_core.camera.view import ViewCamera

    grid = (50.0, 60.0, 70.0, 80.0, 90.0, 100.0)  # 2 rows x 3 columns
    view = ViewCamera(
        0, "v", "", "PINHOLE", (300.0, 300.0, 160.0, 120.0), 320, 240,
        tuple(np.eye(3, 4).ravel()), 300, 200, 300.0, 20.0, 120.0, grid, 3,
    )  # fmt: skip
    bound = view.depth_bound()
    assert bound.shape == (200, 300)
    corners = (bound[0, 0], bound[0, 299], bound[199, 0], bound[199, 150], bound[199, 299])
    assert corners == (50, 70, 80, 90, 100)
    assert bound[99, 99] == 50 and bound[100, 100] == 90
    unbounded = ViewCamera(*[getattr(view, f) for f in ("index", "name", "photo", "model", "params",
        "width", "height", "cam_from_world", "dm_width", "dm_height", "dm_focal_px", "depth_min",
        "depth_max")])  # fmt: skip
    assert np.all(unbounded.depth_bound() == 120.0)
