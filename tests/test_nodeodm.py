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
import os
import re
import statistics
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
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
    with NodeServer(settings, fake) as server:
        yield {
            "server": server,
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
    start = time.perf_counter()
    info = n.info()
    assert time.perf_counter() - start < 5  # WebODM's timeout for /info
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
    assert not names & ({"project-path", "gcp", "geo", "split-image-groups", "rerun-all", "name"} | HIDDEN)


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
        start = time.perf_counter()
        task = n.create_task(photos, options, name="conf", webhook=hook, progress_callback=progress.append)
        assert time.perf_counter() - start < 30 and re.fullmatch(UUID_PATTERN, task.uuid)
        assert progress[-1] == 100.0
        assert node["server"].requests == [  # pyodm's chunked creation, as NodeODM serves it
            "GET /info",
            "POST /task/new/init",
            *[f"POST /task/new/upload/{task.uuid}"] * len(photos),
            f"POST /task/new/commit/{task.uuid}",
        ]
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
        assert full[0] == f"[INFO] odmflow node: Prefect flow run http://127.0.0.1:1/runs/flow-run/{run}"
        assert full[1:3] == ["[INFO] line 0", "[INFO] line 1"] and len(full) == 15
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
    assert task.cancel() is True and status(task) == 50  # NodeODM cancels a completed task too
    assert len(received) == 1  # and calls no webhook for it


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
    second = run_uuid(fake, task.uuid)
    assert task.output() == [
        f"[INFO] odmflow node: Prefect flow run http://127.0.0.1:1/runs/flow-run/{second}"
    ]
    assert info.date_created >= created
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


# D. Error paths


def init(node: dict[str, Any], headers: dict[str, str] | None = None, **fields: str) -> dict[str, Any]:
    files = {k: (None, v) for k, v in fields.items()}
    return post(node, "/task/new/init", files=files or {"options": (None, "[]")}, headers=headers).json()


def upload(node: dict[str, Any], uuid: str, *files: tuple[str, bytes]) -> dict[str, Any]:
    parts = [("images", (name, content, "image/jpeg")) for name, content in files]
    return post(node, f"/task/new/upload/{uuid}", files=parts).json()


def test_error_paths_answer_as_nodeodm_does(node: dict[str, Any], photos: list[str]) -> None:
    n = node["node"]
    with pytest.raises(NodeResponseError, match="orthophoto-resolution"):
        n.create_task(photos, {"orthophoto-resolution": "abc"})
    with pytest.raises(NodeResponseError, match="Cannot convert"):
        n.create_task(photos, {"dsm": "maybe"})
    random_uuid = "0b8e3c7e-4b7a-4f43-9a3e-0c6b6c5b2a11"
    assert upload(node, random_uuid, ("a.jpg", b"x")) == {"error": "Invalid uuid (not found)"}
    uuid = init(node)["uuid"]
    empty = post(node, f"/task/new/upload/{uuid}", files={"name": (None, "x")}).json()
    assert empty["noRetry"] is True and "error" in empty
    assert post(node, f"/task/new/commit/{uuid}").json() == {"error": "Need at least 1 file."}
    assert upload(node, uuid, ("late.jpg", b"x" * 10)) == {"success": True}  # still open for uploads
    uuid = init(node)["uuid"]
    assert upload(node, uuid, ("a.jpg", b"x" * 10)) == {"success": True}
    assert post(node, f"/task/new/commit/{uuid}").json() == {"uuid": uuid}
    assert post(node, f"/task/new/commit/{uuid}").json() == {"error": "Invalid uuid (not found)"}
    assert upload(node, uuid, ("b.jpg", b"x")) == {"error": "Invalid uuid (not found)"}
    assert get(node, f"/task/{uuid}/download/all.zip").json() == {"error": "Asset not ready"}
    assert get(node, f"/task/{uuid}/download/foo.zip").json() == {"error": "Invalid asset"}
    assert get(node, f"/task/{random_uuid}/info").json() == {"error": f"{random_uuid} not found"}
    assert post(node, "/task/cancel", data={}).json() == {"error": "uuid param missing."}
    assert "not found" in post(node, "/task/remove", data={"uuid": random_uuid}).json()["error"]
    file_in_init = post(node, "/task/new/init", files=[("images", ("a.jpg", b"x"))]).json()
    assert "Unexpected field" in file_in_init["error"]


def test_a_failed_run_reports_its_error_output_and_webhook(node: dict[str, Any], photos: list[str]) -> None:
    fake = node["fake"]
    with webhook_receiver() as (hook, received):
        task = node["node"].create_task(photos[:2], webhook=hook)
        run = wait_for(lambda: fake.runs and run_uuid(fake, task.uuid), what="the flow run")
        fake.set(run, StateType.RUNNING)
        fake.log(run, "dataset: reading 2 photos")
        message = "Flow run encountered an exception: OdmInputError: no GPS in:\n  - a.jpg\n  - b.jpg"
        fake.set(run, StateType.FAILED, message)
        with pytest.raises(TaskFailedError):
            task.wait_for_completion(interval=0.2)
        wait_for(lambda: received, what="the webhook")
    info = task.info()
    assert info.last_error == "OdmInputError: no GPS in: - a.jpg - b.jpg"
    assert task.output()[-1] == "[INFO] dataset: reading 2 photos"
    assert info.progress == 100 and len(received) == 1 and received[0]["status"]["code"] == 30


# E. Other clients' shapes


def test_clusterodm_shaped_creation(node: dict[str, Any]) -> None:
    """set-uuid and dateCreated kept, several images per upload request, duplicate names both kept."""
    wanted = "6f1c2b0e-8a3d-4c5e-9f7a-1b2c3d4e5f60"
    reply = init(node, {"set-uuid": wanted}, name="cluster", dateCreated="1700000000000", options="[]")
    assert reply == {"uuid": wanted}
    assert init(node, {"set-uuid": wanted}) == {"error": f"Invalid set-uuid: {wanted}"}
    assert init(node, {"set-uuid": "not-a-uuid"}) == {"error": "Invalid set-uuid: not-a-uuid"}
    three = [("a.jpg", b"1" * 10), ("b.jpg", b"2" * 10), ("a.jpg", b"3" * 10)]
    assert upload(node, wanted, *three) == {"success": True}
    assert post(node, f"/task/new/commit/{wanted}").json() == {"uuid": wanted}
    info = node["node"].get_task(wanted).info()
    assert info.name == "cluster" and get(node, f"/task/{wanted}/info").json()["dateCreated"] == 1700000000000
    images = node["data"] / wanted / "images"
    wait_for(lambda: images.is_dir() and len(list(images.iterdir())) == 3, what="the images moved")
    assert sorted(p.name for p in images.iterdir()) == ["a.jpg", "a_.jpg", "b.jpg"]
    assert (images / "a_.jpg").read_bytes() == b"3" * 10


def test_single_request_creation_pyodms_fallback(node: dict[str, Any], photos: list[str]) -> None:
    task = node["node"].create_task_fallback(photos, {"dsm": True}, name="single")
    assert re.fullmatch(UUID_PATTERN, task.uuid)
    info = task.info()
    assert info.name == "single" and info.images_count == len(photos)
    assert post(node, "/task/new", files={"name": (None, "x")}).json()["error"].startswith("Need at least 1")


def test_cloudodm_shapes(node: dict[str, Any]) -> None:
    """An init without a name still gives a name; commit as an empty urlencoded POST; integer fields."""
    uuid = init(node, skipPostProcessing="true", options='[{"name":"dsm","value":"true"}]')["uuid"]
    assert upload(node, uuid, ("a.jpg", b"x" * 10)) == {"success": True}
    commit = requests.post(
        f"{node['url']}/task/new/commit/{uuid}?token={TOKEN}", data="", timeout=10,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ).json()  # fmt: skip
    assert commit == {"uuid": uuid}
    raw = get(node, f"/task/{uuid}/info").json()
    assert isinstance(raw["name"], str) and raw["name"] and type(raw["processingTime"]) is int
    assert type(raw["status"]["code"]) is int
    assert {o["name"]: o["value"] for o in raw["options"]} == {
        "dsm": True,
        "max-concurrency": raw["options"][-1]["value"],
    }
    assert all(isinstance(o["value"], str) for o in get(node, "/options").json())
    assert "cog" not in {o["name"] for o in raw["options"]}  # skipPostProcessing: nothing added


# Security and limits


@pytest.mark.parametrize(
    "name", ["../evil.jpg", "../../evil.jpg", "/tmp/evil.jpg", "a/b.jpg", "..", "sub\\evil.jpg", "a\0.jpg"]
)
def test_upload_names_that_would_leave_the_task_folder_are_refused(node: dict[str, Any], name: str) -> None:
    uuid = init(node)["uuid"]
    reply = upload(node, uuid, ("ok.jpg", b"x" * 10), (name, b"evil"))
    assert reply["noRetry"] is True and "Invalid file name" in reply["error"]
    assert leftovers(node["data"]) == [f"tmp/{uuid}/body.json"]  # not even the good file of that request
    assert not list(node["data"].parent.rglob("evil.jpg")) and not Path("/tmp/evil.jpg").exists()
    assert "error" in upload(node, "..%2F..%2Fx", ("a.jpg", b"x"))  # a path, not a uuid: no route
    windows = upload(node, uuid, ("C:\\Users\\me\\x.jpg", b"x"))  # the parser keeps its base name
    assert windows == {"success": True} and (node["data"] / "tmp" / uuid / "x.jpg").is_file()
    (node["data"] / "tmp" / uuid / "x.jpg").unlink()
    assert upload(node, "not-a-uuid", ("a.jpg", b"x")) == {"error": "Invalid uuid (not found)"}
    assert leftovers(node["data"]) == [f"tmp/{uuid}/body.json"]


def _zip(members: dict[str, bytes], link: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if link:
            info = zipfile.ZipInfo(link)
            info.external_attr = 0o120777 << 16  # a symbolic link
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


@pytest.mark.parametrize(
    "seed",
    [
        {"../outside.txt": b"x"},
        {"/abs/outside.txt": b"x"},
        {"opensfm/../../outside.txt": b"x"},
        "link",
        {".odmflow/results/outside.txt": b"x"},
        {".node/task.json": b"{}"},
    ],
    ids=["dotdot", "absolute", "nested-dotdot", "symlink", "odmflow-state", "node-state"],
)
def test_seed_zip_with_members_outside_the_task_is_refused(node: dict[str, Any], seed: Any) -> None:
    data = _zip({"opensfm/ok.json": b"{}"}, link="opensfm/link") if seed == "link" else _zip(seed)
    uuid = init(node)["uuid"]
    assert upload(node, uuid, ("a.jpg", b"x" * 10), ("seed.zip", data)) == {"success": True}
    reply = post(node, f"/task/new/commit/{uuid}").json()
    assert "seed.zip" in reply["error"] and "refused" in reply["error"]
    assert leftovers(node["data"]) == [] and not list(node["data"].parent.rglob("outside.txt"))
    assert node["fake"].runs == {}


def test_oversized_uploads_are_refused_and_deleted(node: dict[str, Any]) -> None:
    uuid = init(node)["uuid"]  # the node's limit is 64 KiB per task
    too_big = upload(node, uuid, ("big.jpg", b"x" * 70_000))
    assert too_big["noRetry"] is True and "too large" in too_big["error"]
    assert leftovers(node["data"]) == [f"tmp/{uuid}/body.json"]
    assert upload(node, uuid, ("a.jpg", b"x" * 40_000)) == {"success": True}
    second = upload(node, uuid, ("b.jpg", b"x" * 30_000))  # the limit counts the task's files together
    assert "too large" in second["error"] and leftovers(node["data"]) == [
        f"tmp/{uuid}/a.jpg",
        f"tmp/{uuid}/body.json",
    ]
    streamed = requests.post(  # no Content-Length: the limit is counted as the bytes arrive
        f"{node['url']}/task/new/upload/{uuid}?token={TOKEN}",
        data=_chunks(uuid),
        headers={"Content-Type": "multipart/form-data; boundary=XyZ"},
        timeout=10,
    ).json()
    assert "too large" in streamed["error"] and leftovers(node["data"]) == [
        f"tmp/{uuid}/a.jpg",
        f"tmp/{uuid}/body.json",
    ]
    single = post(node, "/task/new", files=[("images", ("big.jpg", b"x" * 70_000))]).json()
    assert "too large" in single["error"] and leftovers(node["data"]) == [
        f"tmp/{uuid}/a.jpg",
        f"tmp/{uuid}/body.json",
    ]


def _chunks(uuid: str) -> Iterator[bytes]:
    yield b'--XyZ\r\nContent-Disposition: form-data; name="images"; filename="c.jpg"\r\n\r\n'
    for _ in range(10):
        yield b"x" * 8192
    yield b"\r\n--XyZ--\r\n"


def test_a_node_beyond_loopback_needs_a_token(tmp_path: Path) -> None:
    from odmflow.node.config import NodeSettings
    from tests.conftest import REPO, run_cli

    with pytest.raises(ValueError, match="token"):
        NodeSettings(data_dir=tmp_path, api_url="http://127.0.0.1:1/api", host="0.0.0.0")
    NodeSettings(data_dir=tmp_path, api_url="http://127.0.0.1:1/api", host="0.0.0.0", token="x")
    env = {
        "PATH": "/usr/bin:/bin",
        "PREFECT_API_URL": "http://127.0.0.1:1/api",
        "PYTHONPATH": str(REPO),
    }
    done = run_cli(["node", "--host", "0.0.0.0", "--port", "1", "--data", str(tmp_path)], env, timeout=60)
    assert done.returncode == 2 and "--token" in done.stderr and not any(tmp_path.iterdir())


def test_node_on_a_busy_port_says_so_before_announcing_itself(tmp_path: Path) -> None:
    import socket

    from tests.conftest import REPO, run_cli

    env = {"PATH": "/usr/bin:/bin", "PREFECT_API_URL": "http://127.0.0.1:1/api", "PYTHONPATH": str(REPO)}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_cli(["node", "--port", str(port), "--data", str(tmp_path / "d")], env, timeout=60)
    assert done.returncode == 2 and f"port {port} on 127.0.0.1 is already in use" in done.stderr
    assert "another --port" in done.stderr and "NodeODM API at" not in done.stderr


def test_server_up_makes_a_token_only_beyond_loopback() -> None:
    from odmflow.server_node import node_token

    assert node_token(None, "127.0.0.1") == "" and node_token("given", "0.0.0.0") == "given"
    made = node_token(None, "0.0.0.0")
    assert len(made) >= 24 and made != node_token(None, "0.0.0.0")


def test_gcp_geo_groups_and_seed_are_routed_as_nodeodm_does(
    node: dict[str, Any], photos: list[str], tmp_path: Path
) -> None:
    extra = {
        "gcp_list.txt": "EPSG:32615\n1 2 3 10 20 IMG_0000.JPG\n",
        "geo.txt": "EPSG:4326\nIMG_0000.JPG -91 46 200\n",
        "image_groups.txt": "IMG_0000.JPG A\n",
        "seed.zip": _zip({"opensfm/camera_models.json": b"{}", "opensfm/exif/IMG_0000.JPG.exif": b"{}"}),
    }
    files = list(photos)
    for name, content in extra.items():
        (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
        files.append(str(tmp_path / name))
    task = node["node"].create_task(files, {"dsm": True})
    project = node["data"] / task.uuid
    wait_for(lambda: node["fake"].runs, what="the flow run")
    assert sorted(p.name for p in (project / "images").iterdir()) == [Path(p).name for p in photos]
    assert (project / "gcp_list.txt").read_text() == extra["gcp_list.txt"]
    assert (project / "geo.txt").read_text() == extra["geo.txt"]
    assert (project / "image_groups.txt").is_file() and not (project / "seed.zip").exists()
    assert (project / "opensfm" / "camera_models.json").read_bytes() == b"{}"
    assert task.info().images_count == len(photos)
    assert any("gcp_list.txt" in line for line in task.output())


def test_webhook_is_retried_until_it_answers_200() -> None:
    import asyncio

    from odmflow.node.webhook import post_with_retries

    with webhook_receiver(fail_first=2) as (hook, received):
        assert asyncio.run(post_with_retries(hook, {"uuid": "u"}, step_s=0.01)) is True
    assert received == [{"uuid": "u"}]
    with webhook_receiver(fail_first=99) as (hook, received):
        assert asyncio.run(post_with_retries(hook, {"uuid": "u"}, step_s=0.01)) is False


# The slow layer: a real node (`odmflow server up`) processes the small synthetic survey. One task is
# processed and shared by the tests below (then restarted by the last of them that uses it).

CHEAP = {  # orchestration is checked here, not accuracy
    "fast-orthophoto": True,
    "dsm": True,
    "feature-quality": "lowest",
    "mesh-size": 20000,
    "mesh-octree-depth": 9,
    "orthophoto-resolution": 20,
    "dem-resolution": 20,
}
PROCESS_TIMEOUT_S = 900
POLLERS, LOAD_S = 10, 15.0


def _real_node(server: dict[str, str]) -> Node:
    return Node.from_url(f"{server['url']}/?token={server['token']}")


def _load(server: dict[str, str], uuid: str) -> dict[str, list[float]]:
    """10 pollers for LOAD_S seconds: half on /info, half on the task's info (with its output, as WebODM)."""

    def poll(i: int) -> tuple[str, list[float]]:
        path = "/info" if i % 2 == 0 else f"/task/{uuid}/info"
        params = {"token": server["token"], **({} if i % 2 == 0 else {"with_output": "0"})}
        seconds: list[float] = []
        end = time.monotonic() + LOAD_S
        with requests.Session() as session:
            while time.monotonic() < end:
                start = time.perf_counter()
                reply = session.get(f"{server['url']}{path}", params=params, timeout=30)
                seconds.append(time.perf_counter() - start)
                assert reply.status_code == 200 and "error" not in reply.json()
                time.sleep(0.1)
        return path, seconds

    with ThreadPoolExecutor(POLLERS) as pool:
        results = list(pool.map(poll, range(POLLERS)))
    return {
        "info": [s for path, secs in results if path == "/info" for s in secs],
        "task_info": [s for path, secs in results if path != "/info" for s in secs],
    }


def _watch(task: Any, server: dict[str, str]) -> dict[str, Any]:
    """Poll the task every second until it ends; the load test runs once the flow run is running."""
    samples: list[tuple[float, int, float, int]] = []
    seen: dict[str, Any] = {}
    deadline = time.monotonic() + PROCESS_TIMEOUT_S
    while time.monotonic() < deadline:
        info = task.info()
        samples.append((time.monotonic(), info.status.value, info.progress, info.processing_time))
        if info.status.value == 20 and info.processing_time >= 0 and "load" not in seen:
            seen["load"] = _load(server, task.uuid)
        if "running_output" not in seen and info.status.value == 20 and len(task.output()) >= 8:
            full = task.output()
            seen["running_output"] = (full, task.output(5), task.output(-3))
        if info.status.value in (30, 40, 50):
            break
        time.sleep(1)
    return {"samples": samples, **seen}


@pytest.fixture(scope="module")
def shared_task(
    nodeodm_server: dict[str, str], small_survey: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """The survey processed through the node with pyodm: what the tests below check."""
    n = _real_node(nodeodm_server)
    photos = sorted(str(p) for p in small_survey.images_dir.iterdir())
    progress: list[float] = []
    with webhook_receiver() as (hook, received):
        start = time.perf_counter()
        task = n.create_task(
            photos,
            {**CHEAP, "not-an-option": 1},
            name="conf",
            webhook=hook,
            progress_callback=progress.append,
        )
        created_s = time.perf_counter() - start
        first = get({"url": nodeodm_server["url"]}, f"/task/{task.uuid}/info").json()
        watched = _watch(task, nodeodm_server)
        wait_for(lambda: received, 60, "the webhook")
        yield {
            "node": n, "task": task, "photos": photos, "progress_cb": progress, "created_s": created_s,
            "first": first, "received": received, "tmp": tmp_path_factory.mktemp("shared-task"), **watched,
        }  # fmt: skip


@pytest.mark.slow
def test_real_creation_answers_at_once_and_the_task_runs(shared_task: dict[str, Any]) -> None:
    task, first = shared_task["task"], shared_task["first"]
    assert re.fullmatch(UUID_PATTERN, task.uuid) and shared_task["progress_cb"][-1] == 100.0
    assert shared_task["created_s"] < 30
    assert first["status"]["code"] == 20 and first["name"] == "conf"  # RUNNING at once (ODM's LRE reads it)
    assert first["imagesCount"] == len(shared_task["photos"])
    options = {o["name"]: o["value"] for o in first["options"]}
    assert "not-an-option" not in options and options["fast-orthophoto"] is True
    assert options["orthophoto-resolution"] == 20 and options["feature-quality"] == "lowest"


@pytest.mark.slow
def test_real_status_progress_and_processing_time(shared_task: dict[str, Any]) -> None:
    samples = shared_task["samples"]
    codes = [s[1] for s in samples]
    assert codes[-1] == 40, f"ended {codes[-1]}: {shared_task['task'].info().last_error}"
    assert set(codes[:-1]) <= {10, 20} and 20 in codes
    progress = [s[2] for s in samples]
    assert progress == sorted(progress) and progress[-1] == 100 and max(progress[:-1]) < 100
    running = [s[3] for s in samples if s[1] == 20 and s[3] >= 0]
    assert running and running == sorted(running) and running[-1] > running[0]
    done = shared_task["task"].info().processing_time
    time.sleep(1.5)
    assert shared_task["task"].info().processing_time == done >= running[-1]


@pytest.mark.slow
def test_real_output_offsets(shared_task: dict[str, Any]) -> None:
    task = shared_task["task"]
    full, from5, last3 = shared_task["running_output"]  # read while the run was writing its log
    assert from5[: len(full) - 5] == full[5:] and len(last3) == 3
    final = task.output()
    assert final[: len(full)] == full  # lines are only ever appended
    assert task.output(5) == final[5:] and task.output(-3) == final[-3:] and task.output(10**6) == []
    assert task.info(with_output=7).output == final[7:]
    assert all(isinstance(line, str) and "\n" not in line for line in final)
    assert any("opensfm" in line for line in final)


@pytest.mark.slow
def test_real_all_zip_holds_the_products_in_nodeodms_layout(shared_task: dict[str, Any]) -> None:
    import rasterio

    task, tmp = shared_task["task"], shared_task["tmp"]
    path = Path(task.download_zip(str(tmp / "zip")))
    zf = zipfile.ZipFile(path)
    names = set(zf.namelist())
    for wanted in (
        "odm_orthophoto/odm_orthophoto.tif", "odm_dem/dsm.tif", "odm_report/shots.geojson",
        "odm_georeferencing/odm_georeferenced_model.laz", "cameras.json", "images.json", "task_output.txt",
    ):  # fmt: skip
        assert wanted in names, wanted
    assert not any(n.startswith(("/", "..", "images/", ".node/", ".odmflow/")) for n in names)
    shots = json.loads(zf.read("odm_report/shots.geojson"))["features"]
    assert sorted(f["properties"]["filename"] for f in shots) == sorted(
        Path(p).name for p in shared_task["photos"]
    )
    log = zf.read("task_output.txt").decode().splitlines()
    assert log == task.output()[: len(log)] and len(log) > 10  # the whole console
    task.download_assets(str(tmp / "assets"))
    with rasterio.open(tmp / "assets" / "odm_orthophoto" / "odm_orthophoto.tif") as ortho:
        assert ortho.crs.to_epsg() and ortho.count == 4
        assert ortho.colorinterp[-1] == rasterio.enums.ColorInterp.alpha
    with rasterio.open(tmp / "assets" / "odm_dem" / "dsm.tif") as dsm:
        assert dsm.crs.to_epsg()
    url = f"{shared_task['node'].url(f'/task/{task.uuid}/download/all.zip')}"
    ranged = requests.get(url, headers={"Range": "bytes=0-99"}, timeout=30)
    assert ranged.status_code == 206 and ranged.content == path.read_bytes()[:100]


@pytest.mark.slow
def test_real_webhook_called_once(shared_task: dict[str, Any]) -> None:
    time.sleep(2)  # a second call would have come by now
    received = shared_task["received"]
    assert len(received) == 1 and received[0]["uuid"] == shared_task["task"].uuid
    assert received[0]["status"]["code"] == 40 and len(received[0]["images"]) == len(shared_task["photos"])


def _flow_runs(server: dict[str, str], uuid: str) -> list[Any]:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with SyncPrefectClient(server["api_url"]) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[uuid])),
            sort=FlowRunSort.START_TIME_DESC,
        )


@pytest.mark.slow
def test_real_task_is_an_odm_process_run_with_its_stages(
    shared_task: dict[str, Any], nodeodm_server: dict[str, str]
) -> None:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import FlowRunFilter

    runs = _flow_runs(nodeodm_server, shared_task["task"].uuid)
    assert len(runs) == 1 and runs[0].state.is_completed() and "nodeodm" in runs[0].tags
    with SyncPrefectClient(nodeodm_server["api_url"]) as client:
        assert client.read_deployment(runs[0].deployment_id).name == "odm-process"
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [runs[0].id]}))
    stages = {t.name.rsplit("-", 1)[0] for t in tasks}
    assert {"dataset", "opensfm", "odm_dem", "odm_orthophoto", "odm_report"} <= stages


