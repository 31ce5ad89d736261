"""`--sm-cluster`: submodels sent to a NodeODM-compatible node (odm_core.remote.cluster), against the real
node app served on 127.0.0.1 with a stand-in for its Prefect server (tests.nodeodm_support): the test
plays the node's worker, writing a submodel's products and manifests into the task's folder."""

from __future__ import annotations

import json
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prefect.client.schemas.objects import StateType
from pyodm import Node

from odm_core.artifacts import write_json, write_manifest
from odm_core.checkpoint import SUBMODEL_PRODUCTS
from odm_core.errors import OdmStageError
from odm_core.layout import ProjectTree
from odm_core.options import PipelineOptions
from odm_core.options_split import SplitOptions, submodel_options
from odm_core.remote.cluster import NodeSubmodel, connect, finished_on_node, run_on_node
from tests.nodeodm_support import FakePrefect, NodeServer, free_port, run_uuid, settings_for, wait_for

PRODUCTS = {  # a submodel's products, by stage (what the merge reads)
    "odm_georeferencing": ["odm_georeferencing/odm_georeferenced_model.laz"],
    "odm_dem": ["odm_dem/dsm.tif"],
    "odm_orthophoto": ["odm_orthophoto/odm_orthophoto.tif"],
}


@pytest.fixture
def fake() -> FakePrefect:
    return FakePrefect()


@pytest.fixture
def node_url(tmp_path: Path, fake: FakePrefect) -> Iterator[str]:
    settings = settings_for(tmp_path / "node-data", max_concurrency=3)
    with NodeServer(settings, fake):
        yield f"http://127.0.0.1:{settings.port}/?token=T"


@pytest.fixture
def submodel(tmp_path: Path) -> Path:
    """A submodel folder as the split stage writes it: photos, submodel_options.json, split_seed/."""
    tree = ProjectTree(tmp_path / "parent" / "submodels" / "submodel_0001")
    tree.images.mkdir(parents=True)
    for i in range(3):
        (tree.images / f"IMG_{i:04d}.JPG").write_bytes(b"\xff\xd8\xff" + bytes([i]) * 1000)
    tree.split_seed.mkdir()
    for name in ("cameras.bin", "images.bin", "points3D.bin"):
        (tree.split_seed / name).write_bytes(name.encode() * 10)
    values = submodel_options(PipelineOptions(max_concurrency=8))
    values["opensfm"]["model_seed"] = "ab" * 32
    write_json(tree.submodel_options_json, PipelineOptions.model_validate(values).model_dump(mode="json"))
    return tree.root


def _job(url: str, folder: Path, attempts: int = 1, start_timeout_s: float = 60.0) -> NodeSubmodel:
    return NodeSubmodel(connect(url), "submodel_0001", folder, attempts, start_timeout_s, threading.Event())


def _finish(fake: FakePrefect, run: str, broken: str | None = None) -> None:
    """What the node's worker does: the run's products and manifests, then Completed; `broken`: a
    product changed after its manifest was written."""
    root = Path(fake.params[run]["project"])
    for stage, rels in PRODUCTS.items():
        for rel in rels:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(f"{rel} of {root.name}".encode() * 50)
        write_manifest(ProjectTree(root).manifest(stage), stage, "fp", [root / r for r in rels], root)
    if broken:
        (root / broken).write_bytes(b"truncated")
    fake.set(run, StateType.RUNNING)
    fake.set(run, StateType.COMPLETED)


def _play_worker(fake: FakePrefect, outcomes: list[str]) -> threading.Thread:
    """In a thread, end each new flow run in turn as `outcomes` says: "ok", "fail" or a product to break."""

    def play() -> None:
        for n, outcome in enumerate(outcomes):
            run = wait_for(lambda n=n: len(fake.runs) > n and list(fake.runs)[n], 20, "the submodel's run")
            if outcome == "fail":
                fake.set(run, StateType.RUNNING)
                fake.set(run, StateType.FAILED, "odm_dem: no ground points")
            else:
                _finish(fake, run, None if outcome == "ok" else outcome)

    thread = threading.Thread(target=play, daemon=True)
    thread.start()
    return thread


