"""A local processing node: a Prefect server, a process worker and a Dask cluster as OS processes.

Each runs in its own session (process group), logs to HOME/NAME.log, and is recorded in HOME/state.json.
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from odmflow.node_state import HOME_ENV, NodeError, NodeState, NodeStatus, resolve_home, state_path
from odmflow.procs import Proc, proc_stat, stop_processes
from odmflow.server_node import TOKEN_ENV, NodeLimits, node_token, start_node

__all__ = ["HOME_ENV", "NodeConfig", "NodeError", "NodeState", "NodeStatus", "Proc", "down", "status", "up"]

DB_ENVS = ("PREFECT_SERVER_DATABASE_CONNECTION_URL", "PREFECT_API_DATABASE_CONNECTION_URL")
DASK_ADDRESS_ENV = "ODMFLOW_DASK_ADDRESS"
BIN = Path(sys.executable).parent  # the venv's own `prefect` and `dask`
REPO = Path(__file__).resolve().parents[1]  # the checkout holding prefect.yaml and flows/
Echo = Callable[[str], object]


@dataclass(frozen=True)
class NodeConfig:
    """What `up` starts. `timeout_s` bounds each wait for readiness. The Prefect API and UI (`host`) have
    no login: they listen beyond loopback only with `expose_api`; the NodeODM node (`node_host`) has its
    token."""

    home: Path
    host: str = "127.0.0.1"
    expose_api: bool = False
    port: int = 4200
    pool: str = "odmflow-process"
    worker: bool = True
    dask_workers: int = 0
    dask_port: int = 8786
    timeout_s: float = 90.0
    deploy: bool = True
    bucket: str | None = None  # s3://bucket/prefix watched by odm-watch-bucket; None: no watcher
    node: bool = True  # start the NodeODM-compatible node (`odmflow node`)
    node_port: int = 3000
    node_token: str | None = None  # None: none on loopback, a new one beyond
    node_host: str = "127.0.0.1"
    node_limits: NodeLimits = field(default_factory=NodeLimits)


def _tail(log: str, lines: int = 25) -> str:
    try:
        text = Path(log).read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"(no log at {log})"
    return f"last lines of {log}:\n  " + "\n  ".join(text)


@dataclass
class _Launch:
    """The processes one `up` starts: recorded in state.json at once, watched through their Popen handles."""

    state: NodeState
    env: dict[str, str]
    timeout_s: float
    popens: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        """Start a process in its own session, its output to HOME/NAME.log; `env` adds to the node's."""
        log = Path(self.state.home) / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env={**self.env, **(env or {})},
                start_new_session=True,
            )
        self.popens.append(popen)
        stat = proc_stat(popen.pid)
        self.state.processes.append(Proc(name, popen.pid, stat[2] if stat else None, str(log)))
        self.state.save()

    def wait(self, what: str, ready: Callable[[], bool]) -> None:
        """Poll ready() until true; fail with the log's tail if a process exits or time runs out."""
        deadline, last = time.monotonic() + self.timeout_s, "none"
        while True:
            for popen, proc in zip(self.popens, self.state.processes, strict=True):
                if popen.poll() is not None:
                    raise NodeError(
                        f"{proc.name} exited (code {popen.returncode}) before {what}\n{_tail(proc.log)}"
                    )
            try:
                if ready():
                    return
            except Exception as err:  # not answering yet
                last = repr(err)
            if time.monotonic() > deadline:
                log = _tail(self.state.processes[-1].log)
                raise NodeError(f"no {what} after {self.timeout_s:.0f} s (last error: {last})\n{log}")
            time.sleep(0.25)


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn and Dask do
        try:
            s.bind((host, port))
        except socket.gaierror as err:
            raise NodeError(f"--host {host}: {err.strerror}") from None
        except OSError:
            return False
    return True