@pytest.mark.slow
def test_real_load_latency_under_ten_pollers(shared_task: dict[str, Any]) -> None:
    load = shared_task["load"]
    for name, seconds in load.items():
        median, worst = statistics.median(seconds), max(seconds)
        figures = f"median {1000 * median:.1f} ms, max {1000 * worst:.1f} ms"
        print(f"{name}: {len(seconds)} answers under {POLLERS} pollers, {figures}")
        assert worst < 5.0, f"{name} took {worst:.2f} s: WebODM allows /info 5 s"
        assert median < 1.0


def _process_group(run: Any) -> int:
    """The process group of a flow run's process (the flow and its local Dask workers)."""
    return os.getpgid(int(str(run.infrastructure_pid).rpartition(":")[2]))


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.slow
def test_real_cancel_stops_the_run_and_remove_deletes_the_task(
    nodeodm_server: dict[str, str], small_survey: Any, tmp_path: Path
) -> None:
    n = _real_node(nodeodm_server)
    task = n.create_task(sorted(str(p) for p in small_survey.images_dir.iterdir()), CHEAP, name="to cancel")
    wait_for(lambda: task.info().processing_time >= 0 and len(task.output()) >= 3, 300, "the run to start")
    run = wait_for(
        lambda: [r for r in _flow_runs(nodeodm_server, task.uuid) if r.infrastructure_pid], 60, "pid"
    )
    pgid = _process_group(run[0])
    assert not _group_gone(pgid)
    assert task.cancel() is True
    wait_for(lambda: task.info().status == TaskStatus.CANCELED, 10, "status 50")
    wait_for(
        lambda: _flow_runs(nodeodm_server, task.uuid)[0].state.is_cancelled(), 120, "Prefect's Cancelled"
    )
    wait_for(lambda: _group_gone(pgid), 60, "the run's processes (flow, Dask workers) to end")
    with pytest.raises(TaskFailedError):
        task.wait_for_completion(interval=1)
    with pytest.raises(NodeResponseError):
        task.download_zip(str(tmp_path))
    assert task.cancel() is True
    project = Path(nodeodm_server["home"]) / "node" / task.uuid
    assert (project / "images").is_dir()
    assert task.remove() is True
    assert not project.exists() and {"uuid": task.uuid} not in n.get("/task/list")
    with pytest.raises(NodeResponseError):
        task.info()


