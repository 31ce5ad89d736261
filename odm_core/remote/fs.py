"""S3 addresses, the s3fs filesystem, listings and error messages for projects kept in a bucket.

An address is `s3://BUCKET/PREFIX`: the ODM project folder is the prefix, so its photos are under
`PREFIX/images/` and its outputs sit beside them in ODM's layout. Credentials and the endpoint are found
by botocore the usual AWS way (see `s3_filesystem`). `SyncIndex` records what a local copy last
synced, so that pulling twice downloads nothing the second time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import s3fs
from botocore.exceptions import (
    ClientError,
    CredentialRetrievalError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from odm_core.artifacts import write_json
from odm_core.errors import OdmInputError
from odm_core.layout import ProjectTree

SCHEME = "s3://"
# What a local copy last synced with the bucket, relative to the project folder.
INDEX = (ProjectTree(Path(".")).state / "remote-index.json").as_posix()
PHOTO_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff"})
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IPV4 = re.compile(r"\d+\.\d+\.\d+\.\d+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CREDENTIALS_HELP = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with a profile in "
    "~/.aws/credentials (AWS_SHARED_CREDENTIALS_FILE)"
)


@dataclass(frozen=True)
class RemoteProject:
    """An ODM project folder in a bucket: `s3://bucket/prefix` (prefix may be empty or nested)."""

    url: str
    bucket: str
    prefix: str

    def path(self, rel: str = "") -> str:
        """The s3fs path ("bucket/prefix/rel") of a file or folder of the project."""
        return "/".join(p for p in (self.bucket, self.prefix, rel) if p)

    def key(self, rel: str = "") -> str:
        """The object key of a file of the project."""
        return "/".join(p for p in (self.prefix, rel) if p)

    def address(self, rel: str = "") -> str:
        """The s3:// address of a file or folder of the project."""
        return SCHEME + self.path(rel)


@dataclass(frozen=True)
class RemoteFile:
    """One object of a project: its path relative to the prefix, size and ETag (quotes removed)."""

    rel: str
    size: int
    etag: str

    @property
    def md5(self) -> str | None:
        """The content's MD5 when the ETag is one (single-part upload, no KMS encryption)."""
        return self.etag if re.fullmatch(r"[0-9a-f]{32}", self.etag) else None


def is_remote(project: str) -> bool:
    """True for an `s3://...` address (a project kept in a bucket)."""
    return str(project).lower().startswith(SCHEME)


def parse_remote(url: str) -> RemoteProject:
    """Split `s3://BUCKET/PREFIX` into bucket and prefix; OdmInputError names what is wrong."""
    if not is_remote(url):
        raise OdmInputError(f"{url!r} is not an S3 address: write it as s3://BUCKET/PREFIX")
    bucket, _, prefix = url[len(SCHEME) :].partition("/")
    prefix = prefix.rstrip("/")
    if not bucket:
        raise OdmInputError(f"{url!r} names no bucket: write it as s3://BUCKET/PREFIX")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket or _IPV4.fullmatch(bucket):
        raise OdmInputError(
            f"{url!r}: {bucket!r} is not a valid bucket name (3-63 lowercase letters, digits, dots and "
            "hyphens, starting and ending with a letter or digit)"
        )
    parts = prefix.split("/") if prefix else []
    if any(p in ("", ".", "..") for p in parts) or _CONTROL.search(prefix):
        raise OdmInputError(
            f"{url!r}: the prefix {prefix!r} has an empty, '.' or '..' part or a control character"
        )
    return RemoteProject(url=SCHEME + "/".join([bucket, *parts]), bucket=bucket, prefix=prefix)


def s3_filesystem(**options: Any) -> s3fs.S3FileSystem:
    """A fresh S3 filesystem whose listings are never served from a cache.

    Credentials and endpoint come from botocore's usual chain, which (botocore >= 1.31) also reads the
    endpoint from AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL or the profile's `endpoint_url`, so MinIO, Ceph
    or moto work with no code change. `options` go to `s3fs.S3FileSystem` (e.g. `config_kwargs`).
    """
    return s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False, **options)