def _check(cfg: NodeConfig, home: Path) -> None:
    """Refuse before starting anything: an open Prefect API not asked for, a live node in this home,
    a bad pool name, a taken port."""
    from odmflow.node.config import is_loopback

    if not is_loopback(cfg.host) and not cfg.expose_api:
        raise NodeError(
            f"--host {cfg.host} would open the Prefect API and UI (port {cfg.port}) to every machine that"
            " reaches it, without any login: anyone could submit, cancel or delete runs and read their"
            " parameters. To serve WebODM, pyodm or ClusterODM elsewhere, leave --host and give"
            " --node-host 0.0.0.0 (the NodeODM node requires its token); to let workers on other machines"
            " reach Prefect, add --expose-prefect-api and allow that port only from trusted machines"
            " (firewall, VPN or SSH tunnel)"
        )
    old = NodeState.load(home)
    if old and (live := [p.name for p in old.processes if p.running()]):
        raise NodeError(
            f"a node from {home} is already running ({', '.join(live)}; API {old.api_url}); "
            f"stop it first with `odmflow server down --home {home}`"
        )
    from prefect.client.schemas.actions import WorkPoolCreate
    from pydantic import ValidationError

    try:
        WorkPoolCreate(name=cfg.pool, type="process")
    except ValidationError as err:
        raise NodeError(f"invalid work pool name {cfg.pool!r}: {err.errors()[0]['msg']}") from None
    ports = [("Prefect server", cfg.host, cfg.port)]
    if cfg.node:
        ports.append(("NodeODM node", cfg.node_host, cfg.node_port))
        if cfg.node_port == cfg.port:
            raise NodeError(f"--node-port and --port are both {cfg.port}; give them different ports")
    if cfg.dask_workers > 0:
        ports.append(("Dask scheduler", "127.0.0.1", cfg.dask_port))
        if cfg.dask_port == cfg.port:
            raise NodeError(f"--dask-port and --port are both {cfg.port}; give them different ports")
    for what, host, port in ports:
        if not _port_free(host, port):
            raise NodeError(f"port {port} on {host} is already in use; choose another port for the {what}")


def _database(env: dict[str, str], home: Path) -> str:
    """Where the server keeps its data, password hidden."""
    url = next((env[k] for k in DB_ENVS if env.get(k)), None)
    if url is None:
        return f"SQLite {home / 'prefect.db'}"
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _env(home: Path, cfg: NodeConfig, api_url: str) -> dict[str, str]:
    """The caller's environment (a database URL passes through), pointed at this node."""
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}  # the node's only, not its runs'
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=api_url,
        PREFECT_SERVER_API_HOST=cfg.host,
        PREFECT_SERVER_API_PORT=str(cfg.port),
        PREFECT_UI_API_URL=os.environ.get("PREFECT_UI_API_URL") or api_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_CLI_PROMPT="false",
        ODMFLOW_HOME=str(REPO),
    )
    return env


def _healthy(api_url: str) -> bool:
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the node is local
    with no_proxy.open(f"{api_url}/health", timeout=3) as resp:
        return resp.status == 200


def _ensure_pool(api_url: str, pool: str) -> None:
    """Create the process work pool unless it exists (its settings, if so, are left alone)."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    with SyncPrefectClient(api_url) as client, suppress(ObjectAlreadyExists):
        client.create_work_pool(WorkPoolCreate(name=pool, type="process", base_job_template=template))


def _worker_online(api_url: str, pool: str, name: str) -> bool:
    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(api_url) as client:
        workers = client.read_workers_for_work_pool(pool)
    return any(w.name == name and w.status == "ONLINE" for w in workers)


def _start_server(run: _Launch, cfg: NodeConfig, echo: Echo) -> None:
    api = run.state.api_url
    echo(f"starting the Prefect server at {run.state.ui_url} (log {run.state.home}/server.log)")
    run.spawn("server", str(BIN / "prefect"), "server", "start", "--host", cfg.host, "--port", str(cfg.port))
    run.wait(f"answer from {api}/health", lambda: _healthy(api))
    _ensure_pool(api, cfg.pool)


def _deploy(run: _Launch, cfg: NodeConfig, echo: Echo) -> None:
    """Register prefect.yaml's deployments on the node: odm-process, and the watcher for --bucket."""
    names = ["odm-process"] + (["odm-watch-bucket"] if cfg.bucket else [])
    echo(f"deploying {', '.join(names)} from {REPO / 'prefect.yaml'}")
    env = {**run.env, "ODMFLOW_HOME": str(REPO), "ODMFLOW_BUCKET": cfg.bucket or ""}
    args = [str(BIN / "prefect"), "--no-prompt", "deploy", "--prefect-file", str(REPO / "prefect.yaml")]
    for name in names:
        args += ["--name", name]
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=cfg.timeout_s)
    if done.returncode != 0:
        raise NodeError(f"`prefect deploy` failed:\n{(done.stdout + done.stderr)[-3000:]}")


