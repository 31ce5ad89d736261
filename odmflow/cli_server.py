"""`odmflow server up|down|status`: a local processing node (Prefect server, worker, Dask) in one command."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from odmflow import server
from odmflow.cli_errors import fail

server_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Run a local processing node: a Prefect server with its UI, a process worker, and a Dask cluster.",
)

Home = Annotated[
    Path | None,
    typer.Option(
        envvar=server.HOME_ENV,
        help="Node folder: Prefect home (SQLite database), logs, state.json.",
        show_default="~/.odmflow/server",
    ),
]


@contextmanager
def _interrupt_on_term() -> Iterator[None]:
    """SIGTERM or SIGHUP while starting act as Ctrl-C does: `up` stops what it had started."""
    sigs = (signal.SIGTERM, signal.SIGHUP)
    old = [signal.signal(sig, signal.default_int_handler) for sig in sigs]
    try:
        yield
    finally:
        for sig, handler in zip(sigs, old, strict=True):
            signal.signal(sig, handler)


_Port = Annotated[int, typer.Option(min=1, max=65535, help="Port of the Prefect API and UI.")]
_Host = Annotated[
    str,
    typer.Option(
        help="Address the Prefect API and UI listen on. They have no login: beyond 127.0.0.1 this"
        " needs --expose-prefect-api."
    ),
]
_ExposePrefectApi = Annotated[
    bool,
    typer.Option(
        "--expose-prefect-api",
        help="Let --host be an address other machines reach (remote workers): the API and UI are open"
        " to all of them, without a login; allow the port only from trusted machines.",
    ),
]
_Pool = Annotated[str, typer.Option(help="Process work pool to create and serve.")]
_DaskWorkers = Annotated[
    int, typer.Option(min=0, help="Dask worker processes (1 thread each); 0 = no Dask cluster.")
]
_DaskPort = Annotated[int, typer.Option(min=1, max=65535, help="Port of the Dask scheduler.")]
_NoWorker = Annotated[bool, typer.Option("--no-worker", help="Start no Prefect worker.")]
_Timeout = Annotated[float, typer.Option(min=1, help="Seconds to wait for each part to be ready.")]
_Bucket = Annotated[
    str | None,
    typer.Option(help="Watch s3://bucket/prefix: deploy odm-watch-bucket, which processes each new dataset."),
]
_NoDeploy = Annotated[
    bool,
    typer.Option(
        "--no-deploy",
        help="Do not register prefect.yaml's deployments; then no NodeODM node is started either (its"
        " tasks are odm-process runs).",
    ),
]
_NoNode = Annotated[bool, typer.Option("--no-node", help="Start no NodeODM-compatible node.")]
_NodeHost = Annotated[
    str,
    typer.Option(help="Address the NodeODM node listens on (0.0.0.0: all; beyond 127.0.0.1 it has a token)."),
]
_NodePort = Annotated[int, typer.Option(min=1, max=65535, help="Port of the NodeODM node.")]
_NodeToken = Annotated[
    str | None,
    typer.Option(
        envvar="ODMFLOW_NODE_TOKEN",
        help="The node's token (made up when --node-host listens beyond loopback and none is given).",
    ),
]
_NodeMaxUploadMb = Annotated[
    float | None, typer.Option(min=0.001, help="Most MiB of files one node task may upload.")
]
_NodeMaxImages = Annotated[
    int | None, typer.Option(min=1, help="Most photos per node task (default: no limit).")
]
_NodeMaxConcurrency = Annotated[
    int | None, typer.Option(min=1, help="Cap and default of each node task's --max-concurrency.")
]
_NodeWebhook = Annotated[
    str | None, typer.Option(help="URL the node calls (POST) whenever any of its tasks finishes.")
]


@server_app.command()
def up(
    home: Home = None,
    port: _Port = 4200,
    host: _Host = "127.0.0.1",
    expose_prefect_api: _ExposePrefectApi = False,
    pool: _Pool = "odmflow-process",
    dask_workers: _DaskWorkers = 0,
    dask_port: _DaskPort = 8786,
    no_worker: _NoWorker = False,
    timeout: _Timeout = 90.0,
    bucket: _Bucket = None,
    no_deploy: _NoDeploy = False,
    no_node: _NoNode = False,
    node_host: _NodeHost = "127.0.0.1",
    node_port: _NodePort = 3000,
    node_token: _NodeToken = None,
    node_max_upload_mb: _NodeMaxUploadMb = None,
    node_max_images: _NodeMaxImages = None,
    node_max_concurrency: _NodeMaxConcurrency = None,
    node_webhook: _NodeWebhook = None,
) -> None:
    """Start the node in the background and wait until every part answers."""
    limits = server.NodeLimits(node_max_upload_mb, node_max_images, node_max_concurrency, node_webhook)
    cfg = server.NodeConfig(
        home=server.resolve_home(home),
        host=host,
        expose_api=expose_prefect_api,
        port=port,
        pool=pool,
        worker=not no_worker,
        dask_workers=dask_workers,
        dask_port=dask_port,
        timeout_s=timeout,
        deploy=not no_deploy,
        bucket=bucket,
        node=not (no_node or no_deploy),
        node_port=node_port,
        node_token=node_token,
        node_host=node_host,
        node_limits=limits,
    )
    if no_deploy and not no_node:
        typer.echo("--no-deploy: no NodeODM node is started (its tasks need the odm-process deployment)")
    try:
        with _interrupt_on_term():
            state = server.up(cfg, echo=typer.echo)
    except server.NodeError as err:
        raise fail(str(err)) from None
    except KeyboardInterrupt:
        raise fail("interrupted; stopped what had been started", 130) from None
    typer.echo(_ready_lines(state, home is not None, cfg.host))


def _ready_lines(state: server.NodeState, custom_home: bool, host: str = "127.0.0.1") -> str:
    """What `up` prints once every part answers: the addresses, and how to use and stop the node."""
    from odmflow.node.config import is_loopback

    home_opt = f" --home {state.home}" if custom_home else ""
    lines = [
        "",
        f"Prefect UI    {state.ui_url}",
        f"Prefect API   {state.api_url}   (database: {state.database})",
        f"work pool     {state.pool}" + (f"   (worker {state.worker_name})" if state.worker_name else ""),
    ]
    if state.dask_address:
        lines.append(f"Dask          {state.dask_address}   ({state.dask_workers} worker(s))")
    if not is_loopback(host):
        port = state.ui_url.rsplit(":", 1)[-1]
        lines.append(
            f"WARNING       Prefect listens on {host} without a login: open port {port} to trusted hosts only"
        )
    if state.node_url:
        token = f"token {state.node_token}" if state.node_token else "no token: this machine only"
        url = state.node_public_url or state.node_url
        lines.append(f"NodeODM node  {url}   ({token}; add it to WebODM or use it from pyodm)")
        if state.node_public_url:
            lines.append(f"              listens on all interfaces; {state.node_url} from this machine")
    lines += [
        f"state, logs   {state.home}",
        "",
        f"export PREFECT_API_URL={state.api_url}",
        f"stop with:    odmflow server down{home_opt}",
    ]
    return "\n".join(lines)


@server_app.command()
def down(home: Home = None) -> None:
    """Stop every process of the node (SIGTERM, then SIGKILL after 15 s) and forget it."""
    try:
        state, stopped = server.down(server.resolve_home(home))
    except server.NodeError as err:
        raise fail(str(err), 1) from None
    if state is None:
        typer.echo(f"no node recorded in {server.resolve_home(home)}; nothing to stop")
        return
    names = ", ".join(f"{p.name} (pid {p.pid})" for p in stopped) or "none was still running"
    typer.echo(f"stopped the node of {state.home}: {names}")


@server_app.command()
def status(home: Home = None) -> None:
    """Show the node's processes, its API URL and health; exit code 1 unless all are up."""
    try:
        st = server.status(server.resolve_home(home))
    except server.NodeError as err:
        raise fail(str(err), 1) from None
    if st is None:
        typer.echo(f"no node recorded in {server.resolve_home(home)}; start one with `odmflow server up`")
        raise typer.Exit(1)
    state = st.state
    for proc in state.processes:
        pids = st.alive[proc.name]
        what = f"running (pid {proc.pid}, {len(pids)} process(es))" if pids else "not running"
        typer.echo(f"{proc.name:<16}{what:<36}log {proc.log}")
    typer.echo(f"API           {state.api_url}   health: {'ok' if st.healthy else 'NOT ANSWERING'}")
    typer.echo(f"UI            {state.ui_url}")
    typer.echo(
        f"work pool     {state.pool}" + (f" (worker {state.worker_name})" if state.worker_name else "")
    )
    if state.dask_address:
        typer.echo(f"Dask          {state.dask_address}")
    if state.node_url:
        typer.echo(
            f"NodeODM node  {state.node_url}" + (f"   (token {state.node_token})" if state.node_token else "")
        )
    if not state.ready:
        typer.echo("(the node was still starting, or its `up` was killed; `odmflow server down` cleans up)")
    if not (st.healthy and state.ready and all(st.alive.values())):
        raise typer.Exit(1)