def test_a_submodel_runs_on_the_node_with_its_seed_and_its_products_come_back(
    node_url: str, fake: FakePrefect, submodel: Path
) -> None:
    worker = _play_worker(fake, ["ok"])
    seen: list[float] = []
    assert run_on_node(_job(node_url, submodel), lambda name, f: seen.append(f)) is True
    worker.join()
    (run,) = fake.runs
    sent = json.loads(ProjectTree(submodel).submodel_options_json.read_text())
    assert fake.params[run]["options"] == {**sent, "max_concurrency": 3}  # the seed's, capped at the node's
    assert fake.params[run]["name"] == "submodel_0001"
    for stage, rels in PRODUCTS.items():
        assert ProjectTree(submodel).manifest(stage).is_file()
        for rel in rels:
            assert (submodel / rel).read_bytes().startswith(rel.encode())
    assert seen[-1] == 1.0
    assert Node.from_url(node_url).get("/task/list") == []  # removed from the node once here
    assert finished_on_node(submodel)
    assert run_on_node(_job(node_url, submodel), lambda *_: None) is True  # not sent again
    assert len(fake.runs) == 1
    ProjectTree(submodel).submodel_options_json.write_text(
        ProjectTree(submodel).submodel_options_json.read_text().replace('"ab', '"cd', 1)
    )
    assert not finished_on_node(submodel)  # another seed: the products are not this one's


def test_a_rerun_sends_a_submodel_again_whose_products_came_back(
    node_url: str, fake: FakePrefect, submodel: Path
) -> None:
    """--rerun-from a stage the submodels run (or --rerun-all) reaches them on the node too (`resend`)."""
    worker = _play_worker(fake, ["ok", "ok"])
    assert run_on_node(_job(node_url, submodel), lambda *_: None) is True
    assert finished_on_node(submodel)
    assert run_on_node(replace(_job(node_url, submodel), resend=True), lambda *_: None) is True
    worker.join()
    assert len(fake.runs) == 2 and finished_on_node(submodel)


