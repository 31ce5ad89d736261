"""Uploaded files on disk: safe names, unique names, seed.zip, and where each kind of file goes.

Nothing a client sends can leave its task's folder: a file keeps its base name only (a name with a folder
part, `..` or a NUL is refused), files are created new (O_EXCL) without following links, and seed.zip is
refused when a member is absolute, climbs with `..`, is a link, or lands in a hidden top folder
(`.odmflow/`: checkpoints and pickled task results a run would load; `.node/`: the task's record).
"""

from __future__ import annotations

import os
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

SEED = "seed.zip"
MAX_NAME_BYTES = 255


class UploadError(Exception):
    """A request the node refuses; `no_retry` tells pyodm not to send it again."""

    def __init__(self, message: str, no_retry: bool = True) -> None:
        super().__init__(message)
        self.no_retry = no_retry

    def reply(self) -> dict[str, object]:
        return {"error": str(self), **({"noRetry": True} if self.no_retry else {})}


class Budget:
    """The bytes a task's uploads may still take, shared by its concurrent upload requests."""

    def __init__(self, limit: int, used: int = 0) -> None:
        self.limit, self.used = limit, used

    def take(self, n: int) -> None:
        if self.used + n > self.limit:
            raise UploadError(
                f"Upload too large: a task's files may hold at most {self.limit} bytes on this node"
            )
        self.used += n

    def give(self, n: int) -> None:
        self.used = max(0, self.used - n)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file() and not p.is_symlink())


def safe_name(name: str) -> str:
    """A file's name as uploaded, if it is a plain base name; UploadError otherwise."""
    bad = not name or name in (".", "..") or any(c in name for c in "/\\\0")
    if bad or len(name.encode()) > MAX_NAME_BYTES:
        raise UploadError(f"Invalid file name {name!r}: send the file's base name only")
    return name


def unique_path(folder: Path, name: str) -> Path:
    """Where an upload goes: its name, `_` before the extension while taken (NodeODM's rule)."""
    if name == "body.json":
        name = "_body.json"
    target = folder / name
    while target.exists() or target.is_symlink():
        target = target.with_name(f"{target.stem}_{target.suffix}")
    return target


def create_new(folder: Path, name: str) -> tuple[Path, int]:
    """A new file for an upload named `name` in `folder` (NodeODM's renaming while taken) and its open
    descriptor: never an existing file, never through a link, even when two requests race for a name."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    while True:
        target = unique_path(folder, name)
        try:
            return target, os.open(target, flags, 0o644)
        except FileExistsError:
            continue


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "is an absolute path"
    if ".." in parts:
        return "climbs out with '..'"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "is a link"
    if parts and parts[0].startswith("."):  # .odmflow/ holds pickled Prefect results, .node/ the task
        return "writes odmflow's or the node's own state"
    return None


def is_seed(name: str) -> bool:
    """Whether an uploaded file is a seed.zip, as route_inputs() extracts it (any case: SEED.ZIP too)."""
    return name.lower() == SEED


def check_seeds(folder: Path, names: list[str], max_bytes: int) -> None:
    """check_seed() on every seed among the uploads of `folder`; together they must fit max_bytes too."""
    seeds = [folder / name for name in names if is_seed(name)]
    for path in seeds:
        check_seed(path, max_bytes)
    if sum(seed_bytes(path) for path in seeds) > max_bytes:
        raise UploadError(f"{SEED} files hold more than this node's upload limit of {max_bytes} bytes")


def seed_bytes(path: Path) -> int:
    """The unpacked size of a checked seed.zip."""
    with zipfile.ZipFile(path) as zf:
        return sum(i.file_size for i in zf.infolist())


def check_seed(path: Path, max_bytes: int) -> None:
    """Refuse a seed.zip that is not a zip, would write outside the task folder, or is too large."""
    try:
        with zipfile.ZipFile(path) as zf:
            members = zf.infolist()
    except (zipfile.BadZipFile, OSError) as err:
        raise UploadError(f"{SEED} is not a readable zip file ({err})") from None
    for info in members:
        if problem := _member_problem(info):
            raise UploadError(f"{SEED}: member {info.filename!r} {problem}; refused")
    if sum(i.file_size for i in members) > max_bytes:
        raise UploadError(f"{SEED} holds more than this node's upload limit of {max_bytes} bytes")


def extract_seed(path: Path, root: Path) -> int:
    """Extract a checked seed.zip into the project, paths kept (NodeODM's rule); the files written."""
    written = 0
    base = root.resolve()
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            target = (base / info.filename.replace("\\", "/")).resolve()
            if problem := _member_problem(info) or (None if target.is_relative_to(base) else "escapes"):
                raise UploadError(f"{SEED}: member {info.filename!r} {problem}; refused")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink():
                target.unlink()
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            written += 1
    return written


def route_inputs(tmp: Path, root: Path) -> list[str]:
    """Move a task's uploads into its project, as NodeODM sorts them; returns what it did, as lines.

    geo.txt is the project's geo.txt (`--geo`); image_groups.txt is the project's (one submodel per group,
    as --split-image-groups in ODM); the first other .txt is the project's gcp_list.txt (`--gcp`); further
    .txt files and align.* go to gcp/ unused; seed.zip is extracted into the project; other zips are
    deleted; everything else is a photo (or mask) in images/.
    """
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    files = sorted(p for p in tmp.iterdir() if p.is_file() and not p.is_symlink() and p.name != "body.json")
    gcp_taken = False
    for f in files:
        lower = f.name.lower()
        if lower == "geo.txt" or lower == "image_groups.txt":
            os.replace(f, root / lower)
            lines.append(f"{f.name}: used as the project's {lower}")
        elif lower.endswith(".txt") and not gcp_taken:
            os.replace(f, root / "gcp_list.txt")
            gcp_taken = True
            lines.append(f"{f.name}: used as the ground control points (gcp_list.txt)")
        elif lower.endswith(".txt") or lower.startswith("align."):
            (root / "gcp").mkdir(exist_ok=True)
            os.replace(f, root / "gcp" / f.name)
            lines.append(f"{f.name}: kept in gcp/, not used")
        elif is_seed(f.name):
            count = extract_seed(f, root)
            f.unlink()
            lines.append(f"{SEED}: {count} files extracted into the project")
        elif lower.endswith(".zip"):
            f.unlink()
        else:
            os.replace(f, images / f.name)
    return lines