def _recover(run: _Launch, cfg: NodeConfig, echo: Echo) -> None:
    """Queue again the runs that a worker of this machine was running when it died."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from odmflow.recovery import recover_orphaned_runs

    with temporary_settings({PREFECT_API_URL: run.state.api_url}):
        for flow_run in recover_orphaned_runs(cfg.pool):
            echo(f"run {flow_run.name} ({flow_run.id}) lost its worker: queued again, to resume")


def _start_worker(run: _Launch, cfg: NodeConfig, echo: Echo) -> None:
    api, pool = run.state.api_url, cfg.pool
    name = run.state.worker_name = f"odmflow-{uuid.uuid4().hex[:8]}"  # to tell it from earlier workers
    echo(f"starting worker {name} for work pool {pool!r} (log {run.state.home}/worker.log)")
    args = ("--pool", pool, "--type", "process", "--name", name, "--install-policy", "never")
    run.spawn("worker", str(BIN / "prefect"), "worker", "start", *args)
    run.wait(f"online worker {name} in pool {pool!r}", lambda: _worker_online(api, pool, name))


def _start_dask(run: _Launch, cfg: NodeConfig, echo: Echo) -> None:
    from distributed import Client

    address = run.state.dask_address = f"tcp://127.0.0.1:{cfg.dask_port}"
    run.env = {**run.env, DASK_ADDRESS_ENV: address}  # the Prefect worker's runs send their units there
    dask, n, info = str(BIN / "dask"), cfg.dask_workers, Path(run.state.home) / "dask-scheduler.json"
    info.unlink(missing_ok=True)
    echo(f"starting a Dask scheduler at {address} and {n} worker(s)")
    scheduler = ("--host", "127.0.0.1", "--port", str(cfg.dask_port), "--scheduler-file", str(info))
    run.spawn("dask-scheduler", dask, "scheduler", *scheduler, "--no-dashboard")
    for i in range(1, n + 1):
        worker = ("--nworkers", "1", "--nthreads", "1", "--no-dashboard")
        run.spawn(f"dask-worker-{i}", dask, "worker", address, *worker)
    clients: list[Client] = []

    def ready() -> bool:  # connect only once our scheduler has written its file: a stranger may never answer
        clients[:] = clients or ([Client(scheduler_file=str(info), timeout="5s")] if info.exists() else [])
        return bool(clients) and len(clients[0].nthreads()) >= n

    try:
        run.wait(f"{n} Dask worker(s) at {address}", ready)
    finally:
        for client in clients:
            client.close()


def up(cfg: NodeConfig, echo: Echo = lambda _: None) -> NodeState:
    """Start the node and wait until each part is ready; on any failure stop what was started and raise."""
    home = resolve_home(cfg.home)
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise NodeError(f"another `odmflow server up` is starting a node in {home}") from None
        _check(cfg, home)
        connect = "127.0.0.1" if cfg.host in ("0.0.0.0", "::", "") else cfg.host
        connect = f"[{connect}]" if ":" in connect else connect  # an IPv6 address in a URL
        ui_url = f"http://{connect}:{cfg.port}"
        env = _env(home, cfg, f"{ui_url}/api")
        state = NodeState(str(home), f"{ui_url}/api", ui_url, cfg.pool, _database(env, home))
        state.dask_workers = cfg.dask_workers
        state.save()
        run = _Launch(state, env, cfg.timeout_s)
        try:
            _start_server(run, cfg, echo)
            if cfg.deploy:
                _deploy(run, cfg, echo)
            if cfg.dask_workers > 0:  # before the worker: its runs use this cluster
                _start_dask(run, cfg, echo)
            if cfg.worker:
                _start_worker(run, cfg, echo)
                _recover(run, cfg, echo)
            if cfg.node:
                token = node_token(cfg.node_token, cfg.node_host)
                start_node(run, cfg.node_host, cfg.node_port, token, echo, cfg.node_limits)
        except BaseException as err:
            stop_processes(state.processes, grace_s=10.0)
            for popen in run.popens:
                popen.wait()
            state_path(home).unlink(missing_ok=True)
            if isinstance(err, Exception):
                head, _, rest = (str(err) if isinstance(err, NodeError) else repr(err)).partition("\n")
                raise NodeError(f"{head}; stopped what had been started\n{rest}".rstrip()) from err
            raise
        state.ready = True
        state.save()
        return state


def down(home: Path, grace_s: float = 15.0) -> tuple[NodeState | None, list[Proc]]:
    """Stop every process recorded in HOME/state.json and remove it; (None, []) if there is none."""
    home = resolve_home(home)
    state = NodeState.load(home)
    if state is None:
        return None, []
    stopped = stop_processes(list(reversed(state.processes)), grace_s)
    if left := [p.name for p in state.processes if p.running()]:
        raise NodeError(f"could not stop {', '.join(left)}; state kept in {state_path(home)}")
    state_path(home).unlink(missing_ok=True)
    return state, stopped


def status(home: Path) -> NodeStatus | None:
    """The recorded node's live processes and API health, or None if HOME has no state.json."""
    state = NodeState.load(resolve_home(home))
    if state is None:
        return None
    try:
        healthy = _healthy(state.api_url)
    except OSError:
        healthy = False
    return NodeStatus(state, {p.name: p.running() for p in state.processes}, healthy)