def test_a_submodel_failing_on_the_node_is_tried_again_then_named(
    node_url: str, fake: FakePrefect, submodel: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("odm_core.remote.cluster.RETRY_WAIT_S", 0.0)
    _play_worker(fake, ["fail", "fail"])
    with pytest.raises(OdmStageError, match=r"submodel submodel_0001 failed 2 times on the node.*no ground"):
        run_on_node(_job(node_url, submodel, attempts=2), lambda *_: None)
    assert len(fake.runs) == 2
    assert not ProjectTree(submodel).manifest("odm_orthophoto").exists()


def test_a_product_that_comes_back_changed_is_not_taken(
    node_url: str, fake: FakePrefect, submodel: Path
) -> None:
    _play_worker(fake, ["odm_dem/dsm.tif"])
    with pytest.raises(OdmStageError, match=r"odm_dem/dsm.tif came back incomplete or changed"):
        run_on_node(_job(node_url, submodel), lambda *_: None)
    assert not any(ProjectTree(submodel).manifest(stage).exists() for stage in SUBMODEL_PRODUCTS)
    assert not (submodel / "odm_dem").exists()
    assert not finished_on_node(submodel)


def test_a_submodel_the_node_does_not_start_is_handed_back(tmp_path: Path, submodel: Path) -> None:
    fake = FakePrefect(pool_limit=1)
    with NodeServer(settings_for(tmp_path / "busy-node"), fake) as server:
        url = f"http://127.0.0.1:{server.settings.port}/?token=T"
        busy = Node.from_url(url).create_task([str(p) for p in (submodel / "images").iterdir()], {})
        fake.set(wait_for(lambda: fake.runs and run_uuid(fake, busy.uuid)), StateType.RUNNING)
        assert run_on_node(_job(url, submodel, start_timeout_s=1.0), lambda *_: None) is False
        sent = list(fake.runs)[1]
        assert sent in fake.cancelled  # removed from the node, so it does not run twice
        assert [t for t in Node.from_url(url).get("/task/list") if t["uuid"] != busy.uuid] == []


class _StockNode(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = json.dumps(
            {"version": "2.2.4", "engine": "odm", "engineVersion": "3.6.0", "taskQueueCount": 0}
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: Any) -> None:
        pass


def test_a_node_that_is_not_odmflow_or_not_there_is_refused_naming_the_option() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StockNode)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(
            OdmStageError, match=r"--sm-cluster http://127.0.0.1:\d+/: the node runs odm 3.6.0"
        ):
            connect(f"http://127.0.0.1:{server.server_port}/?token=secret")
    finally:
        server.shutdown()
    with pytest.raises(OdmStageError, match=r"--sm-cluster http://127.0.0.1:\d+/: the node does not answer"):
        connect(f"http://127.0.0.1:{free_port()}/?token=secret")
    with pytest.raises(ValueError, match="is not a node's URL"):
        SplitOptions(sm_cluster="127.0.0.1:3000")


def test_a_run_with_a_node_that_does_not_answer_stops_at_once(
    prefect_env: dict[str, str], tmp_path: Path
) -> None:
    """As ODM checks --sm-cluster as it starts: no stage runs (no opensfm before the error)."""
    from tests.conftest import run_cli

    (tmp_path / "p" / "images").mkdir(parents=True)
    url = f"http://127.0.0.1:{free_port()}/?token=secret"
    result = run_cli(["run", str(tmp_path / "p"), "--split", "2", "--sm-cluster", url], prefect_env)
    assert result.returncode != 0
    assert "--sm-cluster http://127.0.0.1" in result.stdout + result.stderr
    assert "the node does not answer" in result.stdout + result.stderr
    assert "secret" not in result.stdout + result.stderr
    assert not (tmp_path / "p" / "images.json").exists()  # the dataset stage never ran


def test_the_seed_carries_the_submodels_options_and_model(submodel: Path, tmp_path: Path) -> None:
    from odm_core.remote.cluster import seed_zip

    names = sorted(zipfile.ZipFile(seed_zip(ProjectTree(submodel), tmp_path)).namelist())
    assert names == [
        "split_seed/cameras.bin",
        "split_seed/images.bin",
        "split_seed/points3D.bin",
        "submodel_options.json",
    ]


def test_odmflow_run_sends_its_submodels_to_a_node(
    nodeodm_server: dict[str, str], small_survey: Any, prefect_env: dict[str, str], tmp_path: Path
) -> None:
    """`odmflow run --split 4 --sm-cluster URL`: both submodels run on the node (`odmflow server up`), their
    products come back and are merged here; the node keeps no task afterwards."""
    import shutil

    import rasterio

    from tests.conftest import run_cli

    project = tmp_path / "sent"
    shutil.copytree(small_survey.images_dir, project / "images")
    url = f"{nodeodm_server['url'].rstrip('/')}/?token={nodeodm_server['token']}"
    args = ["run", str(project), "--split", "4", "--split-overlap", "10", "--feature-quality", "lowest"]
    result = run_cli([*args, "--sm-cluster", url], prefect_env)
    assert result.returncode == 0, result.stdout + result.stderr
    names = [s["name"] for s in json.loads((project / "submodels" / "split.json").read_text())["submodels"]]
    assert len(names) == 2
    node = Node.from_url(url)
    for name in names:
        record = json.loads(ProjectTree(project / "submodels" / name).node_task_json.read_text())
        with pytest.raises(Exception, match="not found"):
            node.get_task(record["uuid"]).info()  # removed from the node after download
        assert finished_on_node(project / "submodels" / name)
    with rasterio.open(project / "odm_orthophoto" / "odm_orthophoto.tif") as ortho:
        alpha = ortho.read(ortho.count)
    assert (alpha > 0).mean() > 0.3
    shots = json.loads((project / "odm_report" / "shots.geojson").read_text())["features"]
    assert len(shots) == small_survey.n_photos
