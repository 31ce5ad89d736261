"""The node's settings, NodeODM's constants, and the token check."""

from __future__ import annotations

import errno
import hmac
import ipaddress
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from odm_core import __version__
from odmflow.runs import DEPLOYMENT  # the odm-process deployment `odmflow submit` uses too

API_VERSION = "2.2.4"  # the NodeODM API level served (pyodm uses chunked uploads from 1.4.0, WebODM 1.5.1)
ENGINE = "odmflow"

QUEUED, RUNNING, FAILED, COMPLETED, CANCELED = 10, 20, 30, 40, 50
FINAL = frozenset({FAILED, COMPLETED, CANCELED})
DEFAULT_MAX_UPLOAD = 50 * 1024**3  # bytes of uploads per task
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[1-7][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", re.I)
BAD_TOKEN = "Invalid authentication token: token does not match."


def engine_version() -> str:
    return __version__


def is_loopback(host: str) -> bool:
    """Whether an address to listen on is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def port_problem(host: str, port: int) -> str | None:
    """Why the node cannot listen on host:port, naming the option to change; None when it can."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            s.bind((host, port))
        except socket.gaierror as err:
            return f"--host {host}: {err.strerror}; give an address of this machine"
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is already in use: stop what uses it or give another --port"
            return f"cannot listen on {host}:{port} ({err.strerror}): give another --host or --port"
    return None


@dataclass(frozen=True)
class NodeSettings:
    """What a node serves and where it keeps its tasks.

    `token`: required on every API call when set (`?token=`); a node listening beyond loopback must have
    one. `max_upload_bytes`: the most a task's uploads may hold. `max_images`: None is unlimited.
    `max_concurrency`: the cap (and default) of each task's --max-concurrency, as NodeODM's.
    `settle_s`: how long a cancelled flow run must stay final before the node stops cancelling it again.
    """

    data_dir: Path
    api_url: str
    host: str = "127.0.0.1"
    port: int = 3000
    token: str = ""
    deployment: str = DEPLOYMENT
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD
    max_images: int | None = None
    max_concurrency: int = os.cpu_count() or 1
    poll_s: float = 2.0
    settle_s: float = 120.0  # a cancelled run is watched until it has stayed final this long
    webhook: str | None = None  # called for every finished task, beside the task's own

    def __post_init__(self) -> None:
        if not self.token and not is_loopback(self.host):
            raise ValueError(f"the node listens on {self.host}, beyond this machine: give it a token")

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    def token_ok(self, given: str | None) -> bool:
        """Whether a request's token is the node's (constant-time); any token when the node has none."""
        if not self.token:
            return True
        return hmac.compare_digest((given or "").encode(), self.token.encode())
