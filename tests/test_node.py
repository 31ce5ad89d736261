"""A whole local node against real servers on 127.0.0.1: Prefect server and worker (`odmflow server up`)
and an S3 server (moto). Datasets dropped in the bucket get processed; runs survive a killed worker.
The runs process the session's small survey: these tests check orchestration, not accuracy."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import s3fs

from odm_core.synthetic import SyntheticTruth
from odmflow import server
from tasks.lost_runs import pid_alive
from tests.conftest import run_cli
from tests.inprocess import AFTER_OPENSFM
from tests.s3server import free_port, reset

pytestmark = pytest.mark.slow
BUCKET = "drops"
INCOMING = f"s3://{BUCKET}/incoming"


@pytest.fixture(scope="module")
def node(
    s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory, small_survey: SyntheticTruth
) -> Iterator[dict[str, Any]]:
    """`odmflow server up --bucket s3://drops/incoming` with moto's credentials; `down` afterwards.

    A dataset is dropped under the watched prefix at once (site-1), so the watcher's schedule (every 60 s)
    runs while the other tests do; its test, later in this file, checks what the watcher did."""
    reset(s3_endpoint)
    home = tmp_path_factory.mktemp("node")
    aws = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_endpoint,
        "ODMFLOW_WORK_DIR": str(home / "work"),
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    cfg = server.NodeConfig(
        home=home, port=free_port(), bucket=INCOMING, timeout_s=120, node_port=free_port()
    )
    with pytest.MonkeyPatch.context() as mp:
        for key, value in aws.items():
            mp.setenv(key, value)
        fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)
        fs.mkdir(BUCKET)
        state = server.up(cfg)
        _upload(fs, small_survey, f"{BUCKET}/incoming/site-1")
        env = {**os.environ, "PREFECT_API_URL": state.api_url}
        try:
            yield {"cfg": cfg, "state": state, "env": env, "fs": fs, "home": home}
        finally:
            server.down(home)


def _upload(fs: s3fs.S3FileSystem, survey: SyntheticTruth, prefix: str) -> None:
    photos = sorted(survey.images_dir.iterdir())
    fs.put([str(p) for p in photos], [f"{prefix}/images/{p.name}" for p in photos])


def _wait(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(2)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _client(node: dict[str, Any]):
    from prefect.client.orchestration import SyncPrefectClient

    return SyncPrefectClient(node["state"].api_url)


def _pipeline_runs(node: dict[str, Any], name: str) -> list[Any]:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterName

    with _client(node) as client:
        return client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["odm-pipeline"])),
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])),
        )


def test_overlapping_watchers_start_one_run_and_cancel_works(
    node: dict[str, Any], small_survey: SyntheticTruth
) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.odm_watch_bucket import odm_watch_bucket

    _upload(node["fs"], small_survey, f"{BUCKET}/race/site-2")

    def watch(_: int) -> list[str]:
        with temporary_settings({PREFECT_API_URL: node["state"].api_url}):
            return odm_watch_bucket(f"s3://{BUCKET}/race")

    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(watch, range(2))
    assert len(first) == 1 and first == second  # both watchers got the same run back
    assert len(_pipeline_runs(node, "site-2")) == 1
    cancelled = run_cli(["cancel", "site-2"], node["env"])
    assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
    _wait(
        lambda: all(r.state and r.state.is_final() for r in _pipeline_runs(node, "site-2")),
        120,
        "the cancelled run to end",
    )
    assert _pipeline_runs(node, "site-2")[0].state.name == "Cancelled"


def test_two_submitted_projects_both_complete(
    node: dict[str, Any], small_survey: SyntheticTruth, tmp_path: Path
) -> None:
    fs: s3fs.S3FileSystem = node["fs"]
    projects = []
    for name in ("alpha", "beta"):
        shutil.copytree(small_survey.images_dir, tmp_path / name / "images")
        projects.append(tmp_path / name)
    # alpha is processed in place; beta is uploaded to the bucket and processed there.
    # orchestration is checked here, not accuracy
    cheap = ["-o", "feature-quality=lowest", "-o", "mesh-size=20000", "-o", "mesh-octree-depth=9"]
    for project, extra in zip(projects, ([], ["--upload", f"s3://{BUCKET}/uploads"]), strict=True):
        result = run_cli(["submit", str(project), *cheap, *extra], node["env"])
        assert result.returncode == 0, result.stdout + result.stderr
        assert "/runs/flow-run/" in result.stdout

    def both_done() -> bool:
        runs = [r for p in projects for r in _pipeline_runs(node, p.name)]
        failed = [r for r in runs if r.state and r.state.is_final() and not r.state.is_completed()]
        assert not failed, f"runs ended badly: {[(r.name, r.state.name) for r in failed]}"
        return len(runs) == 2 and all(r.state and r.state.is_completed() for r in runs)

    _wait(both_done, 420, "both submitted runs to complete")
    alpha_shots = json.loads((projects[0] / "odm_report" / "shots.geojson").read_text())["features"]
    beta_shots = json.loads(fs.cat(f"{BUCKET}/uploads/beta/odm_report/shots.geojson"))["features"]
    assert len(alpha_shots) == len(beta_shots) == small_survey.n_photos
    assert sorted(p.name for p in projects[1].iterdir()) == ["images"]  # the uploaded folder is untouched
    listing = run_cli(["list"], node["env"])
    assert "alpha" in listing.stdout and "beta" in listing.stdout
    status = run_cli(["status", "alpha"], node["env"])
    assert "Completed" in status.stdout and "opensfm" in status.stdout and "100%" in status.stdout
    for name in ("alpha", "beta"):  # outputs back from the local folder and from the bucket
        dest = tmp_path / "downloads" / name
        result = run_cli(["download", name, str(dest)], node["env"])
        assert result.returncode == 0, result.stdout + result.stderr
        assert (dest / "odm_report" / "shots.geojson").is_file() and not (dest / "images").exists()


def test_dropped_dataset_is_processed_once_by_the_watcher(
    node: dict[str, Any], small_survey: SyntheticTruth
) -> None:
    fs: s3fs.S3FileSystem = node["fs"]  # site-1 was dropped when the node came up
    shots = f"{BUCKET}/incoming/site-1/odm_report/shots.geojson"
    _wait(lambda: fs.exists(shots), 420, f"s3://{shots} from the scheduled watcher")
    assert len(json.loads(fs.cat(shots))["features"]) == small_survey.n_photos
    assert len(_pipeline_runs(node, "site-1")) == 1


def test_run_resumes_after_its_worker_is_killed(node: dict[str, Any], small_survey: SyntheticTruth) -> None:
    fs: s3fs.S3FileSystem = node["fs"]
    _upload(fs, small_survey, f"{BUCKET}/jobs/gamma")
    result = run_cli(["submit", f"s3://{BUCKET}/jobs/gamma"], node["env"])
    assert result.returncode == 0, result.stdout + result.stderr
    # Wait until `dataset` is checkpointed in the bucket and `opensfm` is under way, then kill the worker.
    _wait(
        lambda: fs.exists(f"{BUCKET}/jobs/gamma/.odmflow/manifests/dataset.json"), 300, "dataset checkpoint"
    )
    time.sleep(3)
    # The worker's machine goes down: the worker and the run's own process (which has its own group).
    state = server.NodeState.load(node["home"])
    worker = next(p for p in state.processes if p.name == "worker")
    run_pid = int(_pipeline_runs(node, "gamma")[0].infrastructure_pid.rpartition(":")[2])
    os.killpg(worker.pid, 9)
    os.killpg(os.getpgid(run_pid), 9)
    _wait(lambda: not worker.running() and not pid_alive(run_pid), 30, "the killed worker and run to be gone")
    assert not fs.exists(f"{BUCKET}/jobs/gamma/odm_report/shots.geojson")

    # Restart the node: a new worker, and the orphaned run queued again to resume.
    server.down(node["home"])
    node["state"] = server.up(node["cfg"])
    node["env"]["PREFECT_API_URL"] = node["state"].api_url
    _wait(lambda: fs.exists(f"{BUCKET}/jobs/gamma/odm_report/shots.geojson"), 420, "the resumed run")
    runs = _pipeline_runs(node, "gamma")
    assert len(runs) == 1  # the same run resumed, not a new one
    logs = run_cli(["logs", "gamma"], node["env"]).stdout
    assert "dataset" in logs
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    def timings() -> list[dict[str, Any]] | None:
        with _client(node) as client:
            arts = client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[runs[0].id]))
            )
        tables = [a for a in arts if a.key == "odm-stage-timings"]
        if not tables:
            return None
        data = max(tables, key=lambda a: a.created).data
        return json.loads(data) if isinstance(data, str) else data

    rows = _wait(timings, 60, "the resumed run's stage table")
    assert {r["stage"]: r["state"] for r in rows} == {
        "dataset": "checkpoint",
        "opensfm": "ran",
        **dict.fromkeys(AFTER_OPENSFM, "ran"),
    }


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_prefect_ui_shows_the_run_stages_and_summary(
    node: dict[str, Any], small_survey: SyntheticTruth, tmp_path: Path
) -> None:
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (scripts/install.sh installs it)")
    from playwright.sync_api import sync_playwright

    done = [r for r in _pipeline_runs(node, "alpha") if r.state and r.state.is_completed()]
    if not done:  # run on its own: process a project first
        shutil.copytree(small_survey.images_dir, tmp_path / "alpha" / "images")
        assert run_cli(["submit", str(tmp_path / "alpha")], node["env"]).returncode == 0
        done = _wait(
            lambda: [r for r in _pipeline_runs(node, "alpha") if r.state and r.state.is_completed()],
            420,
            "a completed run",
        )
    url = f"{node['state'].ui_url}/runs/flow-run/{done[0].id}"
    shot = Path(os.environ.get("ODMFLOW_SCREENSHOT_DIR", tmp_path)) / "prefect-run.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.get_by_text("Completed").first.wait_for(timeout=60_000)
        page.get_by_text("Artifacts", exact=True).click()
        page.get_by_text("odm-summary").first.wait_for(timeout=30_000)
        page.get_by_text("odm-stage-timings").first.wait_for(timeout=30_000)
        page.get_by_text("Task Runs", exact=True).click()
        for stage in ("dataset", "opensfm", "openmvs", "odm_report"):
            page.get_by_text(re.compile(rf"^{stage}-\w+$")).first.wait_for(timeout=30_000)
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.stat().st_size > 10_000


def test_a_split_bucket_survey_runs_its_submodels_on_workers_without_a_shared_disk(
    node: dict[str, Any], small_survey: SyntheticTruth, tmp_path: Path
) -> None:
    """A submitted split run of a bucket project starts each submodel as a run of the same deployment for
    the pool's workers, each submodel a bucket project of its own. A second worker, on a disk of its own,
    takes the submodels and is killed (its machine goes down): its runs end with it, the parent sees them
    lost and starts them again; a third worker, on a third disk, runs them from the bucket; the parent
    downloads their products and merges them into the bucket."""
    fs = node["fs"]
    url = f"s3://{BUCKET}/projects/split-site"
    _upload(fs, small_survey, url[len("s3://") :])
    photos_before = {k: v["ETag"] for k, v in fs.find(f"{url}/images", detail=True).items()}
    local = Path(os.environ["ODMFLOW_WORK_DIR"]) / BUCKET / "projects" / "split-site"  # the parent's disk
    options = ["-o", "split=4", "-o", "split-overlap=10", "-o", "feature-quality=lowest"]
    result = run_cli(["submit", url, *options], node["env"])
    assert result.returncode == 0, result.stdout + result.stderr
    _wait(lambda: _running(node, "split-site"), 300, "the split run to start on the node's worker")
    node_worker = next(p for p in server.NodeState.load(node["home"]).processes if p.name == "worker")
    second = _worker(node, "second", tmp_path / "machine-2")
    os.kill(node_worker.pid, signal.SIGSTOP)  # the node's worker takes nothing until the end
    third = None
    try:
        victims = _wait(lambda: _submodels_on(node, local, second.pid), 600, "the submodels to start")
        second.kill()
        second.wait()
        gone = lambda: not any(pid_alive(pid) for pid in victims.values())  # noqa: E731
        _wait(gone, 30, "the second worker's runs to end")
        third = _worker(node, "third", tmp_path / "machine-3")
        (parent,) = _wait(lambda: _completed(node, "split-site"), 900, "the split run to complete")
    finally:
        os.kill(node_worker.pid, signal.SIGCONT)
        if third is not None:
            third.kill()
            third.wait()
    names = [s["name"] for s in json.loads((local / "submodels" / "split.json").read_text())["submodels"]]
    assert sorted(victims) == sorted(names) and len(names) == 2
    for name in names:
        runs = sorted(_pipeline_runs(node, name), key=lambda r: r.created)
        assert [r.state.name for r in runs] == ["Crashed", "Completed"]  # lost, then run again
        assert "its worker was killed" in (runs[0].state.message or "")
        assert runs[-1].deployment_id == parent.deployment_id
        assert runs[-1].parent_task_run_id is not None  # shown under the parent in the UI
        ran_on = tmp_path / "machine-3" / BUCKET / "projects" / "split-site" / "submodels" / name
        assert (ran_on / "odm_orthophoto" / "odm_orthophoto.tif").is_file()  # the third disk ran it
        assert (local / "submodels" / name / "odm_orthophoto" / "odm_orthophoto.tif").is_file()  # pulled
        assert not (local / "submodels" / name / "openmvs").exists()  # ... not run on the parent's disk
        assert fs.exists(f"{url}/submodels/{name}/odm_orthophoto/odm_orthophoto.tif")
    assert fs.exists(f"{url}/odm_orthophoto/odm_orthophoto.tif")
    assert fs.exists(f"{url}/odm_georeferencing/odm_georeferenced_model.laz")
    assert {k: v["ETag"] for k, v in fs.find(f"{url}/images", detail=True).items()} == photos_before


def test_submodels_that_no_worker_starts_run_in_the_split_run(
    node: dict[str, Any], small_survey: SyntheticTruth, tmp_path: Path
) -> None:
    """The pool's only free worker was started with --limit 1 and takes the split run: no slot is left for
    the submodels (the node's own worker paused). After the start timeout the split run cancels their
    waiting runs and runs them itself; the run completes."""
    project = tmp_path / "solo-site"
    shutil.copytree(small_survey.images_dir, project / "images")
    node_worker = next(p for p in server.NodeState.load(node["home"]).processes if p.name == "worker")
    os.kill(node_worker.pid, signal.SIGSTOP)  # the node's worker takes nothing until the end
    solo = None
    try:
        solo = _worker(node, "solo", tmp_path / "solo-disk", limit=1, env={"ODMFLOW_SUBMODEL_START_S": "20"})
        parent = _submit_split_and_wait(node, project)
    finally:
        os.kill(node_worker.pid, signal.SIGCONT)
        if solo is not None:
            solo.kill()
            solo.wait()
    assert parent.state.is_completed(), parent.state
    names = [s["name"] for s in json.loads((project / "submodels" / "split.json").read_text())["submodels"]]
    assert len(names) == 2
    with _client(node) as client:
        from prefect.client.schemas.filters import FlowFilter, FlowFilterName

        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["odm-pipeline"])))
    for name in names:
        folder = str(project / "submodels" / name)
        states = sorted(r.state.name for r in runs if str(r.parameters.get("project")) == folder and r.state)
        assert states == ["Cancelled", "Completed"], (name, states)  # the pool's, then the split run's
        assert (Path(folder) / "odm_orthophoto" / "odm_orthophoto.tif").is_file()
    logs = run_cli(["logs", project.name], node["env"]).stdout
    assert "no worker of the pool started its run within 20 s" in logs
    assert (project / "odm_orthophoto" / "odm_orthophoto.tif").is_file()


def _submit_split_and_wait(node: dict[str, Any], project: Path) -> Any:
    """Submit the small survey split in two (`odmflow submit`) and return its run once it has ended."""
    options = ["-o", "split=4", "-o", "split-overlap=10", "-o", "feature-quality=lowest"]
    result = run_cli(["submit", str(project), *options], node["env"])
    assert result.returncode == 0, result.stdout + result.stderr
    (parent,) = _wait(
        lambda: [r for r in _pipeline_runs(node, project.name) if r.state and r.state.is_final()],
        900,
        "the split run to end",
    )
    return parent


def _completed(node: dict[str, Any], name: str) -> list[Any] | None:
    runs = _pipeline_runs(node, name)
    failed = [r for r in runs if r.state and r.state.is_final() and not r.state.is_completed()]
    assert not failed, f"the run ended badly: {[(r.name, r.state.name) for r in failed]}"
    return runs if runs and all(r.state and r.state.is_completed() for r in runs) else None


def _running(node: dict[str, Any], name: str) -> bool:
    return any(r.state and r.state.name == "Running" for r in _pipeline_runs(node, name))


def _worker(
    node: dict[str, Any], name: str, disk: Path, limit: int | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """A process worker for the node's pool, as `server up` starts its own, that keeps its bucket
    projects in a folder of its own (another machine's disk); `limit`: its --limit."""
    state = node["state"]
    env = {**server._env(Path(state.home), node["cfg"], state.api_url), "ODMFLOW_WORK_DIR": str(disk)} | (
        env or {}
    )
    args = ["--pool", state.pool, "--type", "process", "--name", name, "--install-policy", "never"]
    args += ["--limit", str(limit)] if limit is not None else []
    disk.mkdir(parents=True, exist_ok=True)
    with (disk / "worker.log").open("wb") as out:
        worker = subprocess.Popen(
            [str(server.BIN / "prefect"), "worker", "start", *args], env=env, stdout=out, stderr=out
        )
    _wait(lambda: server._worker_online(state.api_url, state.pool, name), 120, f"the {name} worker")
    return worker


def _submodels_on(node: dict[str, Any], project: Path, worker: int) -> dict[str, int] | None:
    """{submodel: pid} once every submodel's run is executing under `worker`'s process."""
    if not (project / "submodels" / "split.json").is_file():
        return None
    pids = {}
    for sub in json.loads((project / "submodels" / "split.json").read_text())["submodels"]:
        runs = [r for r in _pipeline_runs(node, sub["name"]) if r.state and r.state.name == "Running"]
        pid = (runs[0].infrastructure_pid or "").rpartition(":")[2] if runs else ""
        if not pid.isdigit() or not pid_alive(int(pid)):
            return None
        assert int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) == worker
        pids[sub["name"]] = int(pid)
    return pids


def test_a_split_run_on_a_pool_of_one_run_at_a_time_runs_its_submodels_itself(
    node: dict[str, Any], small_survey: SyntheticTruth, tmp_path: Path
) -> None:
    """With the pool limited to one flow run, which the split run holds, runs of its submodels would
    never start: they run inside the split run instead, and the run completes."""
    from prefect.client.schemas.actions import WorkPoolUpdate

    pool = node["state"].pool
    _wait(
        lambda: not _holding_slots(node, recover=True), 120, "earlier tests' runs to leave the pool's slots"
    )
    with _client(node) as client:
        client.update_work_pool(pool, WorkPoolUpdate(concurrency_limit=1))
    try:
        project = tmp_path / "one-at-a-time"
        shutil.copytree(small_survey.images_dir, project / "images")
        parent = _submit_split_and_wait(node, project)
    finally:
        with _client(node) as client:
            client.update_work_pool(pool, WorkPoolUpdate(concurrency_limit=None))
    assert parent.state.is_completed(), parent.state
    assert "runs 1 flow run at a time" in run_cli(["logs", project.name], node["env"]).stdout
    assert (project / "odm_orthophoto" / "odm_orthophoto.tif").is_file()


def _holding_slots(node: dict[str, Any], recover: bool = False) -> list[str]:
    """Runs that hold a slot of the node's pool (pending, running or cancelling): name and state.
    `recover`: first do what `odmflow server up` does after a crash (odmflow.recovery): earlier tests
    kill workers, and a run that a killed worker had claimed but not started stays Pending ("Submitting")
    and holds its slot for ever."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from odmflow.recovery import recover_orphaned_runs

    if recover:
        with temporary_settings({PREFECT_API_URL: node["state"].api_url}):
            recover_orphaned_runs(node["state"].pool)
    busy = [StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]
    with _client(node) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=busy)))
        )
    pool = node["state"].pool
    held = [f"{r.name} {r.state.name if r.state else None}" for r in runs if r.work_pool_name == pool]
    if held:
        print("runs holding slots:", held)
    return held
