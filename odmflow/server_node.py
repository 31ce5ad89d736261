"""The NodeODM-compatible node as a process of `odmflow server up`: started after the worker, on its own
address (`--node-host`), its tasks in HOME/node; a token is made up when it listens beyond loopback. The
token reaches the node through its environment, not its command line (which every user of the machine
can read in `ps`)."""

from __future__ import annotations

import ipaddress
import json
import secrets
import socket
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from odmflow.node_state import NodeState

NODE_DIR = "node"  # HOME/node: the node's tasks
TOKEN_ENV = "ODMFLOW_NODE_TOKEN"  # `odmflow node --token`'s variable
WILDCARDS = ("0.0.0.0", "::", "")


@dataclass(frozen=True)
class NodeLimits:
    """`odmflow node`'s limits, as `server up --node-...` gives them (None: the node's default)."""

    max_upload_mb: float | None = None
    max_images: int | None = None
    max_concurrency: int | None = None
    webhook: str | None = None

    def args(self) -> list[str]:
        given = {
            "--max-upload-mb": self.max_upload_mb,
            "--max-images": self.max_images,
            "--max-concurrency": self.max_concurrency,
            "--webhook": self.webhook,
        }
        return [arg for flag, value in given.items() if value is not None for arg in (flag, str(value))]


class Launcher(Protocol):
    state: NodeState

    def spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> None: ...

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


def reachable_url(host: str, port: int) -> str:
    """The node's address for other machines: `host` itself, or for a wildcard this machine's outgoing
    address (its hostname when there is no route)."""
    if host not in WILDCARDS:
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent, the kernel picks the source address
            address = s.getsockname()[0]
        if not ipaddress.ip_address(address).is_loopback:
            return f"http://{address}:{port}"
    except OSError:
        pass
    return f"http://{socket.gethostname()}:{port}"


def start_node(
    run: Launcher, host: str, port: int, token: str, echo: Callable[[str], object], limits: NodeLimits
) -> None:
    """Start `odmflow node` on the node's Prefect server and wait until it answers."""
    state = run.state
    connect = "127.0.0.1" if host in WILDCARDS else host
    url = f"http://[{connect}]:{port}" if ":" in connect else f"http://{connect}:{port}"
    data = Path(state.home) / NODE_DIR
    echo(f"starting the NodeODM node at {url} (log {state.home}/node.log)")
    args = ["--host", host, "--port", str(port), "--data", str(data), "--api-url", state.api_url]
    state.node_url, state.node_token = url, token
    state.node_public_url = reachable_url(host, port) if host in WILDCARDS else None
    run.spawn("node", sys.executable, "-m", "odmflow", "node", *args, *limits.args(), env={TOKEN_ENV: token})
    run.wait(f"answer from the node at {url}/info", lambda: answers(url, token))