@pytest.mark.slow
def test_real_failing_task_reports_its_error(nodeodm_server: dict[str, str], tmp_path: Path) -> None:
    n = _real_node(nodeodm_server)
    for i in range(2):
        (tmp_path / f"broken_{i}.JPG").write_bytes(b"not a photo" * 100)
    task = n.create_task([str(p) for p in sorted(tmp_path.glob("*.JPG"))], {"feature-quality": "lowest"})
    with pytest.raises(TaskFailedError):
        task.wait_for_completion(interval=1)
    info = task.info()
    assert info.status == TaskStatus.FAILED and "broken_0.JPG" in info.last_error and task.output()
    print(f"failed task's error: {info.last_error}")


@pytest.mark.slow
def test_real_restart_reruns_from_odm_dem_on_the_checkpoints(
    shared_task: dict[str, Any], nodeodm_server: dict[str, str]
) -> None:
    """Last of the shared task's tests: restarted with --dtm and rerun-from odm_dem."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    task = shared_task["task"]
    before = task.info()
    assert task.restart({**CHEAP, "dtm": True, "rerun-from": "odm_dem"}) is True
    info = task.info()
    assert info.status in (TaskStatus.QUEUED, TaskStatus.RUNNING) and info.progress < 5
    assert len(task.output()) < 5 and info.date_created > before.date_created
    task.wait_for_completion(interval=1)
    assert {o["name"]: o["value"] for o in task.info().options}["dtm"] is True
    names = zipfile.ZipFile(task.download_zip(str(shared_task["tmp"] / "restarted"))).namelist()
    assert "odm_dem/dtm.tif" in names and "odm_dem/dsm.tif" in names
    runs = _flow_runs(nodeodm_server, task.uuid)
    assert len(runs) == 2 and runs[0].parameters["project"] == runs[1].parameters["project"]
    with SyncPrefectClient(nodeodm_server["api_url"]) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[runs[0].id]))
        )
    table = next(a.data for a in arts if a.key == "odm-stage-timings")
    rows = {r["stage"]: r["state"] for r in (json.loads(table) if isinstance(table, str) else table)}
    seen = f"stages of run {runs[0].id} ({[(r.id, r.start_time, r.created) for r in runs]}): {rows}"
    assert all(rows[s] == "checkpoint" for s in ("dataset", "opensfm", "odm_georeferencing")), seen
    assert rows["odm_dem"] == rows["odm_orthophoto"] == "ran", seen


# More of NodeODM's behaviour, fast


def test_outputs_replace_the_zip_list_and_skip_post_processing(
    node: dict[str, Any], photos: list[str]
) -> None:
    """ODM's split-merge client (`--sm-cluster`): only the asked paths come back, as given."""
    fake, n = node["fake"], node["node"]
    outputs = ["opensfm/reconstruction.json", "cameras.json", "../../etc/passwd", "missing/file"]
    task = n.create_task(photos, {"end-with": "opensfm"}, skip_post_processing=True, outputs=outputs)
    info = task.info()
    assert info.status == TaskStatus.RUNNING  # RUNNING straight after the commit
    assert {o["name"] for o in info.options} == {"end-with", "max-concurrency"}  # no cog, gltf
    run = wait_for(lambda: fake.runs and run_uuid(fake, task.uuid), what="the flow run")
    make_outputs(Path(fake.params[run]["project"]))
    fake.set(run, StateType.RUNNING)
    fake.set(run, StateType.COMPLETED)
    task.wait_for_completion(interval=0.2)
    names = sorted(zipfile.ZipFile(task.download_zip(str(Path(photos[0]).parent / "z"))).namelist())
    assert names == ["cameras.json", "opensfm/reconstruction.json"]


