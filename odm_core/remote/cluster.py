"""Submodels sent to a NodeODM-compatible node: ODM's `--sm-cluster` (ODM:opendm/remote.py,
LocalRemoteExecutor), with pyodm as the client.

Each submodel becomes one task on the node: its photos, and a seed.zip holding what the split stage wrote
for it (submodel_options.json, its share of the model in split_seed/), which an odmflow node runs with
instead of the client's options (odmflow.node.options.seeded_submodel_options), as ODM's seed markers make
its remote run a submodel. Only the files the merge reads come back (the task's `outputs`): the
SUBMODEL_PRODUCTS stages' folders and manifests. They are unpacked beside the submodel's folder, checked
against their manifests, and moved in, manifests last, so a half-downloaded product is never taken for a
finished one. A stock NodeODM would ignore the seed and run each submodel on its own, unaligned: such a
node is refused.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pyodm import Node
from pyodm.api import Task
from pyodm.exceptions import NodeConnectionError, NodeResponseError, OdmError
from pyodm.types import TaskInfo, TaskStatus

from odm_core.artifacts import changed_output, read_manifest, sha256_file, sha256_text, write_json
from odm_core.checkpoint import SUBMODEL_PRODUCTS
from odm_core.errors import OdmStageError
from odm_core.layout import ProjectTree

log = logging.getLogger(__name__)

ENGINE = "odmflow"
POLL_S = 3.0  # CloudODM's and the LRE's interval
RETRY_WAIT_S = 10.0  # times the attempt number, between tries (the LRE's retries x 10 s)
Progress = Callable[[str, float], None]  # (submodel, fraction done 0-1)


def connect(url: str) -> Node:
    """The node at `url` (http(s)://HOST:PORT/?token=T), checked: reachable, token accepted, and running
    odmflow. Raises OdmStageError naming --sm-cluster otherwise."""
    try:
        node = Node.from_url(url)
        info = node.info()
    except (OdmError, ValueError) as err:
        raise OdmStageError(
            f"--sm-cluster {_shown(url)}: the node does not answer ({_redacted(err)}); start it, or fix "
            "the URL (http://HOST:PORT/?token=TOKEN)"
        ) from None
    if info.engine != ENGINE:
        raise OdmStageError(
            f"--sm-cluster {_shown(url)}: the node runs {info.engine} {info.engine_version}, not odmflow; "
            "it would process each submodel on its own, unaligned with the others: give an odmflow node's "
            "URL (`odmflow server up`), or leave --sm-cluster out"
        )
    return node


def _shown(url: str) -> str:
    """The URL without its token."""
    return url.split("?", 1)[0]


def _redacted(err: Exception) -> str:
    """An error's text with any token in it hidden (requests quotes the URL it asked)."""
    return re.sub(r"token=[^&\s'\")]*", "token=...", str(err))


def product_paths() -> list[str]:
    """The task's `outputs`: the folders of the stages the merge reads and their manifests."""
    tree = ProjectTree(Path("."))
    return [*SUBMODEL_PRODUCTS, *(tree.manifest(stage).as_posix() for stage in SUBMODEL_PRODUCTS)]


def seed_zip(sub: ProjectTree, folder: Path) -> Path:
    """seed.zip in `folder`: the submodel's submodel_options.json and split_seed/, paths as in the
    project."""
    path = folder / "seed.zip"
    files = [sub.submodel_options_json, *sorted(p for p in sub.split_seed.rglob("*") if p.is_file())]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            zf.write(f, f.relative_to(sub.root).as_posix())
    return path


class Stopped(Exception):
    """The run gave up on the submodel (another one failed); its task is removed."""


@dataclass(frozen=True)
class NodeSubmodel:
    """One submodel to run on the node: `attempts` tries in all, each waiting at most `start_timeout_s`
    for the node to start it; `stop` ends it early; `resend`: sent even when its products from the node
    are here already (the run's --rerun-from or --rerun-all reaches the submodels)."""

    node: Node
    name: str
    folder: Path
    attempts: int
    start_timeout_s: float
    stop: threading.Event  # set: give up (another submodel failed), removing the task
    resend: bool = False


def seed_digest(sub: ProjectTree) -> str:
    """What a node is sent for the submodel: its options (which hold its model's sha256) and its
    photos' names and sizes."""
    photos = sorted(f"{p.name}:{p.stat().st_size}" for p in sub.images.iterdir() if p.is_file())
    return sha256_text(sha256_file(sub.submodel_options_json), *photos)


def finished_on_node(folder: Path, seed: str | None = None) -> bool:
    """Whether the products here came from a node run of this submodel's seed (`seed`: its seed_digest,
    computed when not given) and still hold the content their manifests record (then the submodel is
    not sent again)."""
    sub = ProjectTree(folder)
    seed = seed or seed_digest(sub)
    try:
        record = json.loads(sub.node_task_json.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or record.get("seed") != seed:
        return False
    try:
        return bool(_checked_manifests(sub, str(record.get("uuid"))))
    except OdmStageError:
        return False


def run_on_node(job: NodeSubmodel, on_progress: Progress) -> bool:
    """Run the submodel as a task of the node and bring back its products. False when the node did not
    start it within the start timeout (the task is removed: every slot of the node is taken, perhaps by
    this run itself; the caller runs it). Raises OdmStageError naming the submodel once it has failed
    `attempts` times (the node's message and last log lines in it)."""
    seed = seed_digest(ProjectTree(job.folder))
    if not job.resend and finished_on_node(job.folder, seed):
        log.info("submodel %s: its products from the node are here already", job.name)
        on_progress(job.name, 1.0)
        return True
    for attempt in range(1, job.attempts + 1):
        try:
            task = _send(job)
            try:
                if not _wait(task, job, on_progress):
                    return False
                fetch_products(task, job.folder)
                write_json(ProjectTree(job.folder).node_task_json, {"seed": seed, "uuid": task.uuid})
            finally:
                _remove(task)
            return True
        except (OdmError, OSError, OdmStageError) as err:
            reason = _redacted(err) or type(err).__name__
            if attempt == job.attempts:
                raise OdmStageError(
                    f"submodel {job.name} failed {attempt} times on the node (last: {reason}); fix the cause "
                    "and run the project again (finished submodels resume from their checkpoints)"
                ) from None
            log.warning("submodel %s: attempt %d on the node failed (%s)", job.name, attempt, reason)
            time.sleep(RETRY_WAIT_S * attempt)
    return True  # not reached: the last attempt returns or raises


def _send(job: NodeSubmodel) -> Task:
    sub = ProjectTree(job.folder)
    photos = sorted(str(p) for p in sub.images.iterdir() if p.is_file())
    with tempfile.TemporaryDirectory(prefix=".seed.", dir=job.folder) as tmp:
        seed = seed_zip(sub, Path(tmp))
        task = job.node.create_task(
            [*photos, str(seed)], {}, name=job.name, skip_post_processing=True, outputs=product_paths()
        )
    log.info("submodel %s: sent to the node as task %s (%d photos)", job.name, task.uuid, len(photos))
    return task


def _wait(task: Task, job: NodeSubmodel, on_progress: Progress) -> bool:
    """Poll the task until it completes (True) or has been queued past the start timeout (False);
    OdmStageError when it fails or is cancelled, with its error and last log lines."""
    queued_since = time.monotonic()
    while True:
        info = _info(task)
        if info.status == TaskStatus.COMPLETED:
            on_progress(job.name, 1.0)
            return True
        if info.status in (TaskStatus.FAILED, TaskStatus.CANCELED):
            tail = " | ".join(line.strip() for line in task.output(-5) if line.strip())
            error = info.last_error or "no message"
            raise OdmStageError(f"task {task.uuid} {info.status.name}: {error}; {tail}")
        if info.status == TaskStatus.QUEUED:
            if time.monotonic() - queued_since > job.start_timeout_s:
                log.warning("submodel %s: not started within %g s", job.name, job.start_timeout_s)
                return False
        else:
            queued_since = time.monotonic()
            on_progress(job.name, min(info.progress, 99.0) / 100.0)
        if job.stop.wait(POLL_S):
            raise Stopped(f"submodel {job.name}: stopped, another submodel failed")


def _info(task: Task, tries: int = 5) -> TaskInfo:
    """The task's info; a node that does not answer is asked again `tries` times, waiting 5 s more
    each time (pyodm's wait_for_completion), before NodeConnectionError."""
    for attempt in range(1, tries + 1):
        try:
            return task.info()
        except NodeConnectionError:
            if attempt == tries:
                raise
            time.sleep(5.0 * attempt)
    raise AssertionError("not reached")


def _remove(task: Task) -> None:
    """Remove the task from the node (its files too), as the LRE does after download; a node gone
    meanwhile is only logged."""
    try:
        task.remove()
    except (NodeConnectionError, NodeResponseError) as err:
        log.warning("task %s was not removed from the node: %s", task.uuid, err)


def fetch_products(task: Task, folder: Path) -> list[Path]:
    """Download the task's all.zip, check each product against its manifest, then move them into the
    submodel's `folder`, manifests last. Returns the files moved. Raises OdmStageError when a manifest is
    missing or a file differs from what its manifest records."""
    with tempfile.TemporaryDirectory(prefix=".products.", dir=folder) as tmp:
        archive = Path(task.download_zip(tmp))
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                if member.startswith("/") or ".." in Path(member).parts:
                    raise OdmStageError(f"task {task.uuid}: all.zip holds {member!r}, outside the project")
            zf.extractall(unpacked)
        archive.unlink()
        manifests = _checked_manifests(ProjectTree(unpacked), task.uuid)
        files = sorted(p for p in unpacked.rglob("*") if p.is_file() and p not in manifests)
        for stage in SUBMODEL_PRODUCTS:  # the products being replaced are no longer finished ones
            ProjectTree(folder).manifest(stage).unlink(missing_ok=True)
        moved = [_move(f, unpacked, folder) for f in [*files, *manifests]]
    return moved


def _checked_manifests(tree: ProjectTree, uuid: str) -> list[Path]:
    """The products' manifests in the unpacked zip, each of whose outputs is there with its recorded
    size and sha256."""
    found = []
    for stage in SUBMODEL_PRODUCTS:
        path = tree.manifest(stage)
        record = read_manifest(path)
        if record is None:
            if stage == "odm_georeferencing":  # every submodel makes its point cloud
                raise OdmStageError(f"task {uuid}: no {stage} manifest came back; the run did not finish")
            continue  # a stage the submodel's options skip
        changed = changed_output(record, tree.root)
        if changed is not None:
            raise OdmStageError(f"task {uuid}: {changed} came back incomplete or changed; run again")
        found.append(path)
    return found


def _move(f: Path, source: Path, folder: Path) -> Path:
    target = folder / f.relative_to(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(f, target)  # os.replace within one file system
    return target
