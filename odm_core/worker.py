"""What every Dask unit shares: worker-process tuning, peak memory, and the unit's array files."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import io
import resource
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from odm_core.artifacts import write_unit_checkpoint

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
MMAP_THRESHOLD_BYTES = 64 * 2**20
_MALLOC_TUNED = False


def peak_rss_mb() -> float:
    """Peak resident memory of this process (a Dask worker when run there), MiB.

    Linux's VmHWM belongs to this program image; getrusage's maxrss would also count the memory of the
    process a worker was forked from, before it started this program.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def reset_peak_rss() -> None:
    """Restart peak_rss_mb's count from the present (Linux: clear_refs 5), for a worker that runs the
    units of several stages in turn, after handing back what the last stage freed (release_freed_memory),
    so the count starts from what the worker really holds; elsewhere the peak stays the process's."""
    release_freed_memory()
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def tune_malloc() -> None:
    """Let glibc reuse freed memory for this process's large, short-lived arrays.

    Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which also freezes glibc's mmap
    threshold at 128 KiB: every depth-map-sized array is then mapped and unmapped again, page faults
    included, which doubled the units' time. A fixed 64 MiB threshold keeps them on the heap.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        libc.mallopt(M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):  # not glibc
        pass
    _MALLOC_TUNED = True


def release_freed_memory() -> None:
    """Hand the heap's free pages back to the system (glibc's malloc_trim; a no-op elsewhere).

    Between stages: what a stage freed otherwise stays in the process (tune_malloc keeps units' arrays on
    the heap, and holes between live blocks are never trimmed), so the next stage's peak would count the
    last one's leftovers: the run's process held 1.3-1.9 GB through every stage after `opensfm` at 405
    photos."""
    gc.collect()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def save_arrays(path: Path, key: str, **arrays: np.ndarray) -> None:
    """Write arrays as one .npz with its unit checkpoint sidecar (atomically; see artifacts)."""

    def write(f: io.BufferedWriter) -> None:
        np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub matches ** to allow_pickle

    write_unit_checkpoint(path, key, write)


def load_arrays(path: str | Path, *names: str) -> dict[str, np.ndarray]:
    """The arrays of a .npz written by save_arrays (only `names` when given), loaded into memory."""
    with np.load(path) as data:
        return {k: data[k] for k in (names or data.files)}


def prepare_unit() -> None:
    """Set up this worker process for a unit: glibc's heap tuned, OpenCV on one thread (one core per Dask
    worker: workers, not threads, are the parallelism)."""
    tune_malloc()
    import cv2  # here, not at import: odm_core.checkpoint imports this module in every process

    cv2.setNumThreads(1)


# How a stage's units are run in one process's hands: map(unit function, units) -> results in order.
MapUnits = Callable[[Callable[[Any], Any], Iterable[Any]], list[Any]]


def serial_map(fn: Callable[[Any], Any], units: Iterable[Any]) -> list[Any]:
    """MapUnits one unit after another, in this process."""
    return [fn(u) for u in units]