def test_uploads_never_committed_are_deleted_after_two_days(tmp_path: Path) -> None:
    from odmflow.node.store import TaskStore

    store = TaskStore(tmp_path)
    old, new = tmp_path / "tmp" / "old", tmp_path / "tmp" / "new"
    for folder in (old, new):
        folder.mkdir()
        (folder / "a.jpg").write_bytes(b"x")
    for path in (old, old / "a.jpg"):
        os.utime(path, (time.time() - 3 * 86400, time.time() - 3 * 86400))
    assert store.drop_stale_uploads(2 * 86400) == ["old"] and not old.exists() and new.exists()


def test_tasks_survive_a_node_restart(tmp_path: Path, photos: list[str]) -> None:
    fake = FakePrefect()
    settings = settings_for(tmp_path / "data")
    with NodeServer(settings, fake):
        n = Node("127.0.0.1", settings.port, TOKEN)
        task = n.create_task(photos, {"dsm": True}, name="kept")
        run = wait_for(lambda: fake.runs and run_uuid(fake, task.uuid), what="the flow run")
        fake.set(run, StateType.RUNNING)
        fake.log(run, "one", "two")
        make_outputs(Path(fake.params[run]["project"]))
        fake.set(run, StateType.COMPLETED)
        task.wait_for_completion(interval=0.2)
        before, output = task.info(), task.output()
    with NodeServer(settings_for(tmp_path / "data"), fake) as again:
        n = Node("127.0.0.1", again.settings.port, TOKEN)
        task = n.get_task(task.uuid)
        after = task.info()
        assert (after.name, after.status, after.progress, after.options) == (
            before.name, before.status, before.progress, before.options,
        )  # fmt: skip
        assert task.output() == output and zipfile.ZipFile(task.download_zip(str(tmp_path / "z"))).namelist()


