"""What the NodeODM conformance tests share: the node served by uvicorn in a thread on 127.0.0.1, a
stand-in for the Prefect server whose flow-run states the fast tests set themselves, and a webhook
receiver (a local http.server)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import uuid4

import uvicorn
from prefect.client.schemas.objects import FlowRun, State, StateType

from odmflow.node.app import create_app
from odmflow.node.config import NodeSettings
from odmflow.node.prefect_io import LogLine

UUID_PATTERN = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakePrefect:
    """The node's Prefect calls, answered from memory: the tests move each flow run's state."""

    def __init__(self, pool_limit: int | None = None) -> None:
        self.runs: dict[str, FlowRun] = {}
        self.params: dict[str, dict[str, Any]] = {}
        self.percent: dict[str, float] = {}
        self.logs: dict[str, list[LogLine]] = {}
        self.limit = pool_limit
        self.cancelled: list[str] = []

    async def __aenter__(self) -> FakePrefect:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def create_run(self, project: str, options: dict[str, Any], uuid: str, name: str) -> str:
        run = FlowRun(id=uuid4(), flow_id=uuid4(), name=uuid, state=State(type=StateType.SCHEDULED))
        self.runs[str(run.id)] = run
        self.params[str(run.id)] = {"project": project, "options": options, "name": name}
        self.logs[str(run.id)] = []
        return str(run.id)

    async def read_runs(self, ids: list[str]) -> dict[str, FlowRun]:
        return {i: self.runs[i] for i in ids if i in self.runs}

    async def progress(self, ids: list[str]) -> dict[str, float]:
        return {i: self.percent[i] for i in ids if i in self.percent}

    async def new_logs(self, run_id: str, seen: set[str], since: datetime | None) -> list[LogLine]:
        return [entry for entry in self.logs.get(run_id, []) if entry.id not in seen]

    async def cancel(self, run_id: str) -> None:
        self.cancelled.append(run_id)
        self.set(run_id, StateType.CANCELLED)

    async def pool_limit(self) -> int | None:
        return self.limit

    async def pool_load(self) -> tuple[int, int]:
        kinds = [run.state.type for run in self.runs.values() if run.state]
        running = sum(k in (StateType.RUNNING, StateType.PENDING, StateType.CANCELLING) for k in kinds)
        return running, sum(k in (StateType.SCHEDULED, StateType.PAUSED) for k in kinds)

    # What the tests do to the runs.
    def set(self, run_id: str, kind: StateType, message: str | None = None) -> None:
        run = self.runs[run_id]
        update: dict[str, Any] = {"state": State(type=kind, message=message)}
        if kind == StateType.RUNNING and run.start_time is None:
            update["start_time"] = datetime.now(UTC)
        self.runs[run_id] = run.model_copy(update=update)

    def log(self, run_id: str, *messages: str) -> None:
        for message in messages:
            lines = [f"[INFO] {line}" for line in message.splitlines()]
            self.logs[run_id].append(LogLine(str(uuid4()), datetime.now(UTC), lines))

    def last(self) -> str:
        return list(self.runs)[-1]


class NodeServer:
    """The node's app under uvicorn in a background thread."""

    def __init__(self, settings: NodeSettings, bridge: Any = None) -> None:
        self.settings = settings
        self.requests: list[str] = []  # "METHOD /path" of every request the node answered
        app = self.app = create_app(settings, bridge)

        @app.middleware("http")
        async def record(request: Any, call_next: Any) -> Any:
            self.requests.append(f"{request.method} {request.url.path}")
            return await call_next(request)

        config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="node", daemon=True)

    def __enter__(self) -> NodeServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the node did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    @property
    def rt(self) -> Any:
        """The node's Runtime (its records, its watched runs)."""
        return self.app.state.rt


def settings_for(data: Path, token: str = "T", **kw: Any) -> NodeSettings:
    return NodeSettings(
        data_dir=data, api_url="http://127.0.0.1:1/api", port=free_port(), token=token, poll_s=0.1, **kw
    )


class Hooks(BaseHTTPRequestHandler):
    """Records each POST's JSON body; answers 500 while `fail_first` is above 0."""

    received: list[dict[str, Any]]
    fail_first: list[int]

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.fail_first[0] > 0:
            self.fail_first[0] -= 1
            self.send_response(500)
        else:
            self.received.append(json.loads(body))
            self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


@contextmanager
def webhook_receiver(fail_first: int = 0) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local webhook receiver: (its URL, the bodies it accepted)."""
    received: list[dict[str, Any]] = []
    handler = type("Handler", (Hooks,), {"received": received, "fail_first": [fail_first]})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/hook", received
    finally:
        httpd.shutdown()
        httpd.server_close()


def wait_for(check: Callable[[], Any], timeout_s: float = 10.0, what: str = "a condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def run_uuid(bridge: FakePrefect, task_uuid: str) -> str:
    """The id of the task's newest flow run."""
    return next(i for i, p in reversed(bridge.runs.items()) if p.name == task_uuid)
