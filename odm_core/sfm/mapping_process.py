"""Incremental mapping and the focal's settling in a process of their own.

Mapping holds COLMAP's correspondence graph and Ceres' bundle adjustment over every observation: 1.7 GiB
at 300 photos of the synthetic survey (2.0 GiB before the focal was freed on a thinned copy, see
focal_thin.py). In the stage's own process that came on top of Prefect's
and the other stages' modules (2.9 GB in the node run); a child process (`python -m
odm_core.sfm.mapping_process`) imports only numpy, pycolmap and the mapping modules (about 130 MiB) and
returns its memory when it ends. It writes the model (COLMAP binary files) into `out`/model and reports
on a pipe of its own, one JSON object a line: progress, then its outcome. Its standard output and error
are the stage's, so whatever COLMAP or a library prints there reaches the log as before and cannot be
taken for, or break into, a report line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pycolmap

from odm_core.errors import OdmStageError
from odm_core.geo.georef import GeoReference
from odm_core.photos.photo import Photo

Progress = Callable[[float, str], None]
PARENT_POLL_S = 1.0


def map_in_process(
    db: Path,
    images: Path,
    out: Path,
    use_priors: bool,
    n_photos: int,
    progress: Progress,
    hold: bool,
    rotations: dict[str, list[float]] | None = None,
    planar: bool = False,
) -> tuple[pycolmap.Reconstruction, str | None, tuple[str, ...]]:
    """odm_core.sfm.mapping.incremental_mapping (or, given the photos' `rotations`, triangulation.py's
    mapping, or with `planar` planar.py's, falling back on incremental when the matches disagree with
    them), then focal.settle_focal
    when `hold`, in a child process: (the model kept, the focal's note or None, the mapping's notes).
    Raises OdmStageError with the mapping's own message when it found no model, or naming the exit code
    when the process died (killed, out of memory)."""
    read_fd, write_fd = os.pipe()
    args = {"db": str(db), "images": str(images), "out": str(out), "use_priors": use_priors}
    args |= {"n_photos": n_photos, "hold": hold, "parent": os.getpid(), "report_fd": write_fd}
    args |= {"rotations": rotations, "planar": planar}
    command = [sys.executable, "-m", "odm_core.sfm.mapping_process", json.dumps(args)]
    outcome: dict[str, Any] | None = None
    with os.fdopen(read_fd) as reports:
        try:
            child = subprocess.Popen(command, pass_fds=(write_fd,))
        finally:
            os.close(write_fd)  # the child's copy alone keeps the pipe open: its end is the child's end
        with child:
            try:
                outcome = _follow(reports, progress)
            finally:
                if child.poll() is None and outcome is None:  # this process is failing: so is the mapping
                    child.kill()
    if outcome is None:
        raise OdmStageError(
            f"the mapping process ended with exit code {child.returncode} before finishing (killed, or out "
            "of memory?); run the project again (the matched features are kept)"
        )
    if "error" in outcome:
        raise OdmStageError(outcome["error"])
    return pycolmap.Reconstruction(outcome["model"]), outcome["note"], tuple(outcome["notes"])


def map_photos(
    db: Path,
    images: Path,
    photos: list[Photo],
    georef: GeoReference | None,
    algorithm: str,
    progress: Progress,
) -> tuple[pycolmap.Reconstruction, str | None, tuple[str, ...], str]:
    """The stage's mapping with --sfm-algorithm `algorithm` (map_in_process, the focal held when every
    camera has an EXIF focal): the model, the focal's note, warnings when the algorithm asked for could not
    be used, and the algorithm that made the model. `georef` None: too few GPS positions (no priors)."""
    from odm_core.sfm.focal import hold_focal
    from odm_core.sfm.triangulation import photo_rotations

    rotations, warnings = photo_rotations(algorithm, photos, georef)
    planar = algorithm == "planar"
    progress(0.7, f"{algorithm} mapping" if rotations or planar else "incremental mapping")
    rec, focal_note, mapping_notes = map_in_process(
        db,
        images,
        db.parent / "mapper",
        georef is not None,
        len(photos),
        progress,
        hold_focal(db),
        rotations,
        planar,
    )
    used = algorithm if (rotations or planar) and not mapping_notes else "incremental"
    return rec, focal_note, warnings + mapping_notes, used


def _follow(reports: IO[str], progress: Progress) -> dict[str, Any] | None:
    """The child's outcome (its last report), its progress reports passed on meanwhile; None when the
    pipe closes first (the child died)."""
    for line in reports:
        message = json.loads(line)
        if "progress" in message:
            progress(*message["progress"])
        else:
            return dict(message)
    return None


def _exit_with_parent(parent: int) -> None:
    """End this process when the stage's process is gone (its worker killed): no orphaned mapping."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(1)


