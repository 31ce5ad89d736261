"""Decoding photos and masks with OpenCV, with the decoders' own warnings said once instead of per photo.

libtiff (through OpenCV) warns on every read of a TIFF that carries tags it does not know, as
multispectral and thermal cameras write; each stage reads each photo again, so a run would print hundreds
of identical lines. Every decode goes through `read_image`, which keeps OpenCV's log at errors; the
dataset stage probes each TIFF's directories once with the warnings captured (`decoder_warnings`) and
says what was found in one line.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

TIFF_SUFFIXES = frozenset({".tif", ".tiff"})
_MARK = "@@odmflow-photo@@ "  # written between photos into the captured stream
# OpenCV's log prefix ("[ WARN:0@0.007] global grfmt_tiff.cpp:123 TIFF_Warning ") and libraries' own
_DECODER_LINE = re.compile(r"^\[\s*WARN:[^\]]*\]\s*(?:global\s+)?\S+:\d+\s+(?:\S+_Warning\s+)?(?P<msg>.*)$")
_LIBRARY_LINE = re.compile(r"^(?:libpng warning|libtiff|TIFF\w*|Corrupt JPEG data|Premature end of JPEG)")


def read_image(path: str | Path, flags: int) -> np.ndarray | None:
    """cv2.imread (`flags`: cv2.IMREAD_*) with OpenCV's warnings off; None if it cannot be decoded."""
    _quiet_opencv()
    return cv2.imread(str(path), flags)


@functools.cache
def _quiet_opencv() -> None:
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def decoder_warnings(paths: Iterable[Path]) -> dict[str, list[str]]:
    """What the decoders print on opening each TIFF in `paths`: {message: [photo file names]}.

    Other lines written to the process's stderr meanwhile (another thread's log) are passed through.
    """
    tiffs = [p for p in paths if p.suffix.lower() in TIFF_SUFFIXES]
    if not tiffs:
        return {}
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_WARNING)
    try:
        with _native_stderr() as captured:
            for path in tiffs:
                os.write(2, f"{_MARK}{path.name}\n".encode())
                cv2.imcount(str(path))  # reads every directory of the file, where libtiff warns
    finally:
        cv2.utils.logging.setLogLevel(level)
    return _attribute(captured)


def _attribute(lines: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    photo = ""
    for line in lines:
        if line.startswith(_MARK):
            photo = line[len(_MARK) :]
            continue
        match = _DECODER_LINE.match(line)
        if match or _LIBRARY_LINE.match(line):
            message = match.group("msg") if match else line
            names = found.setdefault(message.strip(), [])
            if photo and photo not in names:
                names.append(photo)
        elif line.strip():
            sys.stderr.write(line + "\n")
    return found


@contextmanager
def _native_stderr() -> Iterator[list[str]]:
    """Capture what native code (and Python) writes to file descriptor 2; the lines fill the list on exit."""
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().decode("utf-8", "replace").split("\n"))


def summary(found: dict[str, list[str]]) -> str | None:
    """One line for the log: how many photos the decoders warned about, and what they said."""
    if not found:
        return None
    photos = sorted({name for names in found.values() for name in names})
    common = max(found, key=lambda m: len(found[m]))
    others = f" and {len(found) - 1} other kind(s)" if len(found) > 1 else ""
    return (
        f"The image decoders (libtiff via OpenCV) warned about {len(photos)} photo(s), e.g. {common!r} "
        f"({len(found[common])} photos){others}. The photos decode and are used; such warnings are "
        f"usually tags the library does not know, and are not repeated by later stages."
    )
