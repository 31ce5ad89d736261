"""A task's endpoints: list, info, output, download, cancel, remove, restart."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.responses import Response

from odmflow.node import lifecycle
from odmflow.node.config import COMPLETED
from odmflow.node.routes_new import runtime

router = APIRouter()
Reply = lifecycle.Reply

# Named assets besides all.zip (WebODM's names), each one file of the project.
ASSETS = {
    "orthophoto.tif": "odm_orthophoto/odm_orthophoto.tif",
    "orthophoto.png": "odm_orthophoto/odm_orthophoto.png",
    "orthophoto.kmz": "odm_orthophoto/odm_orthophoto.kmz",
    "cutline.gpkg": "odm_orthophoto/cutline.gpkg",
    "dsm.tif": "odm_dem/dsm.tif",
    "dtm.tif": "odm_dem/dtm.tif",
    "georeferenced_model.laz": "odm_georeferencing/odm_georeferenced_model.laz",
    "georeferenced_model.las": "odm_georeferencing/odm_georeferenced_model.las",
    "georeferenced_model.csv": "odm_georeferencing/odm_georeferenced_model.csv",
    "ground_control_points.geojson": "odm_georeferencing/ground_control_points.geojson",
    "textured_model.glb": "odm_texturing/odm_textured_model_geo.glb",
    "cameras.json": "cameras.json",
    "shots.geojson": "odm_report/shots.geojson",
    "report.pdf": "odm_report/report.pdf",
    "stats.json": "odm_report/stats.json",
    "task_output.txt": "task_output.txt",
}
MEDIA = {".zip": "application/zip", ".tif": "image/tiff", ".png": "image/png", ".pdf": "application/pdf"}


def _line(value: str | None) -> int:
    """A line offset as JavaScript's Array.slice takes it: not a number is 0."""
    try:
        return int(float(value)) if value not in (None, "") else 0
    except (TypeError, ValueError, OverflowError):
        return 0


@router.get("/task/list")
async def task_list(request: Request) -> list[dict[str, str]]:
    return [{"uuid": r.uuid} for r in runtime(request).store.records()]


@router.get("/task/{uuid}/info")
async def task_info(uuid: str, request: Request) -> Reply:
    rt = runtime(request)
    record = rt.store.get(uuid)
    if record is None:
        return {"error": f"{uuid} not found"}
    with_output = request.query_params.get("with_output")
    output = None if with_output is None else rt.store.output(uuid, _line(with_output))
    return record.info(output)


@router.get("/task/{uuid}/output")
async def task_output(uuid: str, request: Request) -> Any:
    rt = runtime(request)
    if rt.store.get(uuid) is None:
        return {"error": f"{uuid} not found"}
    return rt.store.output(uuid, _line(request.query_params.get("line")))


@router.get("/task/{uuid}/download/{asset}")
async def task_download(uuid: str, asset: str, request: Request) -> Response:
    """all.zip (or a named asset) once the task completed; Range requests are answered (206)."""
    rt = runtime(request)
    record = rt.store.get(uuid)
    if record is None:
        return JSONResponse({"error": f"{uuid} not found"})
    paths = rt.store.paths(uuid)
    if asset == "all.zip":
        path = paths.zip
    elif asset in ASSETS:
        path = paths.root / ASSETS[asset]
    else:
        return JSONResponse({"error": "Invalid asset"})
    if record.status != COMPLETED or not path.is_file():
        return JSONResponse({"error": "Asset not ready" if record.status != COMPLETED else "Asset not found"})
    media = MEDIA.get(path.suffix, "application/octet-stream")
    return FileResponse(path, media_type=media, filename=asset)


async def _form(request: Request) -> dict[str, str]:
    """A POST's fields, urlencoded, multipart or JSON (NodeODM's body parsers)."""
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = json.loads(await request.body() or b"{}")
        except ValueError:
            return {}
        if not isinstance(data, dict):
            return {}
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}
    form = await request.form(max_files=0)
    return {k: v for k, v in form.items() if isinstance(v, str)}


async def _uuid(request: Request) -> tuple[dict[str, str], str | None]:
    form = await _form(request)
    return form, form.get("uuid") or None


@router.post("/task/cancel")
async def task_cancel(request: Request) -> Reply:
    _, uuid = await _uuid(request)
    return await lifecycle.cancel(runtime(request), uuid) if uuid else {"error": "uuid param missing."}


@router.post("/task/remove")
async def task_remove(request: Request) -> Reply:
    _, uuid = await _uuid(request)
    return await lifecycle.remove(runtime(request), uuid) if uuid else {"error": "uuid param missing."}


@router.post("/task/restart")
async def task_restart(request: Request) -> Reply:
    form, uuid = await _uuid(request)
    if not uuid:
        return {"error": "uuid param missing."}
    return await lifecycle.restart(runtime(request), uuid, form.get("options"))
