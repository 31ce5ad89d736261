"""NodeODM conformance of `odmflow node`, driven by pyodm's own Node/Task calls and by raw requests shaped
as WebODM, ClusterODM and CloudODM send them (../shared/reference/nodeodm-api.md, section 1.7).

The fast layer serves the node's real app over HTTP on 127.0.0.1 with a stand-in for the Prefect server
(`FakePrefect`: the tests move each flow run's state), so every endpoint, error path and security check
runs in seconds. The slow layer (`@pytest.mark.slow`, at the end) starts a real node with
`odmflow server up` and processes the small synthetic survey through it.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prefect.client.schemas.objects import StateType
from pyodm import Node
from pyodm.exceptions import NodeResponseError, TaskFailedError
from pyodm.types import TaskStatus

from odm_core.option_specs import OPTIONS_BY_NAME
from odmflow.node.options import HIDDEN, NODE_OPTIONS
from tests.nodeodm_support import (
    UUID_PATTERN,
    FakePrefect,
    NodeServer,
    run_uuid,
    settings_for,
    wait_for,
    webhook_receiver,
)

TOKEN = "T"
DOMAIN_PATTERNS = (  # NodeODM's domain grammar (libs/odmInfo.js), which ClusterODM parses too
    r"^(positive |negative )?(integer|float)$",
    r"^percent$",
    r"^(float|integer): ([\-\+\.\d]+) <= x <= ([\-\+\.\d]+)$",
    r"^(float|integer) (>=|>|<|<=) ([\-\+\.\d]+)$",
    r"^(json)$",
    r"^(string|path)$",
)


@pytest.fixture
def fake() -> FakePrefect:
    return FakePrefect()


@pytest.fixture
def node(tmp_path: Path, fake: FakePrefect) -> Iterator[dict[str, Any]]:
    """The node's app on a free 127.0.0.1 port, token T, 64 KiB upload limit, fake Prefect."""
    settings = settings_for(tmp_path / "data", max_upload_bytes=64 * 1024)
    with NodeServer(settings, fake):
        yield {
            "url": settings.url,
            "node": Node("127.0.0.1", settings.port, TOKEN),
            "data": settings.data_dir,
            "fake": fake,
        }


@pytest.fixture
def photos(tmp_path: Path) -> list[str]:
    """Stand-in photos (the node does not read them; the fake Prefect never processes them)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    files = []
    for i in range(4):
        (folder / f"IMG_{i:04d}.JPG").write_bytes(b"\xff\xd8\xff" + bytes([i]) * 2000)
        files.append(str(folder / f"IMG_{i:04d}.JPG"))
    return files


def get(node: dict[str, Any], path: str, token: str | None = TOKEN, **params: Any) -> requests.Response:
    query = {**params, **({"token": token} if token is not None else {})}
    return requests.get(f"{node['url']}{path}", params=query, timeout=10)


def post(node: dict[str, Any], path: str, token: str | None = TOKEN, **kw: Any) -> requests.Response:
    return requests.post(f"{node['url']}{path}", params={"token": token} if token else {}, timeout=10, **kw)


def leftovers(data: Path) -> list[str]:
    """Every file under the node's data folder."""
    return sorted(str(p.relative_to(data)) for p in data.rglob("*") if p.is_file())


# A. Node level


def test_wrong_or_missing_token_is_refused_with_nodeodms_error(node: dict[str, Any]) -> None:
    with pytest.raises(NodeResponseError, match=r"^Invalid authentication token"):
        Node("127.0.0.1", node["node"].port, "wrong").info()
    for path in ("/info", "/options", "/task/list", "/task/x/info", "/task/x/output"):
        for token in ("wrong", None, ""):
            reply = get(node, path, token)
            assert reply.status_code == 200 and reply.headers["content-type"].startswith("application/json")
            assert reply.json()["error"].startswith("Invalid authentication token"), (path, token)
    for path in ("/task/new/init", "/task/new", f"/task/new/upload/{'0' * 8}-0000-4000-8000-{'0' * 12}"):
        files = [("images", ("a.jpg", b"x" * 100))]
        reply = post(node, path, "wrong", files=files, data={"name": "x"})
        assert reply.json()["error"].startswith("Invalid authentication token")
    assert leftovers(node["data"]) == []  # refused requests wrote nothing


