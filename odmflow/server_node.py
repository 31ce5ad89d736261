"""The NodeODM-compatible node as a process of `odmflow server up`: started after the worker, on the
Prefect server's address, its tasks in HOME/node; a token is made up when it listens beyond loopback."""

from __future__ import annotations

import json
import secrets
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from odmflow.node_state import NodeState

NODE_DIR = "node"  # HOME/node: the node's tasks


class Launcher(Protocol):
    state: NodeState

    def spawn(self, name: str, *args: str) -> None: ...

    def wait(self, what: str, ready: Callable[[], bool]) -> None: ...


def node_token(given: str | None, host: str) -> str:
    """The node's token: the one given, else a new one when it listens beyond loopback, else none."""
    from odmflow.node.config import is_loopback

    if given:
        return given
    return "" if is_loopback(host) else secrets.token_urlsafe(24)


def answers(url: str, token: str) -> bool:
    """Whether the node's /info answers as NodeODM's does."""
    query = f"?{urllib.parse.urlencode({'token': token})}" if token else ""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the node is local
    with opener.open(f"{url}/info{query}", timeout=3) as resp:
        return "version" in json.loads(resp.read())


def start_node(run: Launcher, host: str, port: int, token: str, echo: Callable[[str], object]) -> None:
    """Start `odmflow node` on the node's Prefect server and wait until it answers."""
    state = run.state
    connect = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    url = f"http://[{connect}]:{port}" if ":" in connect else f"http://{connect}:{port}"
    data = Path(state.home) / NODE_DIR
    echo(f"starting the NodeODM node at {url} (log {state.home}/node.log)")
    args = ["--host", host, "--port", str(port), "--data", str(data), "--api-url", state.api_url]
    state.node_url, state.node_token = url, token
    run.spawn("node", sys.executable, "-m", "odmflow", "node", *args, *(["--token", token] if token else []))
    run.wait(f"answer from the node at {url}/info", lambda: answers(url, token))
