"""Task creation: `/task/new/init`, `/task/new/upload/{uuid}`, `/task/new/commit/{uuid}`, `/task/new`."""

from __future__ import annotations

import json
import shutil

from fastapi import APIRouter, Request

from odmflow.node import lifecycle
from odmflow.node.config import UUID_RE
from odmflow.node.files import Budget, UploadError, folder_bytes
from odmflow.node.monitor import Runtime
from odmflow.node.multipart import Received, receive
from odmflow.node.options import OptionsError

router = APIRouter()
Reply = lifecycle.Reply
NOT_FOUND = {"error": "Invalid uuid (not found)"}
MULTIPART_OVERHEAD = 1 << 20  # bytes of a request beyond its files' own (headers, fields)


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.rt
    return rt


def _budget(rt: Runtime, uuid: str) -> Budget:
    """The shared upload budget of a task's uploads (what its files already hold counted)."""
    if uuid not in rt.budgets:
        rt.budgets[uuid] = Budget(rt.settings.max_upload_bytes, folder_bytes(rt.store.paths(uuid).tmp))
    return rt.budgets[uuid]


def _too_long(request: Request, budget: Budget) -> bool:
    """Whether the declared body size alone exceeds what the task may still upload."""
    declared = request.headers.get("content-length", "")
    return declared.isdigit() and int(declared) > budget.limit - budget.used + MULTIPART_OVERHEAD


async def _fields(request: Request) -> dict[str, str]:
    """The form fields of a request that carries no file (multipart or urlencoded)."""
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/"):
        got = await receive(request.stream(), ctype, None, Budget(0))
        return got.fields
    form = await request.form(max_files=0)
    return {k: v for k, v in form.items() if isinstance(v, str)}


@router.post("/task/new/init")
async def task_new_init(request: Request) -> Reply:
    rt = runtime(request)
    uuid = _task_uuid(rt, request)
    if isinstance(uuid, dict):
        return uuid
    try:
        body = lifecycle.read_body(rt, await _fields(request))
    except (UploadError, OptionsError, ValueError) as err:
        return lifecycle.body_error(err)
    paths = rt.store.paths(uuid)
    paths.tmp.mkdir(parents=True)
    paths.body.write_text(json.dumps(body))
    return {"uuid": uuid}


def _task_uuid(rt: Runtime, request: Request) -> str | Reply:
    """The new task's uuid: the client's `set-uuid` header (ClusterODM) when valid and free, else a fresh
    one; NodeODM's error reply for a bad or taken set-uuid."""
    set_uuid = request.headers.get("set-uuid") or None  # empty: none, as NodeODM reads it
    uuid = lifecycle.new_uuid_ok(rt, set_uuid) if set_uuid is not None else _fresh_uuid(rt)
    return uuid if uuid is not None else {"error": f"Invalid set-uuid: {set_uuid}"}


def _fresh_uuid(rt: Runtime) -> str:
    from uuid import uuid4

    uuid = str(uuid4())
    while rt.store.exists(uuid):
        uuid = str(uuid4())
    return uuid


@router.post("/task/new/upload/{uuid}")
async def task_new_upload(uuid: str, request: Request) -> Reply:
    rt = runtime(request)
    paths = rt.store.paths(uuid)
    if not UUID_RE.match(uuid) or not paths.body.is_file():
        return NOT_FOUND
    budget = _budget(rt, uuid)
    if _too_long(request, budget):
        return UploadError(f"Upload too large: a task's files may hold at most {budget.limit} bytes").reply()
    try:
        got = await receive(request.stream(), request.headers.get("content-type", ""), paths.tmp, budget)
    except UploadError as err:
        return err.reply()
    except FileNotFoundError:
        return NOT_FOUND  # committed or removed while uploading
    if not got.files:
        return UploadError("Need at least 1 file.").reply()
    return {"success": True}


@router.post("/task/new/commit/{uuid}")
async def task_new_commit(uuid: str, request: Request) -> Reply:
    rt = runtime(request)
    paths = rt.store.paths(uuid)
    if not UUID_RE.match(uuid) or not paths.body.is_file() or rt.store.get(uuid) is not None:
        return NOT_FOUND
    try:
        body = json.loads(paths.body.read_text())
    except (OSError, ValueError):
        return {"error": "Malformed body.json"}
    rt.budgets.pop(uuid, None)
    return lifecycle.commit(rt, uuid, body)


@router.post("/task/new")
async def task_new(request: Request) -> Reply:
    """The single-request path: fields and every file in one multipart body."""
    rt = runtime(request)
    uuid = _task_uuid(rt, request)
    if isinstance(uuid, dict):
        return uuid
    paths = rt.store.paths(uuid)
    budget = Budget(rt.settings.max_upload_bytes)
    if _too_long(request, budget):
        return UploadError(f"Upload too large: a task's files may hold at most {budget.limit} bytes").reply()
    paths.tmp.mkdir(parents=True)
    try:
        got = await receive(request.stream(), request.headers.get("content-type", ""), paths.tmp, budget)
        body = lifecycle.read_body(rt, got.fields)
        _check_single(rt, got)
    except (UploadError, OptionsError, ValueError) as err:
        shutil.rmtree(paths.tmp, ignore_errors=True)
        return err.reply() if isinstance(err, UploadError) else lifecycle.body_error(err)
    return lifecycle.commit(rt, uuid, body)


def _check_single(rt: Runtime, got: Received) -> None:
    if not got.files:
        if got.fields.get("zipurl"):
            raise UploadError("zipurl is not supported by this node: upload the images instead")
        raise UploadError("Need at least 1 file or a zip file url.")
    limit = rt.settings.max_images
    if limit is not None and len(got.files) > limit:
        raise UploadError(f"{len(got.files)} images uploaded, but this node can only process up to {limit}.")
