"""The node's FastAPI app: NodeODM's routes, its token check and its error convention.

Every error is HTTP 200 with `{"error": "..."}`, as NodeODM answers (pyodm, WebODM and CloudODM read the
`error` key, not the status). The token, when the node has one, is the `token` query parameter of every
route but `/auth/*`, compared in constant time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psutil
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from odmflow.node import routes_new, routes_task
from odmflow.node.config import API_VERSION, BAD_TOKEN, ENGINE, NodeSettings, engine_version
from odmflow.node.monitor import Runtime, monitor_loop
from odmflow.node.options import node_options
from odmflow.node.prefect_io import PrefectBridge
from odmflow.node.store import TaskStore

log = logging.getLogger("odmflow.node")


class ApiError(Exception):
    """A refusal answered as NodeODM answers: HTTP 200 with this JSON."""

    def __init__(self, reply: dict[str, Any]) -> None:
        super().__init__(reply.get("error"))
        self.reply = reply


def check_token(request: Request) -> None:
    settings: NodeSettings = request.app.state.rt.settings
    if not settings.token_ok(request.query_params.get("token")):
        raise ApiError({"error": BAD_TOKEN})


def _info(rt: Runtime) -> dict[str, Any]:
    memory = psutil.virtual_memory()
    return {
        "version": API_VERSION,
        "taskQueueCount": rt.queue_count(),
        "totalMemory": int(memory.total),
        "availableMemory": int(memory.available),
        "cpuCores": os.cpu_count() or 1,
        "maxImages": rt.settings.max_images,
        "maxParallelTasks": rt.max_parallel(),
        "engineVersion": engine_version(),
        "engine": ENGINE,
    }


def _add_routes(app: FastAPI) -> None:
    guarded = [Depends(check_token)]

    @app.get("/info", dependencies=guarded)
    async def info(request: Request) -> dict[str, Any]:
        return _info(request.app.state.rt)

    @app.get("/options", dependencies=guarded)
    async def options() -> list[dict[str, Any]]:
        return node_options()

    @app.get("/auth/info")
    async def auth_info() -> dict[str, Any]:
        return {"message": "Authentication not available on this node", "loginUrl": None, "registerUrl": None}

    @app.post("/auth/login")
    @app.post("/auth/register")
    async def auth_login() -> dict[str, Any]:
        return {"error": "Not available"}

    app.include_router(routes_new.router, dependencies=guarded)
    app.include_router(routes_task.router, dependencies=guarded)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.reply)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)  # unknown routes: 404

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": f"Invalid request: {exc.errors()[0].get('msg', 'bad value')}"})

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"error": f"Internal error: {type(exc).__name__}: {exc}"})


def create_app(settings: NodeSettings, bridge: Any = None) -> FastAPI:
    """The node's app; `bridge` replaces the Prefect bridge (tests drive the states themselves)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = TaskStore(settings.data_dir)
        store.load()
        async with bridge or PrefectBridge(settings.api_url, settings.deployment) as opened:
            rt = Runtime(settings, store, opened)
            app.state.rt = rt
            loop = asyncio.create_task(monitor_loop(rt))
            try:
                yield
            finally:
                loop.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop
                await rt.hooks.drain()

    app = FastAPI(title="odmflow node (NodeODM API)", version=API_VERSION, lifespan=lifespan)
    _add_routes(app)
    _add_error_handlers(app)
    return app