def test_cancel_before_the_run_exists_and_the_image_limit(tmp_path: Path, photos: list[str]) -> None:
    fake = FakePrefect()
    settings = settings_for(tmp_path / "data", max_images=3)
    with NodeServer(settings, fake):
        n = Node("127.0.0.1", settings.port, TOKEN)
        assert n.info().max_images == 3
        task = n.create_task(photos, {})  # 4 photos: refused by the background initialisation
        with pytest.raises(TaskFailedError):
            task.wait_for_completion(interval=0.2)
        assert task.info().last_error == "4 images uploaded, but this node can only process up to 3."
        single = post(
            {"url": settings.url}, "/task/new", files=[("images", (Path(p).name, b"x")) for p in photos]
        ).json()
        assert single["error"] == "4 images uploaded, but this node can only process up to 3."
        task = n.create_task(photos[:2], {})
        assert task.cancel() is True and status(task) == 50  # cancelled while initialising
        time.sleep(1.0)  # the initialisation has ended by now
        runs = [run for run, p in fake.params.items() if p["project"].endswith(task.uuid)]
        assert all(run in fake.cancelled for run in runs)  # a run created meanwhile was cancelled
        assert status(task) == 50 and task.info().processing_time == -1


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("1", True), (False, False), ("0", False), ("false", False)],
)
def test_boolean_options_convert_as_nodeodm_converts(value: Any, expected: bool) -> None:
    from odmflow.node.options import parse_client_options

    got = parse_client_options([{"name": "dsm", "value": value}], max_concurrency=4)
    assert got.values == [{"name": "dsm", "value": expected}, {"name": "max-concurrency", "value": 4}]
    assert got.pipeline["odm_dem"] == ({"dsm": expected})


