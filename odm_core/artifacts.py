"""Atomic writes, content digests and stage manifests (what makes a checkpoint trustworthy)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; finished files get the usual mode
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; it replaces `path` (and all it held) only if the block
    succeeds. Both temporaries end in .part, so a killed run's leftovers are cleaned up."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_UMASK)
    old = tmp.with_name(tmp.name[: -len(".part")] + ".old.part")
    try:
        yield tmp
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def write_text(path: Path, text: str) -> Path:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_plan(path: Path, plan: Any) -> str:
    """Pickle a stage's plan for its nested flow, which gets the path: Prefect stores a flow run's
    parameters in its API, and refuses more than 512 KiB (a dense plan is about 19 KiB per photo)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(pickle.dumps(plan, protocol=pickle.HIGHEST_PROTOCOL))
    return str(path)


def read_plan(path: str) -> Any:
    """A plan write_plan wrote (odmflow's own file, from this run)."""
    return pickle.loads(Path(path).read_bytes())


def write_json(path: Path, data: Any) -> Path:
    """Write JSON atomically (indented, keys in insertion order)."""
    return write_text(path, json.dumps(data, indent=2) + "\n")


def sha256_file(path: Path) -> str:
    """SHA-256 of a file's content."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_text(*parts: str) -> str:
    """SHA-256 of strings joined with a separator that cannot occur in hex digests."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


class DigestCache:
    """Content digests of files, recomputed only when a file's size, mtime or inode changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: dict[str, list[Any]] = {}
        if path.exists():
            with contextlib.suppress(ValueError, OSError):
                self._entries = json.loads(path.read_text())
        self._dirty = False

    def digest(self, file: Path) -> str:
        st = file.stat()
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        key = str(file.resolve())
        hit = self._entries.get(key)
        if hit and hit[:3] == stamp:
            return str(hit[3])
        value = sha256_file(file)
        self._entries[key] = [*stamp, value]
        self._dirty = True
        return value

    def save(self) -> None:
        if self._dirty:
            write_json(self.path, self._entries)
            self._dirty = False


def files_digest(files: Iterable[Path], root: Path, cache: DigestCache) -> str:
    """One digest over the names (relative to root) and contents of files."""
    parts = [f"{f.relative_to(root).as_posix()}={cache.digest(f)}" for f in sorted(files)]
    return sha256_text(*parts)


def write_manifest(
    path: Path,
    stage: str,
    fingerprint: str,
    outputs: Iterable[Path],
    root: Path,
    seconds: float | None = None,
) -> Path:
    """Record a finished stage: its fingerprint, how long it ran (s) and the digest of each output file
    (written last)."""
    entries = {
        o.relative_to(root).as_posix(): {"sha256": sha256_file(o), "size": o.stat().st_size}
        for o in sorted(outputs)
    }
    record = {"stage": stage, "fingerprint": fingerprint, "finished_at": time.time(), "seconds": seconds}
    return write_json(path, record | {"outputs": entries})


def read_manifest(path: Path) -> dict[str, Any] | None:
    """A stage manifest, or None when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "fingerprint" in data else None


def manifest_valid(path: Path, fingerprint: str, root: Path, cache: DigestCache) -> bool:
    """True when the manifest matches `fingerprint` and every output still has its recorded content."""
    data = read_manifest(path)
    if data is None or data["fingerprint"] != fingerprint:
        return False
    return changed_output(data, root, cache.digest) is None


def changed_output(
    manifest: dict[str, Any], root: Path, digest: Callable[[Path], str] = sha256_file
) -> str | None:
    """The first output a manifest (read_manifest's) records that is not under `root` with its recorded
    size and sha256 (`digest`: sha256_file, or a DigestCache's), relative to root; None when all are."""
    for rel, entry in manifest["outputs"].items():
        f = root / rel
        if not f.is_file() or f.stat().st_size != entry["size"] or digest(f) != entry["sha256"]:
            return str(rel)
    return None


def outputs_digest(path: Path) -> str:
    """Digest of a finished stage's outputs as its manifest records them (the next stage's input key)."""
    data = read_manifest(path)
    if data is None:
        raise FileNotFoundError(f"stage manifest {path} is missing: run the stage first")
    return sha256_text(json.dumps(data["outputs"], sort_keys=True))


def unit_checkpoint_valid(path: Path, key: str) -> bool:
    """True when a unit output exists with a sidecar naming `key` and the content the sidecar records."""
    sidecar = path.with_name(path.name + ".json")
    try:
        meta = json.loads(sidecar.read_text())
        return meta.get("key") == key and path.is_file() and sha256_file(path) == meta.get("sha256")
    except (OSError, ValueError):
        return False


def unit_checkpoint_record(path: Path) -> str:
    """The text of a unit output's sidecar (its key and digest), or the path when it has none: what a
    later unit reading this output puts in its own key."""
    sidecar = path.with_name(path.name + ".json")
    return sidecar.read_text() if sidecar.is_file() else str(path)


def remove_stale_units(folder: Path, suffix: str, wanted: Iterable[str | Path]) -> None:
    """Delete the unit outputs `*<suffix>` in folder, and their sidecars, that are not among `wanted`."""
    names = {Path(w).name for w in wanted}
    for stale in folder.glob(f"*{suffix}*"):
        if stale.name.removesuffix(".json") not in names:
            stale.unlink()


def write_unit_checkpoint(path: Path, key: str, write: Any) -> Path:
    """Write one unit's output atomically with `write(file_object)`, then its sidecar (key and digest)."""
    sidecar = path.with_name(path.name + ".json")
    sidecar.unlink(missing_ok=True)
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        write(f)
    write_json(sidecar, {"key": key, "sha256": sha256_file(path)})
    return path