def test_info_has_nodeodms_fields_and_types(node: dict[str, Any]) -> None:
    n = node["node"]
    info = n.info()
    assert re.fullmatch(r"\d+\.\d+\.\d+", info.version) and len(info.version) <= 32
    assert n.version_greater_or_equal_than("1.5.1")
    assert isinstance(info.task_queue_count, int) and info.task_queue_count == 0
    assert info.max_images is None
    assert isinstance(info.max_parallel_tasks, int) and info.max_parallel_tasks >= 1
    assert all(isinstance(v, int) for v in (info.total_memory, info.available_memory, info.cpu_cores))
    assert info.engine == "odmflow" and 0 < len(info.engine_version) <= 32
    raw = get(node, "/info").json()
    assert set(raw) == {
        "version", "taskQueueCount", "totalMemory", "availableMemory", "cpuCores", "maxImages",
        "maxParallelTasks", "engineVersion", "engine",
    }  # fmt: skip


def test_options_come_from_the_catalogue_in_nodeodms_form(node: dict[str, Any]) -> None:
    raw = get(node, "/options").json()
    assert [o["name"] for o in raw] == [s.name for s in NODE_OPTIONS]  # one source: the models' fields
    assert raw[[o["name"] for o in raw].index("cog")] == OPTIONS_BY_NAME["cog"].node_option()
    for item in raw:
        assert set(item) == {"name", "type", "value", "domain", "help"}
        assert item["type"] in {"int", "float", "string", "bool", "enum"} and isinstance(item["value"], str)
        if item["type"] == "enum":
            assert isinstance(item["domain"], list) and item["value"] in item["domain"], item
        else:
            d = item["domain"]
            assert d == "" or any(re.match(p, d) for p in DOMAIN_PATTERNS), item
    names = {o.name for o in node["node"].options()}  # pyodm's NodeOption(**o) accepts every item
    assert {"dsm", "dtm", "fast-orthophoto", "orthophoto-resolution", "dem-resolution", "rerun-from"} <= names
    assert {"end-with", "cog", "gltf", "skip-3dmodel", "max-concurrency"} <= names
    assert not names & ({"project-path", "gcp", "geo", "rerun-all", "dask-address", "name"} | HIDDEN)


def test_auth_routes_answer_without_a_token(node: dict[str, Any]) -> None:
    assert set(get(node, "/auth/info", None).json()) == {"message", "loginUrl", "registerUrl"}
    assert "error" in post(node, "/auth/login", None).json()
    assert "error" in post(node, "/auth/register", None).json()


# B and C, against flow-run states set by the test


def make_outputs(project: Path) -> None:
    """Files a finished run leaves in its project (their content does not matter here)."""
    for rel in (
        "odm_orthophoto/odm_orthophoto.tif",
        "odm_dem/dsm.tif",
        "odm_georeferencing/odm_georeferenced_model.laz",
        "odm_report/shots.geojson",
        "cameras.json",
        "opensfm/reconstruction.json",
    ):
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_bytes(rel.encode() * 100)
    (project / "images.json").write_text(json.dumps([{"filename": "IMG_0000.JPG"}]))


def status(task: Any) -> int:
    return task.info().status.value