def test_numbers_convert_and_max_concurrency_is_capped() -> None:
    from odmflow.node.options import OptionsError, parse_client_options

    got = parse_client_options(
        '[{"name":"mesh-size","value":"50000"},{"name":"max-concurrency","value":64},'
        '{"name":"crop","value":"0.5"},{"name":"rerun-from","value":"odm_dem"}]',
        max_concurrency=2,
    )
    values = {o["name"]: o["value"] for o in got.values}
    assert values == {"mesh-size": 50000, "crop": 0.5, "rerun-from": "odm_dem", "max-concurrency": 2}
    assert got.pipeline["rerun_from"] == "odm_dem" and got.pipeline["max_concurrency"] == 2
    with pytest.raises(OptionsError) as bad:
        parse_client_options(
            [{"name": "mesh-octree-depth", "value": 99}, {"name": "pc-quality", "value": "x"}], 2
        )
    assert {e["name"] for e in bad.value.errors} == {"mesh-octree-depth", "pc-quality"}
    errors = {e["name"]: e["error"] for e in json.loads(str(bad.value))}
    assert errors["mesh-octree-depth"].startswith("Invalid value 99 (out of range")
    assert errors["pc-quality"] == "Invalid value x (not in enum)"


# Cancel and remove while the run is being submitted (Pending): Prefect lets it leave Cancelled


