"""ODM projects kept in an S3-compatible bucket: check, pull into a local folder, push finished stages.

The local folder is a cache of the bucket. `pull_project` mirrors the prefix into it, downloading only
what changed (recorded in `.odmflow/remote-index.json`); images/ is mirrored exactly, while other local
files that the bucket lacks are left alone: a stale output cannot pass for a checkpoint, since manifests
are checked against the photos and the outputs' content. `push_stage` uploads a stage's outputs and
Prefect results, then its manifest last, so a reader never sees a manifest whose outputs are missing.
Nothing under images/ is ever uploaded: the user's photos in the bucket are never modified.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import s3fs

from odm_core.artifacts import read_manifest
from odm_core.errors import OdmInputError
from odm_core.layout import ProjectTree
from odm_core.registry import STAGES
from odm_core.remote.fs import (
    INDEX,
    PHOTO_EXTENSIONS,
    RemoteFile,
    RemoteProject,
    SyncIndex,
    endpoint_of,
    is_photo,
    is_remote,
    list_files,
    parse_remote,
    remote_errors,
    s3_filesystem,
    safe_relative,
)

__all__ = [
    "PHOTO_EXTENSIONS",
    "RemoteProject",
    "check_remote",
    "is_processed",
    "is_remote",
    "list_datasets",
    "parse_remote",
    "pull_project",
    "push_paths",
    "push_stage",
    "s3_filesystem",
]

log = logging.getLogger("odm_core.remote.sync")

_REL = ProjectTree(Path("."))
LOCAL_ONLY = frozenset({INDEX, _REL.digest_cache.as_posix()})  # machine-specific: never pulled or pushed
MANIFESTS = (_REL.state / "manifests").as_posix() + "/"
_BATCH = 32


def check_remote(remote: RemoteProject, fs: s3fs.S3FileSystem) -> int:
    """Number of photos under PREFIX/images/; OdmInputError when the project cannot be processed.

    Checks, in order: endpoint reachable, credentials valid, bucket exists, prefix not empty, images/
    present and holding photos. Reads only.
    """
    with remote_errors(remote):
        _require_bucket(remote, fs)
        images = list_files(fs, remote, "images")
        photos = sum(is_photo(rel) for rel in images)
        if photos:
            return photos
        if images:
            exts = ", ".join(sorted(PHOTO_EXTENSIONS))
            raise OdmInputError(f"{remote.address('images')}/ holds no photos ({exts}): upload them there")
        if _is_empty(remote, fs):
            raise OdmInputError(f"{remote.url} is empty: upload the photos to {remote.address('images')}/")
        raise OdmInputError(
            f"{remote.url} has no images/ folder: put the photos under {remote.address('images')}/ "
            "(ODM's project layout)"
        )


def _require_bucket(remote: RemoteProject, fs: s3fs.S3FileSystem) -> None:
    try:
        fs.call_s3("head_bucket", Bucket=remote.bucket)
    except FileNotFoundError as e:
        raise OdmInputError(
            f"{remote.url}: bucket {remote.bucket!r} does not exist at {endpoint_of(fs)}: check the "
            "address, or AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL for another S3 server"
        ) from e


def _is_empty(remote: RemoteProject, fs: s3fs.S3FileSystem) -> bool:
    prefix = f"{remote.prefix}/" if remote.prefix else ""
    listing = fs.call_s3("list_objects_v2", Bucket=remote.bucket, Prefix=prefix, MaxKeys=1)
    return not listing.get("Contents")


def pull_project(remote: RemoteProject, local: Path, fs: s3fs.S3FileSystem) -> Path:
    """Mirror the project in the bucket into `local` (downloads only what changed) and return `local`.

    Each file is downloaded to a temporary name and renamed, manifests last. Local files in images/
    that the bucket lacks are deleted; other local files that the bucket lacks are kept. A split project's
    submodels' own files stay in the bucket (`submodel_run_file`).
    """
    check_remote(remote, fs)
    with remote_errors(remote):
        listed = list_files(fs, remote)
    files = {r: f for r, f in listed.items() if _pullable(r, remote)}
    index = SyncIndex.load(local, remote)
    todo = [f for f in files.values() if not index.up_to_date(local, f)]
    for batch in _batches([f.rel for f in todo]):
        with remote_errors(remote):
            download_files(fs, remote, local, [files[r] for r in batch])
        for rel in batch:
            index.record(local, files[rel])
        index.save(local, listed)  # the whole listing: entries of submodel products pulled apart stay
    removed = _prune_images(local, files)
    index.save(local, listed)
    kept = len(files) - len(todo)
    log.info(
        "pulled %s: %d downloaded, %d up to date, %d removed from images/",
        remote.url,
        len(todo),
        kept,
        removed,
    )
    return local


def _pullable(rel: str, remote: RemoteProject) -> bool:
    if not safe_relative(rel):
        log.warning("skipping %s: its name cannot be a local path", remote.address(rel))
        return False
    return rel not in LOCAL_ONLY and not rel.endswith(".part") and not submodel_run_file(rel)


_SUBMODEL_FILE = re.compile(r"submodels/submodel_\d+/(.+)")
_SPLIT_WRITES = re.compile(r"submodel_options\.json|split_seed/.+")  # what the parent's split stage wrote


def submodel_run_file(rel: str) -> bool:
    """True for a file in a split project's submodel folder that the submodel's own run wrote, or one of
    its photo copies: a pull of the parent project leaves those in the bucket (the split run downloads
    the few the merge reads, odm_core.remote.submodels)."""
    match = _SUBMODEL_FILE.fullmatch(rel)
    return match is not None and _SPLIT_WRITES.fullmatch(match.group(1)) is None


def _batches(rels: Iterable[str]) -> list[list[str]]:
    """Transfer groups in order: other files first, manifests after all of them."""
    ordered = sorted(rels)
    groups = [
        [r for r in ordered if not r.startswith(MANIFESTS)],
        [r for r in ordered if r.startswith(MANIFESTS)],
    ]
    return [g[i : i + _BATCH] for g in groups for i in range(0, len(g), _BATCH)]


def download_files(
    fs: s3fs.S3FileSystem, remote: RemoteProject, local: Path, files: list[RemoteFile]
) -> None:
    """Download to temporary names beside the targets, then rename: no half file under a final name."""
    targets = [local / f.rel for f in files]
    temps: list[str] = []
    try:
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
            os.close(fd)
            temps.append(tmp)
        fs.get([remote.path(f.rel) for f in files], temps)
        for tmp, target in zip(temps, targets, strict=True):
            os.replace(tmp, target)
    finally:
        for tmp in temps:
            Path(tmp).unlink(missing_ok=True)


def _prune_images(local: Path, files: dict[str, RemoteFile]) -> int:
    """Delete local files in images/ that the bucket does not have; returns how many."""
    images = ProjectTree(local).images
    stale = [p for p in images.rglob("*") if p.is_file() and p.relative_to(local).as_posix() not in files]
    for p in stale:
        p.unlink()
    return len(stale)


def push_paths(remote: RemoteProject, local: Path, paths: Iterable[Path], fs: s3fs.S3FileSystem) -> list[str]:
    """Upload local files (absolute, or relative to `local`) to PREFIX/<rel>; manifests go last.

    Returns the uploaded addresses in upload order. Refuses (ValueError) files outside `local`, under
    images/ or local-only bookkeeping; FileNotFoundError for a missing file, before anything is uploaded.
    """
    rels = {_push_rel(local, Path(p)) for p in paths}
    batches = _batches(rels)
    index = SyncIndex.load(local, remote)
    with remote_errors(remote):
        for batch in batches:
            fs.put([str(local / r) for r in batch], [remote.path(r) for r in batch])
        for rel in rels:
            info = fs.info(remote.path(rel))
            index.record(local, RemoteFile(rel, int(info["size"]), str(info.get("ETag", "")).strip('"')))
    index.save(local, None)
    return [remote.address(r) for batch in batches for r in batch]


def _push_rel(local: Path, path: Path) -> str:
    base = Path(os.path.abspath(local))
    full = Path(os.path.abspath(base / path))
    try:
        rel = full.relative_to(base).as_posix()
    except ValueError:
        raise ValueError(f"{full} is not inside the project folder {local}") from None
    if PurePosixPath(rel).parts[:1] == ("images",):
        raise ValueError(f"{rel}: files under images/ are never uploaded (the photos are the user's)")
    if rel in LOCAL_ONLY or not safe_relative(rel):
        raise ValueError(f"{rel}: not a project file that can be uploaded")
    if not full.is_file():
        raise FileNotFoundError(f"{full}: no such file to upload")
    return rel


def push_stage(remote: RemoteProject, local: Path, stage: str, fs: s3fs.S3FileSystem) -> list[str]:
    """Upload a finished stage: outputs and Prefect results (`.odmflow/results/STAGE-*`), manifest last."""
    tree = ProjectTree(local)
    manifest = read_manifest(tree.manifest(stage))
    if manifest is None:
        raise OdmInputError(f"stage {stage!r} has no manifest in {local}: it has not finished, run it first")
    outputs = [local / rel for rel in manifest["outputs"]]
    results = sorted(p for p in tree.results.glob(f"{stage}-*") if p.is_file())
    return push_paths(remote, local, [*outputs, *results, tree.manifest(stage)], fs)


def list_datasets(bucket_prefix_url: str, fs: s3fs.S3FileSystem) -> list[RemoteProject]:
    """Every immediate sub-prefix of `bucket_prefix_url` that holds at least one photo in its images/."""
    parent = parse_remote(bucket_prefix_url)
    with remote_errors(parent):
        _require_bucket(parent, fs)
        fs.invalidate_cache(parent.path())
        try:
            entries = fs.ls(parent.path(), detail=True)
        except FileNotFoundError:
            return []
        found: list[RemoteProject] = []
        for entry in sorted(entries, key=lambda e: str(e["name"])):
            if entry.get("type") != "directory":
                continue
            name = str(entry["name"]).rstrip("/").rsplit("/", 1)[-1]
            try:
                project = parse_remote(parent.address(name))
            except OdmInputError as e:
                log.warning("skipping %s", e)
                continue
            if any(is_photo(rel) for rel in list_files(fs, project, "images")):
                found.append(project)
    return found


def is_processed(remote: RemoteProject, fs: s3fs.S3FileSystem) -> bool:
    """True when the bucket holds the manifest of the last built stage (pushed after its outputs)."""
    key = _REL.manifest(STAGES[-1]).as_posix()
    with remote_errors(remote):
        try:
            fs.call_s3("head_object", Bucket=remote.bucket, Key=remote.key(key))
        except FileNotFoundError:
            return False
    return True
