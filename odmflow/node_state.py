"""A node's record of itself: HOME/state.json (processes, ports, API URL) and where HOME is."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from odmflow.procs import Proc

HOME_ENV = "ODMFLOW_SERVER_HOME"


class NodeError(Exception):
    """The node cannot be started, or a process of it failed; the message says why."""


@dataclass
class NodeState:
    """The contents of HOME/state.json."""

    home: str
    api_url: str
    ui_url: str
    pool: str
    database: str
    worker_name: str | None = None
    dask_address: str | None = None
    dask_workers: int = 0
    ready: bool = False
    node_url: str | None = None  # the NodeODM-compatible node, if started
    node_token: str | None = None
    node_public_url: str | None = None  # the node's address for other machines, when it listens on all
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    processes: list[Proc] = field(default_factory=list)

    def save(self) -> None:
        """Write state.json, readable by its owner only: it holds the node's token."""
        path = state_path(Path(self.home))
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # a .tmp left by an older version keeps its mode otherwise
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(asdict(self), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, home: Path) -> NodeState | None:
        path = state_path(home)
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            data["processes"] = [Proc(**p) for p in data["processes"]]
            return cls(**data)
        except (ValueError, TypeError, KeyError) as err:
            raise NodeError(
                f"{path} is unreadable ({err}); stop its processes by hand and delete it"
            ) from None


@dataclass(frozen=True)
class NodeStatus:
    """What `status` found: each recorded process's live pids and whether the API answers."""

    state: NodeState
    alive: dict[str, list[int]]
    healthy: bool


def resolve_home(home: Path | None = None) -> Path:
    """--home, else $ODMFLOW_SERVER_HOME, else ~/.odmflow/server; absolute."""
    chosen = home or Path(os.environ.get(HOME_ENV) or "~/.odmflow/server")
    return chosen.expanduser().resolve()


def state_path(home: Path) -> Path:
    return home / "state.json"
