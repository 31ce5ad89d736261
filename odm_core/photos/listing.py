"""Which files in images/ are photos: listing, skipped kinds (RAW, video), and name collisions."""

from __future__ import annotations

import logging
import os
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from odm_core.errors import OdmInputError

log = logging.getLogger("odm_core.stages.dataset")

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"})
RAW_EXTENSIONS = frozenset({".dng", ".raw", ".nef", ".cr2", ".cr3", ".arw", ".orf", ".rw2"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".avi", ".mkv", ".m4v"})

MASK_SUFFIX = "_mask"  # <photo stem>_mask.<ext>: the photo's mask (ODM)


@dataclass(frozen=True)
class SkippedFile:
    """A file in images/ that was not used, and why."""

    filename: str
    reason: str


def list_images(images: Path) -> tuple[list[Path], list[SkippedFile]]:
    """Photo files directly in images/ (no hidden files, no *_mask.*), and RAW/video files skipped."""
    hint = f"put your photos in {images}/ (PROJECT/images/)"
    if not images.is_dir():
        raise OdmInputError(f"No images folder at {images}: {hint}")
    photos: list[Path] = []
    skipped: list[SkippedFile] = []
    subfolders: list[str] = []
    with os.scandir(images) as entries:
        for entry in entries:
            name = entry.name
            ext = os.path.splitext(name)[1].lower()
            if name.startswith("."):
                continue
            if entry.is_dir():
                subfolders.append(name)
            elif os.path.splitext(name)[0].endswith(MASK_SUFFIX) and ext in IMAGE_EXTENSIONS:
                continue  # a photo's mask (find_mask), never a photo itself
            elif ext in IMAGE_EXTENSIONS:
                photos.append(Path(entry.path))
            elif ext in RAW_EXTENSIONS:
                skipped.append(SkippedFile(name, "RAW photos are not supported; export them to JPEG or TIFF"))
            elif ext in VIDEO_EXTENSIONS:
                skipped.append(SkippedFile(name, "videos are not supported; extract frames to JPEG first"))
    if not photos and not skipped:
        found = f"; photos in subfolders are not read: {', '.join(sorted(subfolders))}" if subfolders else ""
        exts = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise OdmInputError(f"No photos ({exts}) in {images}{found}: {hint}")
    return sorted(photos), skipped


def case_collisions(files: Sequence[Path]) -> list[str]:
    """Problems for file names equal up to case/Unicode normalisation (they collide on macOS/Windows)."""
    groups: dict[str, list[str]] = {}
    for f in files:
        groups.setdefault(unicodedata.normalize("NFC", f.name).casefold(), []).append(f.name)
    return [
        f"{' and '.join(repr(n) for n in sorted(names))} differ only in case: they collide on "
        "case-insensitive file systems and cloud sync; rename one of them"
        for names in groups.values()
        if len(names) > 1
    ]


def find_mask(images: Path, photo_name: str) -> Path | None:
    """The mask of a photo (ODM's `<photo stem>_mask.<ext>` beside it, any image extension), if any."""
    stem = os.path.splitext(photo_name)[0] + MASK_SUFFIX
    for ext in sorted(IMAGE_EXTENSIONS):
        for candidate in (images / f"{stem}{ext}", images / f"{stem}{ext.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def orphan_masks(images: Path, photos: Sequence[Path]) -> list[str]:
    """Mask files in images/ whose photo is not there (named in a warning: a typo loses the mask)."""
    stems = {os.path.splitext(p.name)[0] + MASK_SUFFIX for p in photos}
    return sorted(
        f.name
        for f in images.iterdir()
        if os.path.splitext(f.name)[0].endswith(MASK_SUFFIX)
        and os.path.splitext(f.name)[1].lower() in IMAGE_EXTENSIONS
        and os.path.splitext(f.name)[0] not in stems
    )
