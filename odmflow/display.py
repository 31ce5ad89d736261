"""The terminal's live progress display, fed by the stage tasks' progress log records."""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from odm_core.registry import STAGES, overall_percent


class ProgressDisplay(logging.Handler):
    """Shows 'stage  [bar] NN%  message  elapsed' while a run goes; plain lines when not on a terminal."""

    def __init__(self, end_with: str, console: Console | None = None) -> None:
        super().__init__(level=logging.INFO)
        self.end_with = end_with
        self._stages = STAGES[: STAGES.index(end_with) + 1]
        self._percent = 0.0
        self.console = console or Console(stderr=True)
        self.live = self.console.is_terminal
        self._progress = Progress(
            TextColumn("[bold]{task.fields[stage]:<12}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self._task: TaskID | None = None
        self._last_plain = ("", -10.0)
        self._start = time.monotonic()
        self._stream = sys.stderr  # not print(): Prefect's log_prints would capture it

    def emit(self, record: logging.LogRecord) -> None:
        stage = getattr(record, "odm_stage", None)
        if stage is None:
            return
        fraction = float(getattr(record, "odm_fraction", 0.0))
        submodel = getattr(record, "odm_submodel", None)
        if submodel is None and stage in self._stages:
            self._percent = overall_percent(stage, fraction, self.end_with)
        percent = self._percent  # a submodel's stages run inside the split stage: the bar holds there
        label = f"{submodel} {stage}" if submodel else stage
        message = record.getMessage()
        if self.live and self._task is not None:
            self._progress.update(self._task, completed=percent, description=message, stage=label)
            return
        last_stage, last_percent = self._last_plain
        if label != last_stage or percent - last_percent >= 10 or fraction >= 1.0:
            elapsed = time.monotonic() - self._start
            # The same "stage: NN% message" line as the run's Prefect logs, after the elapsed time.
            self._stream.write(f"[{elapsed:6.1f}s] {label}: {100 * fraction:3.0f}% {message}\n")
            self._stream.flush()
            self._last_plain = (label, percent)

    def __enter__(self) -> ProgressDisplay:
        logger = logging.getLogger("odmflow.progress")
        logger.addHandler(self)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        if self.live:
            self._progress.start()
            self._task = self._progress.add_task("starting", total=100.0, stage="")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        logging.getLogger("odmflow.progress").removeHandler(self)
        if self.live:
            self._progress.stop()
