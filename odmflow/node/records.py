"""One NodeODM task: its record (what `/task/{uuid}/info` shows, and what the node needs to drive the
task's flow runs), and where its files are.

A task's folder, DATA/<uuid>/, is the ODM project the flow run processes (images/, gcp_list.txt, then
the outputs); the node's own files are in DATA/<uuid>/.node/: task.json (this record), console.txt (the
output lines), log_ids.txt (the Prefect log entries already in the console) and all.zip.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from odmflow.node.config import CANCELED, FAILED, FINAL, RUNNING

# init: files being moved, the flow run being created; run: the flow run decides; packing: writing
# all.zip; done: final (status says how it ended).
Phase = Literal["init", "run", "packing", "done"]


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class TaskRecord:
    """A task as NodeODM describes it, plus its flow run."""

    uuid: str
    name: str
    date_created: int  # ms since the epoch
    options: list[dict[str, Any]]  # [{"name": ..., "value": typed}], as NodeODM's filterOptions returns
    webhook: str | None = None
    skip_post_processing: bool = False
    outputs: list[str] = field(default_factory=list)
    images_count: int = 0
    phase: Phase = "init"
    status: int = RUNNING
    error_message: str | None = None
    flow_run_id: str | None = None
    started_at: float | None = None  # epoch s when the flow run started
    ended_at: float | None = None  # epoch s when the task ended (all.zip written, failed, canceled)
    progress: float = 0.0
    webhook_due: bool = False  # the task ended; its webhook is to be called once
    canceled: bool = False

    def processing_time_ms(self, now: float | None = None) -> int:
        """NodeODM's processingTime: -1 until the run starts, then ms until now or the end."""
        if self.started_at is None:
            return -1
        end = self.ended_at if self.ended_at is not None else (now or time.time())
        return max(0, int((end - self.started_at) * 1000))

    def info(self, output: list[str] | None = None) -> dict[str, Any]:
        """`/task/{uuid}/info`: NodeODM's fields and JSON types (ints for times and the status code)."""
        status: dict[str, Any] = {"code": self.status}
        if self.error_message and self.status == FAILED:
            status["errorMessage"] = self.error_message
        info: dict[str, Any] = {
            "uuid": self.uuid,
            "name": self.name,
            "dateCreated": self.date_created,
            "processingTime": self.processing_time_ms(),
            "status": status,
            "options": self.options,
            "imagesCount": self.images_count,
            "progress": round(self.progress, 2),
        }
        if output is not None:
            info["output"] = output
        return info

    def raise_progress(self, value: float) -> None:
        """Progress only rises; 100 is reserved for a task that ended (completed: all.zip can be streamed)."""
        cap = 100.0 if self.status in FINAL else 99.0
        self.progress = max(self.progress, min(cap, value))

    def end(self, status: int, error: str | None = None) -> None:
        """Make the task final once; the webhook becomes due."""
        if self.phase == "done" and self.status in FINAL:
            return
        self.phase, self.status, self.error_message = "done", status, error
        self.ended_at = time.time() if self.started_at is not None else self.ended_at
        self.progress = 100.0  # NodeODM shows 100 once a task has ended, however it ended
        self.webhook_due = status != CANCELED or self.started_at is not None
        # NodeODM calls no webhook for a task cancelled before it ran

    @property
    def active(self) -> bool:
        return self.status not in FINAL


class TaskPaths:
    """The files of one task under the node's data folder."""

    def __init__(self, data_dir: Path, uuid: str) -> None:
        self.root = data_dir / uuid
        self.tmp = data_dir / "tmp" / uuid
        self.node = self.root / ".node"
        self.record = self.node / "task.json"
        self.console = self.node / "console.txt"
        self.log_ids = self.node / "log_ids.txt"
        self.zip = self.node / "all.zip"
        self.images = self.root / "images"
        self.body = self.tmp / "body.json"


def save_record(record: TaskRecord, paths: TaskPaths) -> None:
    paths.node.mkdir(parents=True, exist_ok=True)
    tmp = paths.record.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(record)))
    tmp.replace(paths.record)


def load_record(path: Path) -> TaskRecord | None:
    try:
        return TaskRecord(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
