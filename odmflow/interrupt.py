"""Ctrl-C during `odmflow run`: the run stops within seconds and says how to resume.

A terminal's Ctrl-C reaches every process of the run's process group: Prefect's embedded server (its
subprocess) ends at once, and Prefect's crash handling in this process then waits on a server that is
gone (its client retries for minutes), its connection error taking the place of the KeyboardInterrupt,
so that a split run went on to try its submodels again. Here the first Ctrl-C raises KeyboardInterrupt
as usual and starts a clock: when the run has not ended after STOP_GRACE_S, or at a second Ctrl-C, this
process's children are stopped and it exits with 130 (as a shell reports SIGINT). Every stage and unit
writes its outputs before its checkpoint, so the same command resumes from what was finished, as after
kill -9 (tests/test_pipeline.py).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import FrameType

import psutil

STOP_GRACE_S = 10.0
CHILD_GRACE_S = 3.0
EXIT_CODE = 130  # 128 + SIGINT


@contextmanager
def stop_on_interrupt(grace_s: float = STOP_GRACE_S) -> Iterator[None]:
    """While the block runs, Ctrl-C (SIGINT) stops the run as the module says. Nothing changes when
    SIGINT is ignored (a background job of a non-interactive shell) or outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        yield
        return
    interrupted = threading.Event()

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        if interrupted.is_set():
            _exit_now("stopped")
        interrupted.set()
        _say(f"interrupted: stopping (within {grace_s:g} s; Ctrl-C again to stop at once)")
        threading.Thread(target=_exit_after, args=(grace_s,), name="odmflow-stop", daemon=True).start()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if interrupted.is_set():  # however the run ended after it (a crash, the KeyboardInterrupt lost)
            _exit_now("stopped")


def _say(message: str) -> None:
    show_cursor = "\x1b[?25h" if sys.stderr.isatty() else ""  # a live progress bar may have hidden it
    sys.stderr.write(f"{show_cursor}\nodmflow: {message}\n")
    sys.stderr.flush()


def _exit_after(grace_s: float) -> None:
    time.sleep(grace_s)
    _exit_now(f"stopped after {grace_s:g} s")


def _exit_now(what: str) -> None:
    """Stop this process's children (Dask workers, Prefect's embedded server, a mapping child), then exit
    at once: no atexit handler may wait on what is gone."""
    _say(f"{what}; run the same command again to resume from the finished stages and units")
    children = psutil.Process().children(recursive=True)
    for child in children:
        with suppress(psutil.Error):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=CHILD_GRACE_S)
    for child in alive:
        with suppress(psutil.Error):
            child.kill()
    os._exit(EXIT_CODE)
