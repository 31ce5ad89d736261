"""Where a submitted project lives: checked local folders, uploaded ones, checked bucket prefixes."""

from __future__ import annotations

from pathlib import Path

from odm_core.errors import OdmInputError


def prepare(target: str, upload: str | None) -> tuple[str, str]:
    """The project address a worker will process, and a run name; checks it before anything starts."""
    from odm_core.remote import sync as remote
    from odm_core.remote.transfer import upload_images

    if remote.is_remote(target):
        if upload:
            raise OdmInputError("--upload is for local folders; the target is already in a bucket")
        project = remote.parse_remote(target)
        remote.check_remote(project, remote.s3_filesystem())
        return project.url, project.prefix.rsplit("/", 1)[-1] or project.bucket
    folder = Path(target).resolve()
    if not (folder / "images").is_dir():
        raise OdmInputError(f"no images/ folder in {folder}: put the photos in {folder / 'images'}/")
    if upload is None:
        return str(folder), folder.name
    dest = remote.parse_remote(f"{upload.rstrip('/')}/{folder.name}")
    fs = remote.s3_filesystem()
    upload_images(folder, dest, fs)
    remote.check_remote(dest, fs)
    return dest.url, folder.name