def endpoint_of(fs: s3fs.S3FileSystem) -> str:
    """The endpoint URL `fs` talks to (for messages)."""
    client = getattr(fs, "s3", None)
    meta = getattr(client, "meta", None)
    return str(getattr(meta, "endpoint_url", None) or "AWS S3")


@contextlib.contextmanager
def remote_errors(remote: RemoteProject) -> Iterator[None]:
    """Turn credential, permission and connection failures into OdmInputErrors that say what to do."""
    try:
        yield
    except (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError) as e:
        raise OdmInputError(f"{remote.url}: no usable S3 credentials ({e}): {_CREDENTIALS_HELP}") from e
    except PermissionError as e:
        if not isinstance(e.__cause__, ClientError):  # a local file, not the bucket
            raise
        raise OdmInputError(
            f"{remote.url}: access denied ({e}): the credentials are invalid or may not use bucket "
            f"{remote.bucket!r}; check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE, and the "
            "bucket's policy"
        ) from e
    except BotoConnectionError as e:
        raise OdmInputError(
            f"{remote.url}: cannot reach the S3 endpoint ({e}): check the network and "
            "AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL"
        ) from e


def list_files(fs: s3fs.S3FileSystem, remote: RemoteProject, under: str = "") -> dict[str, RemoteFile]:
    """Every object below the project's prefix (or its sub-folder `under`), by path relative to the prefix.

    Folder markers (keys ending in "/") are left out. The listing is always fresh.
    """
    root = remote.path(under)
    fs.invalidate_cache(root)
    strip = len(remote.path()) + 1
    out: dict[str, RemoteFile] = {}
    for name, info in fs.find(root, detail=True).items():
        if not name.startswith(root + "/") or name.endswith("/") or info.get("type") != "file":
            continue
        rel = name[strip:]
        out[rel] = RemoteFile(rel, int(info["size"]), str(info.get("ETag", "")).strip('"'))
    return out


def is_photo(rel: str) -> bool:
    """True for a photo directly in images/ (the files ODM reads)."""
    p = PurePosixPath(rel)
    return p.parent == PurePosixPath("images") and p.suffix.lower() in PHOTO_EXTENSIONS


def safe_relative(rel: str) -> bool:
    """True when a key's relative path can be mirrored under the project folder (no '..', '.', '')."""
    return not any(p in ("", ".", "..") for p in rel.split("/"))


class SyncIndex:
    """What `local` last synced with the bucket: rel -> remote ETag/size and the local file's stamp."""

    def __init__(self, url: str, entries: dict[str, dict[str, Any]]) -> None:
        self.url = url
        self.entries = entries

    @classmethod
    def load(cls, local: Path, remote: RemoteProject) -> SyncIndex:
        try:
            data = json.loads((local / INDEX).read_text())
            if data.get("url") == remote.url and isinstance(data.get("files"), dict):
                return cls(remote.url, data["files"])
        except (OSError, ValueError, AttributeError):
            pass
        return cls(remote.url, {})

    def up_to_date(self, local: Path, f: RemoteFile) -> bool:
        """True when the local copy of `f` has its content (by the index, else by MD5 = ETag)."""
        path = local / f.rel
        if not path.is_file() or path.stat().st_size != f.size:
            return False
        entry = self.entries.get(f.rel)
        if entry == self._entry(path, f):
            return True
        if f.md5 is not None and f.md5 == _md5(path):
            self.record(local, f)
            return True
        return False

    def record(self, local: Path, f: RemoteFile) -> None:
        self.entries[f.rel] = self._entry(local / f.rel, f)

    @staticmethod
    def _entry(path: Path, f: RemoteFile) -> dict[str, Any]:
        st = path.stat()
        return {"etag": f.etag, "size": f.size, "local_mtime_ns": st.st_mtime_ns}

    def save(self, local: Path, present: dict[str, RemoteFile] | None) -> None:
        """Write the index; with `present` (a full listing), forget files the bucket no longer has."""
        if present is not None:
            self.entries = {k: v for k, v in self.entries.items() if k in present}
        write_json(local / INDEX, {"url": self.url, "files": dict(sorted(self.entries.items()))})


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