def test_chunked_task_runs_completes_downloads_and_calls_its_webhook(
    node: dict[str, Any], photos: list[str], tmp_path: Path
) -> None:
    n, fake = node["node"], node["fake"]
    progress: list[float] = []
    with webhook_receiver() as (hook, received):
        options = {"fast-orthophoto": True, "dsm": True, "orthophoto-resolution": "10", "not-an-option": 1}
        task = n.create_task(photos, options, name="conf", webhook=hook, progress_callback=progress.append)
        assert re.fullmatch(UUID_PATTERN, task.uuid) and progress[-1] == 100.0
        info = task.info()
        assert info.uuid == task.uuid and info.name == "conf" and info.status == TaskStatus.RUNNING
        assert info.processing_time == -1 and info.images_count == len(photos) and info.progress == 0
        opts = {o["name"]: o["value"] for o in info.options}
        assert "not-an-option" not in opts and opts["fast-orthophoto"] is True
        assert opts["orthophoto-resolution"] == 10 and opts["cog"] is True and opts["gltf"] is True
        raw = get(node, f"/task/{task.uuid}/info").json()
        assert isinstance(raw["dateCreated"], int) and isinstance(raw["processingTime"], int)
        assert isinstance(raw["status"]["code"], int)
        assert {"uuid": task.uuid} in get(node, "/task/list").json()

        run = wait_for(lambda: fake.runs and run_uuid(fake, task.uuid), what="the flow run")
        params = fake.params[run]
        project = Path(params["project"])
        assert sorted(p.name for p in (project / "images").iterdir()) == [Path(p).name for p in photos]
        assert params["options"]["odm_filterpoints"] == {"fast_orthophoto": True}
        assert params["options"]["odm_orthophoto"]["orthophoto_resolution"] == 10.0
        wait_for(lambda: status(task) == 20, what="status 20 while the run waits in an idle pool")

        fake.set(run, StateType.RUNNING)
        fake.percent[run] = 50.0
        fake.log(run, *[f"line {i}" for i in range(12)], "a traceback\n  spans lines")
        wait_for(lambda: task.info().progress == 45.0, what="progress 0.9 x the run's")
        full = task.output()
        assert full[:2] == ["[INFO] line 0", "[INFO] line 1"] and len(full) == 14
        assert task.output(5) == full[5:] and task.output(-3) == full[-3:] and task.output(10**6) == []
        assert task.info(with_output=4).output == full[4:]
        assert get(node, f"/task/{task.uuid}/output", line="x").json() == full  # not a number: 0
        assert all(isinstance(line, str) and "\n" not in line for line in full)
        assert task.info().processing_time >= 0
        with pytest.raises(NodeResponseError, match="Cannot download task"):
            task.download_zip(str(tmp_path))
        assert get(node, f"/task/{task.uuid}/download/all.zip").json() == {"error": "Asset not ready"}
        with pytest.raises(NodeResponseError, match="cannot be restarted"):
            task.restart()

        fake.percent[run] = 30.0  # progress never goes back
        make_outputs(project)
        fake.set(run, StateType.COMPLETED)
        task.wait_for_completion(interval=0.2)
        info = task.info()
        assert info.progress == 100 and info.status == TaskStatus.COMPLETED
        wait_for(lambda: received, what="the webhook")
    assert len(received) == 1 and received[0]["uuid"] == task.uuid
    assert received[0]["status"]["code"] == 40 and received[0]["images"] == [{"filename": "IMG_0000.JPG"}]
    _check_downloads(node, task, tmp_path, full)


def _check_downloads(node: dict[str, Any], task: Any, tmp_path: Path, console: list[str]) -> None:
    path = Path(task.download_zip(str(tmp_path / "zip")))
    names = zipfile.ZipFile(path).namelist()
    assert {"odm_orthophoto/odm_orthophoto.tif", "odm_dem/dsm.tif", "cameras.json", "images.json"} <= set(
        names
    )
    assert {"odm_georeferencing/odm_georeferenced_model.laz", "odm_report/shots.geojson"} <= set(names)
    assert "task_output.txt" in names and not any(
        n.startswith(("/", "..", "images/", ".node")) for n in names
    )
    assert not any(n.startswith("opensfm/") for n in names)  # NodeODM's default list only
    text = zipfile.ZipFile(path).read("task_output.txt").decode().splitlines()
    assert text[: len(console)] == console  # the whole log
    task.download_assets(str(tmp_path / "assets"))
    assert (tmp_path / "assets" / "odm_dem" / "dsm.tif").is_file()
    reply = get(node, f"/task/{task.uuid}/download/all.zip")
    assert reply.headers["content-type"] == "application/zip"
    assert int(reply.headers["content-length"]) == path.stat().st_size == len(reply.content)
    assert "attachment" in reply.headers["content-disposition"]
    assert reply.headers.get("accept-ranges") == "bytes"
    ranged = requests.get(reply.url, headers={"Range": "bytes=0-99"}, timeout=10)
    assert ranged.status_code == 206 and ranged.content == reply.content[:100]
    asset = get(node, f"/task/{task.uuid}/download/dsm.tif")
    assert asset.status_code == 200 and asset.content == b"odm_dem/dsm.tif" * 100
    assert get(node, f"/task/{task.uuid}/download/foo.zip").json() == {"error": "Invalid asset"}


