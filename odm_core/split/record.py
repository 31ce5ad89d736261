"""split.json: the partition the `split` stage made, which the merge, the merge's checkpoint and the
bucket copies of submodels read. One writer and one reader, so the file has one shape.

    {"epsg": 32615, "submodels": [{"name": "submodel_0000", "photos": [...], "core": [...],
                                   "core_xy_m": [[x, y], ...]}, ...]}

`photos`: the submodel's photos (its own and those of the overlap), `core`: its own, `core_xy_m` their
positions (metres in the EPSG's projected frame, row k of core k); names are the photos' file names.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from odm_core.artifacts import write_json
from odm_core.errors import OdmStageError
from odm_core.photos.listing import find_mask

if TYPE_CHECKING:
    from odm_core.split.partition import Submodel


@dataclass(frozen=True)
class SubmodelRecord:
    """One submodel as split.json records it; core_xy_m (len(core), 2) metres."""

    name: str
    photos: tuple[str, ...]
    core: tuple[str, ...]
    core_xy_m: np.ndarray


@dataclass(frozen=True)
class SplitRecord:
    epsg: int
    submodels: tuple[SubmodelRecord, ...]

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.submodels]


def write_split_record(
    path: Path, submodels: Sequence[Submodel], positions: Mapping[str, Sequence[float]], epsg: int
) -> Path:
    """Write split.json (atomically) from the partition and each photo's position (name -> x, y metres)."""
    record: dict[str, Any] = {
        "epsg": epsg,
        "submodels": [
            {
                "name": s.name,
                "photos": list(s.photos),
                "core": list(s.core),
                "core_xy_m": [list(positions[n][:2]) for n in s.core],
            }
            for s in submodels
        ],
    }
    return write_json(path, record)


def read_split_record(path: Path) -> SplitRecord | None:
    """split.json's record, or None when there is none (the survey was not split). Raises OdmStageError
    naming the file when it is not one the split stage wrote."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        submodels = tuple(
            SubmodelRecord(
                name=str(s["name"]),
                photos=tuple(map(str, s["photos"])),
                core=tuple(map(str, s["core"])),
                core_xy_m=np.asarray(s["core_xy_m"], dtype=float).reshape(-1, 2),
            )
            for s in data["submodels"]
        )
        return SplitRecord(int(data["epsg"]), submodels)
    except (ValueError, KeyError, TypeError) as err:
        raise OdmStageError(
            f"{path}: not a split record the split stage wrote ({type(err).__name__}: {err}); run the "
            "project again with --rerun-from split"
        ) from None


def photos_and_masks(source: Path, photos: Iterable[str]) -> set[str]:
    """A submodel's files in images/: its photos and their masks (<stem>_mask.*) found in `source`."""
    listed = list(photos)
    masks = (find_mask(source, p) for p in listed)
    return set(listed) | {m.name for m in masks if m is not None}
