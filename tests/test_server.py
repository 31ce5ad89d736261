"""`odmflow server up|status|down`: a real Prefect server, worker and Dask cluster on free ports, tmp home.

The node's lifecycle goes through the installed `odmflow` console script in a subprocess, as a user runs
it; the test that patches `server` calls the root app in-process. Neither reaches the `server` sub-app
directly, so the sub-app missing from `odmflow` fails here.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from odmflow import server
from odmflow.cli import app
from odmflow.procs import proc_stat
from tests.conftest import CONSOLE_SCRIPT, REPO

runner = CliRunner()


def odmflow(*args: str, timeout: float = 120) -> tuple[int, str]:
    """`odmflow ARGS` through the installed console script: its exit code and its output (both streams)."""
    done = subprocess.run(
        [str(CONSOLE_SCRIPT), *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )
    return done.returncode, done.stdout + done.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def recorded(home: Path) -> list[server.Proc]:
    state = server.NodeState.load(home)
    assert state is not None, f"no state.json in {home}"
    return state.processes


def assert_gone(procs: list[server.Proc]) -> None:
    """Each process, and every process of its group, has exited (at most a zombie left for its reaper)."""
    for proc in procs:
        stat = proc_stat(proc.pid)
        assert stat is None or stat[0] in "ZX", f"{proc.name} (pid {proc.pid}) is still alive"
        assert proc.running() == [], f"{proc.name}'s process group is still alive"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """One node for this module: a Prefect server, a worker and 1 Dask worker; stopped whatever happens."""
    home = tmp_path_factory.mktemp("node")
    args = ["server", "up", "--home", str(home), "--port", str(free_port()), "--timeout", "50"]
    args += ["--node-port", str(free_port()), "--node-token", "secret"]
    try:
        code, output = odmflow(*args, "--dask-workers", "1", "--dask-port", str(free_port()), timeout=300)
        assert code == 0, output
        yield home, output
    finally:
        if server.NodeState.load(home):
            server.down(home, grace_s=5)


@pytest.mark.slow  # the node fixture starts a Prefect server, worker and Dask cluster: 30 s
def test_up_starts_a_ready_node(node: tuple[Path, str]) -> None:
    from distributed import Client
    from prefect.client.orchestration import SyncPrefectClient

    home, output = node
    state = json.loads((home / "state.json").read_text())
    assert f"export PREFECT_API_URL={state['api_url']}" in output
    assert state["ready"] and state["database"] == f"SQLite {home / 'prefect.db'}"
    names = [p["name"] for p in state["processes"]]
    assert names == ["server", "dask-scheduler", "dask-worker-1", "worker", "node"]  # Dask first: runs use it
    assert f"NodeODM node  {state['node_url']}   (token secret;" in output
    with urllib.request.urlopen(f"{state['node_url']}/info?token=secret", timeout=5) as resp:
        assert json.loads(resp.read())["engine"] == "odmflow"
    with urllib.request.urlopen(f"{state['node_url']}/info?token=wrong", timeout=5) as resp:
        assert json.loads(resp.read())["error"].startswith("Invalid authentication token")
    for proc in recorded(home):
        os.kill(proc.pid, 0)
        assert proc.running() and Path(proc.log) == home / f"{proc.name}.log"
    with urllib.request.urlopen(f"{state['api_url']}/health", timeout=5) as resp:
        assert resp.status == 200
    with SyncPrefectClient(state["api_url"]) as client:
        assert client.read_work_pool("odmflow-process").type == "process"
        workers = client.read_workers_for_work_pool("odmflow-process")
    assert [w.status for w in workers if w.name == state["worker_name"]] == ["ONLINE"]
    with Client(state["dask_address"], timeout="10s") as dask:
        assert len(dask.nthreads()) == 1


@pytest.mark.slow  # the node fixture starts a Prefect server, worker and Dask cluster: 30 s
def test_status_reports_the_node(node: tuple[Path, str]) -> None:
    home, _ = node
    code, output = odmflow("server", "status", "--home", str(home))
    assert code == 0, output
    for proc in recorded(home):
        assert f"running (pid {proc.pid}" in output
    api_url = json.loads((home / "state.json").read_text())["api_url"]
    assert f"API           {api_url}   health: ok" in output
    assert "NodeODM node  http://127.0.0.1:" in output


@pytest.mark.slow  # the node fixture starts a Prefect server, worker and Dask cluster: 30 s
def test_second_up_on_the_same_home_is_refused(node: tuple[Path, str]) -> None:
    home, _ = node
    before = recorded(home)
    code, output = odmflow("server", "up", "--home", str(home), "--port", str(free_port()))
    assert code == 2
    assert "already running" in output and "odmflow server down" in output
    assert recorded(home) == before


@pytest.mark.slow  # the node fixture starts a Prefect server, worker and Dask cluster: 30 s
def test_down_stops_every_process(node: tuple[Path, str]) -> None:
    home, _ = node
    procs = recorded(home)
    code, output = odmflow("server", "down", "--home", str(home))
    assert code == 0, output
    assert "stopped" in output
    assert_gone(procs)
    assert not (home / "state.json").exists()
    code, output = odmflow("server", "down", "--home", str(home))
    assert code == 0 and "nothing to stop" in output
    code, output = odmflow("server", "status", "--home", str(home))
    assert code == 1 and "no node" in output


def test_up_on_a_taken_port_fails_before_starting_anything(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, output = odmflow("server", "up", "--home", str(tmp_path), "--port", str(port))
    assert code == 2
    assert f"port {port} on 127.0.0.1 is already in use" in output
    assert not (tmp_path / "state.json").exists() and not (tmp_path / "server.log").exists()


def test_failure_half_way_stops_what_was_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Dask port is taken after the check (a race): the scheduler dies, and up stops server and worker."""
    started: list[server.Proc] = []
    spawn = server._Launch.spawn

    def spy(self: server._Launch, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        spawn(self, name, *args, env=env)
        started.append(self.state.processes[-1])

    monkeypatch.setattr(server._Launch, "spawn", spy)
    monkeypatch.setattr(server, "_port_free", lambda host, port: True)
    try:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            dask_port = taken.getsockname()[1]
            args = ["--port", str(free_port()), "--dask-workers", "1", "--dask-port", str(dask_port)]
            result = runner.invoke(app, ["server", "up", "--home", str(tmp_path), *args, "--timeout", "50"])
        assert result.exit_code == 2, result.output
        assert "dask-scheduler exited" in result.output and "stopped what had been started" in result.output
        assert "dask-scheduler.log" in result.output  # the log's tail comes with the error
        assert [p.name for p in started] == ["server", "dask-scheduler", "dask-worker-1"]  # no worker yet
        assert_gone(started)
        assert not (tmp_path / "state.json").exists()
    finally:
        server.stop_processes(started, grace_s=5)


def test_up_keeps_prefect_on_loopback_unless_asked(tmp_path: Path) -> None:
    """Prefect's API has no login: --host beyond loopback is refused, naming the options that serve
    other machines safely, before anything starts."""
    args = ["server", "up", "--home", str(tmp_path), "--host", "0.0.0.0", "--port", str(free_port())]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "without any login" in text and "--node-host 0.0.0.0" in text and "--expose-prefect-api" in text
    assert not (tmp_path / "state.json").exists() and not (tmp_path / "server.log").exists()


def test_up_passes_the_node_options_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from odmflow import cli_server

    got: list[server.NodeConfig] = []

    def fake_up(cfg: server.NodeConfig, echo: object) -> server.NodeState:
        got.append(cfg)
        state = server.NodeState(str(tmp_path), "http://127.0.0.1:1/api", "http://127.0.0.1:1", "p", "db")
        state.node_url, state.node_token = "http://127.0.0.1:3000", "tok"
        state.node_public_url = "http://192.0.2.7:3000"
        return state

    monkeypatch.setattr(cli_server.server, "up", fake_up)
    node = ["--node-max-upload-mb", "10", "--node-max-images", "5", "--node-max-concurrency", "2"]
    node += ["--node-webhook", "http://hooks/x", "--node-host", "0.0.0.0", "--home", str(tmp_path)]
    result = runner.invoke(app, ["server", "up", *node])
    assert result.exit_code == 0, result.output
    assert got[0].node_limits == server.NodeLimits(10.0, 5, 2, "http://hooks/x")
    assert got[0].node_host == "0.0.0.0" and got[0].host == "127.0.0.1" and got[0].node
    assert "NodeODM node  http://192.0.2.7:3000   (token tok;" in result.output  # other machines' address
    assert "listens on all interfaces; http://127.0.0.1:3000 from this machine" in result.output
    result = runner.invoke(app, ["server", "up", "--no-deploy", "--home", str(tmp_path)])
    assert "--no-deploy: no NodeODM node is started" in result.output and not got[-1].node


def test_the_node_gets_its_limits_and_its_token_not_on_its_command_line(tmp_path: Path) -> None:
    from odmflow.server_node import TOKEN_ENV, NodeLimits, start_node

    class Launch:
        def __init__(self) -> None:
            self.state = server.NodeState(str(tmp_path), "http://127.0.0.1:1/api", "u", "p", "db")
            self.spawned: list[tuple[tuple[str, ...], dict[str, str] | None]] = []

        def spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
            self.spawned.append((args, env))

        def wait(self, what: str, ready: object) -> None:
            return None

    launch = Launch()
    start_node(launch, "0.0.0.0", 3999, "s3cret", lambda _: None, NodeLimits(10.0, 5, 2, "http://h/x"))
    args, env = launch.spawned[0]
    assert "s3cret" not in " ".join(args) and env == {TOKEN_ENV: "s3cret"}
    joined = " ".join(args)
    assert "--max-upload-mb 10.0" in joined and "--max-images 5" in joined and "--max-concurrency 2" in joined
    assert "--webhook http://h/x" in joined and "--host 0.0.0.0" in joined
    assert launch.state.node_url == "http://127.0.0.1:3999" and launch.state.node_public_url
    assert "0.0.0.0" not in launch.state.node_public_url and launch.state.node_public_url.endswith(":3999")
    launch.state.save()
    assert (tmp_path / "state.json").stat().st_mode & 0o777 == 0o600  # it holds the token