def test_restart_cancel_and_remove(node: dict[str, Any], photos: list[str]) -> None:
    n, fake = node["node"], node["fake"]
    task = n.create_task(photos, {"dsm": True})
    first = wait_for(lambda: fake.runs and run_uuid(fake, task.uuid), what="the flow run")
    fake.set(first, StateType.RUNNING)
    fake.log(first, "old line")
    wait_for(lambda: task.output(), what="output")
    fake.set(first, StateType.FAILED, "Flow run encountered an exception: OdmStageError: opensfm: 1 photo")
    with pytest.raises(TaskFailedError):
        task.wait_for_completion(interval=0.2)
    assert task.info().last_error == "OdmStageError: opensfm: 1 photo"
    created = task.info().date_created

    with pytest.raises(NodeResponseError, match="out of range"):
        task.restart({"orthophoto-resolution": -1})
    assert task.restart({"dsm": True, "dtm": True, "rerun-from": "odm_dem"}) is True
    info = task.info()
    assert info.status in (TaskStatus.QUEUED, TaskStatus.RUNNING) and info.progress < 5
    assert task.output() == [] and info.date_created >= created
    second = run_uuid(fake, task.uuid)
    assert second != first and fake.params[second]["project"] == fake.params[first]["project"]
    assert fake.params[second]["options"]["rerun_from"] == "odm_dem"
    assert fake.params[second]["options"]["odm_dem"]["dtm"] is True
    assert {o["name"]: o["value"] for o in info.options}["dtm"] is True

    fake.set(second, StateType.RUNNING)
    wait_for(lambda: task.info().processing_time >= 0, what="the restarted run to start")
    assert task.cancel() is True
    assert status(task) == 50 and second in fake.cancelled
    assert task.cancel() is True  # again: NodeODM answers success
    with pytest.raises(TaskFailedError):
        task.wait_for_completion(interval=0.2)
    with pytest.raises(NodeResponseError):
        task.download_zip("/tmp")
    project = Path(fake.params[second]["project"])
    assert project.is_dir()
    assert task.remove() is True
    assert not project.exists() and {"uuid": task.uuid} not in get(node, "/task/list").json()
    for call in (task.info, task.output, task.remove):
        with pytest.raises(NodeResponseError):
            call()
    with pytest.raises(NodeResponseError):
        n.get_task("8a3b8b86-7a4b-4b39-a7b4-54b7a9f2c9a1").info()


def test_tasks_wait_queued_while_the_pool_is_full(tmp_path: Path, photos: list[str]) -> None:
    fake = FakePrefect(pool_limit=1)
    settings = settings_for(tmp_path / "data")
    with NodeServer(settings, fake):
        n = Node("127.0.0.1", settings.port, TOKEN)
        first, second = n.create_task(photos[:2]), n.create_task(photos[2:])
        run = wait_for(lambda: len(fake.runs) == 2 and run_uuid(fake, first.uuid), what="two runs")
        fake.set(run, StateType.RUNNING)
        wait_for(lambda: status(second) == 10, what="the second task queued")
        assert status(first) == 20 and n.info().task_queue_count == 2 and n.info().max_parallel_tasks == 1
        fake.set(run, StateType.CANCELLED)
        wait_for(lambda: status(second) == 20, what="the second task next")
        assert status(first) == 50
