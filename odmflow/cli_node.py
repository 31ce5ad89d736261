"""`odmflow node`: serve NodeODM's API over a Prefect server, for WebODM, pyodm, ClusterODM and CloudODM."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from odmflow.cli_errors import fail

TOKEN_ENV = "ODMFLOW_NODE_TOKEN"  # also how `server up` gives the node its token (not on its command line)


_Token = Annotated[
    str,
    typer.Option(
        envvar=TOKEN_ENV,
        help=f"Token clients pass as ?token= (WebODM's node token); ${TOKEN_ENV} keeps it out of `ps`.",
    ),
]


def node(
    host: Annotated[
        str, typer.Option(help="Address to listen on (beyond 127.0.0.1 a --token is required).")
    ] = ("127.0.0.1"),
    port: Annotated[
        int, typer.Option(min=1, max=65535, help="Port to listen on (NodeODM's is 3000).")
    ] = 3000,
    token: _Token = "",
    data: Annotated[
        Path | None,
        typer.Option(
            help="Folder of the tasks (uploads, projects, all.zip).", show_default="~/.odmflow/node"
        ),
    ] = None,
    api_url: Annotated[
        str | None,
        typer.Option(
            envvar="PREFECT_API_URL", help="The Prefect server's API (`odmflow server up` prints it)."
        ),
    ] = None,
    max_upload_mb: Annotated[
        float, typer.Option(min=0.001, help="Most MiB of files one task may upload.")
    ] = (50 * 1024.0),
    max_images: Annotated[
        int | None, typer.Option(min=1, help="Most photos per task (default: no limit).")
    ] = None,
    max_concurrency: Annotated[
        int, typer.Option(min=1, help="Cap and default of each task's --max-concurrency.")
    ] = os.cpu_count() or 1,
    webhook: Annotated[str | None, typer.Option(help="URL called (POST) whenever any task finishes.")] = None,
) -> None:
    """Serve NodeODM's API (2.x); every task becomes an odm-process run on the Prefect server."""
    from odmflow.node.config import NodeSettings, is_loopback, port_problem

    if not api_url:
        raise fail("no Prefect server: start one with `odmflow server up` or give --api-url/PREFECT_API_URL")
    if not token and not is_loopback(host):
        raise fail(f"--host {host} listens beyond this machine: give a --token (or ${TOKEN_ENV})")
    if problem := port_problem(host, port):
        raise fail(problem)
    settings = NodeSettings(
        data_dir=(data or Path("~/.odmflow/node")).expanduser().resolve(),
        api_url=api_url.rstrip("/"),
        host=host,
        port=port,
        token=token,
        max_upload_bytes=int(max_upload_mb * 1024 * 1024),
        max_images=max_images,
        max_concurrency=max_concurrency,
        webhook=webhook,
    )
    from odmflow.node.serve import serve

    typer.echo(f"NodeODM API at {settings.url}" + (" (token required)" if token else ""), err=True)
    serve(settings)
