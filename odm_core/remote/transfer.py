"""User-driven transfers of a bucket project: upload a folder's photos, download a run's outputs."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import s3fs

from odm_core.errors import OdmInputError
from odm_core.remote.fs import RemoteProject, is_photo, list_files, remote_errors
from odm_core.remote.sync import download_files


def upload_images(folder: Path, remote: RemoteProject, fs: s3fs.S3FileSystem) -> list[str]:
    """Upload the photos of folder/images/ to PREFIX/images/ (objects that exist with that size are kept)."""
    photos = sorted(p for p in (folder / "images").iterdir() if p.is_file() and is_photo(f"images/{p.name}"))
    if not photos:
        raise OdmInputError(f"no photos in {folder / 'images'} to upload")
    with remote_errors(remote):
        existing = list_files(fs, remote, "images")
        todo = [p for p in photos if existing.get(f"images/{p.name}", None) is None
                or existing[f"images/{p.name}"].size != p.stat().st_size]  # fmt: skip
        if todo:
            fs.put([str(p) for p in todo], [remote.path(f"images/{p.name}") for p in todo])
    return [remote.address(f"images/{p.name}") for p in todo]


def download_outputs(
    remote: RemoteProject, dest: Path, fs: s3fs.S3FileSystem, exclude: set[str] | frozenset[str]
) -> list[Path]:
    """Download every object of the project except those under the top-level folders in `exclude`."""
    with remote_errors(remote):
        files = [f for f in list_files(fs, remote).values() if PurePosixPath(f.rel).parts[0] not in exclude]
        if not files:
            raise OdmInputError(f"{remote.url} holds no outputs yet")
        download_files(fs, remote, dest, files)
    return [dest / f.rel for f in files]
