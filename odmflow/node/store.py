"""Every task of the node: records in memory (the API answers from them), mirrored on disk.

The console of a task is append-only: lines are only ever added (or all cleared by a restart), so the
line offsets of `/task/{uuid}/output?line=N` stay valid between polls.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from odmflow.node.config import FAILED, UUID_RE
from odmflow.node.records import TaskPaths, TaskRecord, load_record, save_record

log = logging.getLogger("odmflow.node")


class TaskStore:
    """Tasks by uuid, their consoles, and their folders under `data_dir`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._records: dict[str, TaskRecord] = {}
        self._consoles: dict[str, list[str]] = {}
        self._log_ids: dict[str, set[str]] = {}
        self._removed: set[str] = set()  # removed tasks whose cancelled runs may still write: uuid kept
        self._lock = threading.Lock()
        (data_dir / "tmp").mkdir(parents=True, exist_ok=True)

    def paths(self, uuid: str) -> TaskPaths:
        return TaskPaths(self.data_dir, uuid)

    def load(self) -> None:
        """Tasks recorded on disk by an earlier run of the node; one that was initialising has failed.
        Task folders without a record (a removed task's run wrote into its folder after the node deleted
        it, then the node stopped) are deleted, as NodeODM deletes orphans at start-up; a folder whose
        record is unreadable is kept."""
        for record_file in sorted(self.data_dir.glob("*/.node/task.json")):
            record = load_record(record_file)
            if record is None or not UUID_RE.match(record.uuid):
                log.warning("skipping unreadable task record %s", record_file)
                continue
            if record.phase == "init":
                record.end(FAILED, "The node stopped while the task was being initialised; restart it")
            elif record.phase == "packing":
                record.phase = "run"  # its completed flow run makes the monitor pack all.zip again
            self._records[record.uuid] = record
            paths = self.paths(record.uuid)
            self._consoles[record.uuid] = _read_lines(paths.console)
            self._log_ids[record.uuid] = set(_read_lines(paths.log_ids))
        for folder in self.data_dir.iterdir():
            orphan = UUID_RE.match(folder.name) and not self.paths(folder.name).record.exists()
            if orphan and folder.is_dir() and not folder.is_symlink():
                log.info("deleting %s: no task of this node refers to it", folder)
                shutil.rmtree(folder, ignore_errors=True)

    def add(self, record: TaskRecord) -> None:
        with self._lock:
            self._records[record.uuid] = record
            self._consoles.setdefault(record.uuid, [])
            self._log_ids.setdefault(record.uuid, set())
        self.save(record)

    def get(self, uuid: str) -> TaskRecord | None:
        return self._records.get(uuid)

    def exists(self, uuid: str) -> bool:
        """Whether the uuid is taken: a task, or uploads waiting for their commit."""
        paths = self.paths(uuid)
        return uuid in self._records or uuid in self._removed or paths.tmp.exists() or paths.root.exists()

    def records(self) -> list[TaskRecord]:
        return sorted(self._records.values(), key=lambda r: r.date_created)

    def save(self, record: TaskRecord) -> None:
        if record.uuid in self._records:
            save_record(record, self.paths(record.uuid))

    def forget(self, uuid: str, reserve: bool = False) -> None:
        """Drop a task and delete its files (its folder and any uploads still waiting); `reserve` keeps
        the uuid taken until purge(), for a run that may still write into the folder."""
        with self._lock:
            if reserve:
                self._removed.add(uuid)
            self._records.pop(uuid, None)
            self._consoles.pop(uuid, None)
            self._log_ids.pop(uuid, None)
        paths = self.paths(uuid)
        for folder in (paths.root, paths.tmp):
            shutil.rmtree(folder, ignore_errors=True)

    def purge(self, uuid: str) -> None:
        """Delete a removed task's folder again (what its run wrote since) and free its uuid."""
        if uuid in self._records:
            return
        paths = self.paths(uuid)
        for folder in (paths.root, paths.tmp):
            shutil.rmtree(folder, ignore_errors=True)
        self._removed.discard(uuid)

    def relative(self, uuid: str, text: str) -> str:
        """A message for remote clients: paths in the task's folder made relative to it, the node's
        other paths hidden (a client has no business knowing where the node keeps its data)."""
        paths = self.paths(uuid)
        for prefix, short in (
            (f"{paths.tmp}/", ""),
            (f"{paths.root}/", ""),
            (str(paths.root), "."),
            (str(self.data_dir), "<node data>"),
        ):
            text = text.replace(prefix, short)
        return text

    def drop_stale_uploads(self, max_age_s: float) -> list[str]:
        """Delete uploads never committed, untouched for max_age_s (NodeODM: 2880 min); their uuids."""
        dropped = []
        for folder in (self.data_dir / "tmp").iterdir():
            try:
                age = time.time() - max(p.stat().st_mtime for p in (folder, *folder.iterdir()))
            except (OSError, ValueError):
                continue
            if age > max_age_s and folder.name not in self._records:
                shutil.rmtree(folder, ignore_errors=True)
                dropped.append(folder.name)
        return dropped

    def output(self, uuid: str, line: int = 0) -> list[str]:
        """Console lines from `line` on (negative: the last -line lines), as NodeODM's Array.slice."""
        return list(self._consoles.get(uuid, [])[line:])

    def console(self, uuid: str) -> list[str]:
        return list(self._consoles.get(uuid, []))

    def append(self, uuid: str, lines: list[str], log_ids: Sequence[str] = ()) -> None:
        """Add lines to a task's console (and remember the Prefect log entries they came from)."""
        if uuid not in self._records or not lines and not log_ids:
            return
        paths = self.paths(uuid)
        paths.node.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._consoles[uuid].extend(lines)
            self._log_ids[uuid].update(log_ids)
            with paths.console.open("a", encoding="utf-8") as out:
                out.writelines(f"{line}\n" for line in lines)
            if log_ids:
                with paths.log_ids.open("a") as out:
                    out.writelines(f"{i}\n" for i in log_ids)

    def seen(self, uuid: str) -> set[str]:
        return self._log_ids.get(uuid, set())

    def clear_console(self, uuid: str) -> None:
        paths = self.paths(uuid)
        with self._lock:
            self._consoles[uuid] = []
            self._log_ids[uuid] = set()
            paths.console.unlink(missing_ok=True)
            paths.log_ids.unlink(missing_ok=True)


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
