"""A split-merge submodel's share of its parent's model: the parent writes it (`write_seed`), the
submodel's opensfm stage takes it (`read_seed`) instead of running SfM again.

The whole survey's structure from motion is one model (one bundle adjustment), so every submodel's
cameras and tie points are already aligned with every other's: ODM aligns submodels reconstructed
apart (OpenSfM's align_reconstructions); here nothing needs aligning.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pycolmap

from odm_core.artifacts import sha256_file, sha256_text
from odm_core.errors import OdmStageError
from odm_core.sfm.export import write_colmap_model


def model_subset(rec: pycolmap.Reconstruction, names: Iterable[str]) -> pycolmap.Reconstruction:
    """A copy of `rec` with only the photos `names` registered, and the tie points two or more of them
    see (COLMAP drops a point left with fewer observations)."""
    keep = set(names)
    subset = pycolmap.Reconstruction(rec)
    for image in list(subset.images.values()):
        if image.name not in keep and image.has_pose:
            subset.deregister_frame(image.frame_id)
    return subset


def seed_digest(folder: Path) -> str:
    """One SHA-256 over the seed's files (names and contents)."""
    return sha256_text(*(f"{f.name}={sha256_file(f)}" for f in sorted(folder.iterdir()) if f.is_file()))


def write_seed(rec: pycolmap.Reconstruction, folder: Path) -> str:
    """The model as COLMAP binary files in `folder` (written whole, then renamed); returns its digest."""
    write_colmap_model(rec, folder)
    return seed_digest(folder)


def read_seed(folder: Path, digest: str) -> pycolmap.Reconstruction:
    """The model a parent left in `folder`. Raises OdmStageError when it is missing or differs from the
    one the parent wrote (`digest`): the parent's split stage must write it again."""
    if not folder.is_dir() or seed_digest(folder) != digest:
        raise OdmStageError(
            f"{folder}: this submodel's share of its parent's model is missing or changed since the parent "
            "wrote it; run the parent project again (its split stage writes it)"
        )
    return pycolmap.Reconstruction(folder)