@contextmanager
def _pending_task(tmp_path: Path, photos: list[str]) -> Iterator[tuple[NodeServer, FakePrefect, Any, str]]:
    """A node (runs settle after 3 s) with a task whose flow run its worker is submitting (Pending):
    (the node, its stand-in Prefect, the pyodm task, the run's id)."""
    fake = FakePrefect()
    with NodeServer(settings_for(tmp_path / "data", settle_s=3.0), fake) as server:
        task = Node("127.0.0.1", server.settings.port, TOKEN).create_task(photos, {})
        run = wait_for(lambda: fake.runs and run_uuid(fake, task.uuid), what="the flow run")
        fake.set(run, StateType.PENDING)
        wait_for(lambda: server.rt.store.get(task.uuid).phase == "run", what="the task's run")
        yield server, fake, task, run


def test_a_run_cancelled_while_pending_stays_cancelled_when_its_worker_starts_it(
    tmp_path: Path, photos: list[str]
) -> None:
    with _pending_task(tmp_path, photos) as (server, fake, task, run):
        assert task.cancel() is True and fake.runs[run].state.is_cancelled()
        fake.set(run, StateType.RUNNING)  # its worker starts it anyway: Prefect allows Cancelled -> Running
        wait_for(lambda: fake.cancelled.count(run) == 2, what="the run cancelled again")
        assert fake.runs[run].state.is_cancelled()
        info = task.info()
        assert info.status == TaskStatus.CANCELED and info.progress == 100  # NodeODM's 100 once ended
        wait_for(lambda: not server.rt.guards, what="the run to settle")  # settled: no longer watched
        assert status(task) == 50 and fake.cancelled.count(run) == 2


def test_remove_while_pending_deletes_what_the_run_wrote_after_the_removal(
    tmp_path: Path, photos: list[str]
) -> None:
    with _pending_task(tmp_path, photos) as (server, fake, task, run):
        project = Path(fake.params[run]["project"])
        assert task.remove() is True and not project.exists()
        late = project / ".odmflow" / "results" / "dataset"  # the run, started anyway, writes its results
        late.parent.mkdir(parents=True)
        late.write_bytes(b"x")
        fake.set(run, StateType.RUNNING)
        reply = post({"url": server.settings.url}, "/task/new/init", headers={"set-uuid": task.uuid}).json()
        assert reply == {"error": f"Invalid set-uuid: {task.uuid}"}  # the uuid stays taken meanwhile
        wait_for(lambda: fake.cancelled.count(run) == 2, what="the run cancelled again")
        wait_for(lambda: not project.exists(), what="the late files deleted once the run settled")
        assert not server.rt.guards and server.rt.store.get(task.uuid) is None


