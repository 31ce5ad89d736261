"""A task's life: created (init or single request), committed, initialised in the background, restarted,
cancelled, removed. Each function returns NodeODM's reply for its endpoint."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from datetime import UTC, datetime
from typing import Any

from odmflow.node import guard
from odmflow.node.config import CANCELED, COMPLETED, FAILED, FINAL, RUNNING, UUID_RE
from odmflow.node.files import UploadError, check_seeds, route_inputs
from odmflow.node.monitor import Runtime, finished
from odmflow.node.options import OptionsError, parse_client_options, seeded_submodel_options
from odmflow.node.packing import safe_outputs
from odmflow.node.records import TaskRecord, now_ms

log = logging.getLogger("odmflow.node")
Reply = dict[str, Any]


def new_uuid_ok(rt: Runtime, set_uuid: str | None) -> str | None:
    """NodeODM's set-uuid check: a UUID (versions 1-7) not taken yet; None when it is refused."""
    if set_uuid is None:
        return None
    return set_uuid.lower() if UUID_RE.match(set_uuid) and not rt.store.exists(set_uuid.lower()) else None


def read_body(rt: Runtime, fields: dict[str, str]) -> Reply:
    """body.json of a new task from its form fields; OptionsError or ValueError when one is bad."""
    options = parse_client_options(fields.get("options", "[]"), rt.settings.max_concurrency)
    outputs: Any = []
    if fields.get("outputs"):
        try:
            outputs = json.loads(fields["outputs"])
        except ValueError:
            outputs = None
        if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
            raise ValueError("Invalid outputs parameter: give a JSON list of paths")
    webhook = fields.get("webhook") or None
    if webhook and not webhook.startswith(("http://", "https://")):
        raise ValueError(f"Invalid webhook {webhook!r}: give an http(s) URL")
    try:
        created = int(fields["dateCreated"]) if fields.get("dateCreated") else now_ms()
    except ValueError:
        created = now_ms()
    name = fields.get("name") or f"Task of {datetime.now(UTC).isoformat(timespec='seconds')}"
    return {
        "name": name,
        "options": options.values,
        "skipPostProcessing": fields.get("skipPostProcessing") == "true",
        "webhook": webhook,
        "outputs": safe_outputs(outputs),
        "dateCreated": created,
    }


def body_error(err: Exception) -> Reply:
    return {"error": str(err)}


def _uploaded(rt: Runtime, uuid: str) -> list[str]:
    tmp = rt.store.paths(uuid).tmp
    return [p.name for p in tmp.iterdir() if p.is_file() and p.name != "body.json"] if tmp.is_dir() else []


def commit(rt: Runtime, uuid: str, body: Reply) -> Reply:
    """Turn uploads into a task: checked now, initialised in the background; `{"uuid"}` at once."""
    paths = rt.store.paths(uuid)
    names = _uploaded(rt, uuid)
    if not names:
        return {"error": "Need at least 1 file."}  # the client may still upload, then commit
    try:
        check_seeds(paths.tmp, names, rt.settings.max_upload_bytes * 4)
        options = parse_client_options(
            body["options"], rt.settings.max_concurrency, post_processing=not body["skipPostProcessing"]
        )
        record = TaskRecord(
            uuid=uuid,
            name=str(body["name"]),
            date_created=int(body["dateCreated"]),
            options=options.values,
            webhook=body["webhook"],
            skip_post_processing=bool(body["skipPostProcessing"]),
            outputs=list(body["outputs"]),
            images_count=len(names),
        )
    except (UploadError, OptionsError, KeyError, TypeError, ValueError) as err:
        shutil.rmtree(paths.tmp, ignore_errors=True)  # a refused commit leaves nothing behind
        return {"error": str(err) if not isinstance(err, KeyError | TypeError) else "Malformed body.json"}
    paths.body.unlink(missing_ok=True)  # later uploads and commits of this uuid are refused
    rt.store.add(record)
    rt.spawn(initialise(rt, record))
    return {"uuid": uuid}


async def initialise(rt: Runtime, record: TaskRecord) -> None:
    """Move the uploads into the project, check them, and create the task's flow run."""
    paths = rt.store.paths(record.uuid)
    try:
        lines = await asyncio.to_thread(route_inputs, paths.tmp, paths.root)
        shutil.rmtree(paths.tmp, ignore_errors=True)
        count = sum(1 for p in paths.images.iterdir() if p.is_file())
        limit = rt.settings.max_images
        if limit is not None and count > limit:
            raise UploadError(f"{count} images uploaded, but this node can only process up to {limit}.")
        record.images_count = count
        if rt.store.get(record.uuid) is not record:  # removed meanwhile: its files go too
            rt.store.purge(record.uuid)
            return
        if record.canceled:
            return
        rt.store.append(record.uuid, [f"[INFO] odmflow node: {line}" for line in lines])
        await start_run(rt, record)
    except Exception as err:  # any failure makes the task FAILED, as NodeODM's background init does
        log.warning("task %s: initialisation failed: %s", record.uuid, err)
        shutil.rmtree(paths.tmp, ignore_errors=True)
        shutil.rmtree(paths.images, ignore_errors=True)
        if rt.store.get(record.uuid) is record:
            record.end(FAILED, rt.store.relative(record.uuid, str(err)) or type(err).__name__)
            finished(rt, record)
        elif not any(g.uuid == record.uuid for g in rt.guards.values()):
            rt.store.purge(record.uuid)  # removed meanwhile, and no run of it to wait for