def main(arguments: str) -> None:
    """The child: map, settle the focal, write the model, report on its pipe (`report_fd`); then exit at
    once (the outcome is out, nothing left to tear down)."""
    a = json.loads(arguments)
    pycolmap.logging.minloglevel = 1  # COLMAP's warnings and errors only: its INFO lines flood the console
    threading.Thread(target=_exit_with_parent, args=(a["parent"],), daemon=True).start()
    reports = os.fdopen(a["report_fd"], "w")

    def _report(message: dict[str, Any]) -> None:
        reports.write(json.dumps(message) + "\n")
        reports.flush()

    from odm_core.sfm.focal import settle_focal

    db, out = Path(a["db"]), Path(a["out"])
    report: Progress = lambda fraction, text: _report({"progress": [fraction, text]})  # noqa: E731
    try:
        rec, notes = _mapped(a, report)
        rec, note = settle_focal(rec, db) if a["hold"] else (rec, None)
        model = out / "model"
        model.mkdir(parents=True, exist_ok=True)
        rec.write(str(model))
        _report({"model": str(model), "note": note, "notes": notes})
    except OdmStageError as err:
        _report({"error": str(err)})
    except Exception as err:  # noqa: BLE001 - reported to the stage, which raises it
        _report({"error": f"mapping failed: {type(err).__name__}: {err}"})
    sys.stdout.flush()
    reports.close()
    os._exit(0)


def _mapped(a: dict[str, Any], report: Progress) -> tuple[pycolmap.Reconstruction, list[str]]:
    """The child's model: triangulation from the photos' rotations when given, or the planar chaining
    (`planar`), when the matches agree with it; else incremental mapping, with a note saying why."""
    from odm_core.sfm.mapping import incremental_mapping
    from odm_core.sfm.planar import planar_mapping
    from odm_core.sfm.triangulation import triangulation_mapping

    db, images, out = Path(a["db"]), Path(a["images"]), Path(a["out"])
    notes: list[str] = []
    if a["rotations"] or a["planar"]:
        if a["rotations"]:
            rec, set_aside = triangulation_mapping(db, images, out, a["rotations"], report, a["hold"])
        else:
            rec, set_aside = planar_mapping(db, images, out, report, a["hold"], a["use_priors"])
        if not set_aside:
            return rec, notes
        notes.append(_set_aside_note("planar" if a["planar"] else "triangulation", set_aside))
    rec = incremental_mapping(db, images, out, a["use_priors"], a["n_photos"], report, a["hold"])
    return rec, notes


def _set_aside_note(algorithm: str, names: list[str]) -> str:
    """The warning when the triangulation's or planar model is set aside for incremental mapping."""
    listed = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    if algorithm == "triangulation":
        what, fix = "their recorded GPS and gimbal angles", "check those photos' yaw, pitch and roll, or use"
    else:
        what, fix = "one flat ground seen straight down from one height", "use"
    return (
        f"--sfm-algorithm {algorithm}: the matches of {len(names)} photo(s) disagree with {what} ({listed}), "
        f"so the photos were mapped incrementally instead ({fix} the default --sfm-algorithm incremental)"
    )


if __name__ == "__main__":  # `python -m` imported odm_core first: numpy before pycolmap, as it must be
    main(sys.argv[1])