def test_orphan_task_folders_are_deleted_when_the_node_starts(tmp_path: Path, photos: list[str]) -> None:
    data = tmp_path / "data"
    fake = FakePrefect()
    with NodeServer(settings_for(data), fake) as server:
        kept = Node("127.0.0.1", server.settings.port, TOKEN).create_task(photos, {})
        wait_for(lambda: (data / kept.uuid / "images").is_dir(), what="the task's images")
    orphan = data / "0b8e3c7e-4b7a-4f43-9a3e-0c6b6c5b2a11"
    (orphan / ".odmflow" / "results").mkdir(parents=True)
    (orphan / ".odmflow" / "results" / "dataset").write_bytes(b"x")
    (data / "notes").mkdir()  # not a task folder: left alone
    with NodeServer(settings_for(data), fake) as server:
        assert not orphan.exists() and (data / "notes").is_dir()
        assert (data / kept.uuid / "images").is_dir() and server.rt.store.get(kept.uuid) is not None


def test_a_failed_tasks_error_shows_no_path_of_the_server(node: dict[str, Any], photos: list[str]) -> None:
    fake = node["fake"]
    task = node["node"].create_task(photos[:2])
    run = wait_for(lambda: fake.runs and run_uuid(fake, task.uuid), what="the flow run")
    project = fake.params[run]["project"]
    fake.set(run, StateType.RUNNING)
    message = f"OdmInputError: No images folder {project}/images (nor in {node['data']}/other)"
    fake.set(run, StateType.FAILED, message)
    with pytest.raises(TaskFailedError):
        task.wait_for_completion(interval=0.2)
    assert task.info().last_error == "OdmInputError: No images folder images (nor in <node data>/other)"


# Uploads cut short


def _open_files_under(folder: Path) -> list[str]:
    """Files under `folder` this process (the node runs in a thread of it) holds open."""
    found = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(folder)):
            found.append(target)
    return found


def test_an_upload_cut_before_its_closing_boundary_is_refused_deleted_and_closed(
    node: dict[str, Any],
) -> None:
    cut = (
        b'--XyZ\r\nContent-Disposition: form-data; name="images"; filename="cut.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n" + b"\xff\xd8\xff" + b"x" * 59_997
    )  # a part's header and 60000 bytes of a JPEG, then nothing: no closing boundary
    headers = {"Content-Type": "multipart/form-data; boundary=XyZ"}
    uuid = init(node)["uuid"]
    reply = post(node, f"/task/new/upload/{uuid}", data=cut, headers=headers).json()
    assert reply == {"error": "Unexpected end of form"}  # busboy's words; pyodm may send it again
    assert leftovers(node["data"]) == [f"tmp/{uuid}/body.json"] and not _open_files_under(node["data"])
    single = post(node, "/task/new", data=cut, headers=headers).json()
    assert single == {"error": "Unexpected end of form"}
    assert leftovers(node["data"]) == [f"tmp/{uuid}/body.json"] and not _open_files_under(node["data"])
    assert get(node, "/task/list").json() == [] and node["fake"].runs == {}


def test_seed_zip_size_limit_holds_whatever_the_case_of_its_name(node: dict[str, Any]) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("opensfm/big.bin", b"\0" * 300_000)  # the node's limit: 64 KiB x 4 unpacked
    assert len(buf.getvalue()) < 10_000
    uuid = init(node)["uuid"]
    assert upload(node, uuid, ("a.jpg", b"x" * 10), ("SEED.ZIP", buf.getvalue())) == {"success": True}
    reply = post(node, f"/task/new/commit/{uuid}").json()
    assert "seed.zip" in reply["error"] and "upload limit" in reply["error"]
    assert leftovers(node["data"]) == [] and node["fake"].runs == {}


# /options' domains agree with what the node accepts


def _nodeodm_accepts(domain: str, value: float) -> bool:
    """NodeODM's (and ClusterODM's) check of a number against a string domain (libs/odmInfo.js)."""
    if m := re.fullmatch(r"(float|integer): ([\-\+\.\d]+) <= x <= ([\-\+\.\d]+)", domain):
        return float(m[2]) <= value <= float(m[3])
    if m := re.fullmatch(r"(float|integer) (>=|>|<|<=) ([\-\+\.\d]+)", domain):
        n = float(m[3])
        return {">=": value >= n, ">": value > n, "<": value < n, "<=": value <= n}[m[2]]
    return True


@pytest.mark.parametrize("spec", [s for s in NODE_OPTIONS if s.bounds], ids=lambda s: s.name)
def test_option_domains_refuse_what_the_node_refuses(spec: Any) -> None:
    from pydantic import ValidationError

    from odm_core.option_specs import pipeline_options

    for op, bound in spec.bounds:
        if op in ("lt", "le") and "<" not in spec.node_domain:
            continue  # a float range with a strict bound shows that bound only; the node checks this one
        step = 1 if spec.kind == "int" else 0.001
        for value in (bound, bound - step if op in ("gt", "ge") else bound + step):
            value = int(value) if spec.kind == "int" else value
            try:
                pipeline_options({spec.name: value})
                node_ok = True
            except ValidationError:
                node_ok = False
            assert _nodeodm_accepts(spec.node_domain, value) == node_ok, (spec.node_domain, value)