async def start_run(rt: Runtime, record: TaskRecord) -> None:
    """Create the task's odm-process flow run on its project, with its options."""
    options = parse_client_options(record.options, rt.settings.max_concurrency)
    root = rt.store.paths(record.uuid).root
    pipeline = seeded_submodel_options(root, rt.settings.max_concurrency) or options.pipeline
    run_id = await rt.bridge.create_run(str(root), pipeline, record.uuid, record.name)
    record.flow_run_id = run_id
    removed = rt.store.get(record.uuid) is not record
    if record.canceled or removed:  # cancelled or removed meanwhile
        guard.watch(rt, run_id, record.uuid, purge=removed)
        await rt.bridge.cancel(run_id)
        return
    record.phase = "run"
    rt.store.save(record)
    ui = rt.settings.api_url.removesuffix("/api")
    rt.store.append(record.uuid, [f"[INFO] odmflow node: Prefect flow run {ui}/runs/flow-run/{run_id}"])


def _not_found(uuid: str) -> Reply:
    return {"success": False, "error": f"{uuid} not found"}


async def restart(rt: Runtime, uuid: str, raw_options: str | None) -> Reply:
    """Run the same project again with these options (or the task's own); checkpoints are reused."""
    record = rt.store.get(uuid)
    if record is None:
        return _not_found(uuid)
    paths = rt.store.paths(uuid)
    if record.phase != "done" or record.status not in FINAL or not paths.images.is_dir():
        return {"success": False, "error": "Task cannot be restarted"}
    if raw_options:
        try:
            post = not record.skip_post_processing
            record.options = parse_client_options(raw_options, rt.settings.max_concurrency, post).values
        except OptionsError as err:
            return {"error": str(err)}
    record.date_created, record.progress, record.started_at, record.ended_at = now_ms(), 0.0, None, None
    record.phase, record.status, record.error_message = "init", RUNNING, None
    record.canceled = record.webhook_due = False
    paths.zip.unlink(missing_ok=True)
    (paths.root / "task_output.txt").unlink(missing_ok=True)
    rt.store.clear_console(uuid)
    rt.log_since.pop(uuid, None)
    try:
        await start_run(rt, record)
    except Exception as err:
        record.end(FAILED, rt.store.relative(uuid, f"Could not start the run: {err}"))
        finished(rt, record)
        return {"success": False, "error": f"Could not restart: {err}"}
    return {"success": True}


async def cancel(rt: Runtime, uuid: str) -> Reply:
    """Stop the task's run (its process group: the flow and its Dask workers); status 50."""
    record = rt.store.get(uuid)
    if record is None:
        return _not_found(uuid)
    if record.status == CANCELED:
        return {"success": True}
    record.canceled = True
    if record.phase == "run" and record.flow_run_id:
        guard.watch(rt, record.flow_run_id, uuid)  # until it stays cancelled (it may not, if Pending)
        try:
            await rt.bridge.cancel(record.flow_run_id)
        except Exception as err:
            log.warning("task %s: cancelling flow run %s failed: %s", uuid, record.flow_run_id, err)
    if record.phase == "done":
        record.status = CANCELED  # NodeODM cancels a finished task too (no webhook then)
    else:
        record.end(CANCELED)
    finished(rt, record)
    return {"success": True}


async def remove(rt: Runtime, uuid: str) -> Reply:
    """Cancel the task, then delete its files and forget it. A cancelled run may still write into the
    folder while it is being stopped: the folder is deleted again once the run has settled (the uuid
    stays taken until then)."""
    record = rt.store.get(uuid)
    if record is None:
        return _not_found(uuid)
    initialising = record.phase == "init"  # initialise() or its run's guard purges the folder later
    if record.status not in (CANCELED, COMPLETED, FAILED):
        await cancel(rt, uuid)
    record.canceled = True
    rt.log_since.pop(uuid, None)
    watched = guard.purge_when_settled(rt, uuid)
    await asyncio.to_thread(rt.store.forget, uuid, watched or initialising)
    return {"success": True}
