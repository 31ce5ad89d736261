"""Stage fingerprints and manifests: a checkpoint counts only when inputs, options and code all match.

A stage's fingerprint digests (1) the content of its inputs: the photos for `dataset`, the manifests of
the stages it reads for the others, (2) its own options, (3) the code: every source file of odm_core and
the versions of the engines it calls. A stage deletes its manifest before it starts and writes it after
its last output, so a stage killed half-way has no manifest and is run again.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol, TypeVar

from pydantic import BaseModel

from odm_core import __version__
from odm_core.artifacts import (
    DigestCache,
    files_digest,
    manifest_valid,
    outputs_digest,
    read_manifest,
    sha256_file,
    sha256_text,
    write_manifest,
)
from odm_core.layout import ProjectTree
from odm_core.registry import SPECS
from odm_core.split.record import read_split_record
from odm_core.worker import release_freed_memory

ENGINES = (
    "pycolmap",
    "numpy",
    "laspy",
    "pyproj",
    "pillow",
    "opencv-python-headless",
    "open3d",
    "scipy",
    "rasterio",
)
_ROOT = Path(__file__).parent
SUBMODEL_PRODUCTS = ("odm_georeferencing", "odm_dem", "odm_orthophoto")  # the stages whose files merge reads


class StageResult(Protocol):
    """What every stage function returns: a small frozen result naming the files it wrote."""

    @property
    def outputs(self) -> tuple[Path, ...]: ...

    def summary(self) -> list[str]:
        """The lines the run's closing summary shows for this stage."""
        ...


R = TypeVar("R", bound=StageResult)


# Modules whose effect on a stage reaches its fingerprint as values (the options it is given, the stages
# it reads), not as code: editing a help text or a progress weight must not invalidate every checkpoint.
CONFIG_MODULES = frozenset({"odm_core.options", "odm_core.option_specs", "odm_core.registry"})


@functools.cache
def code_digest(stage: str) -> str:
    """Digest of the stage module's source, every odm_core module it imports, and the engine versions.

    Raises ModuleNotFoundError when the registry's module for the stage has no source file.
    """
    return module_code_digest(SPECS[stage].module, _ROOT.parent)


def module_code_digest(module: str, root: Path) -> str:
    """code_digest of `module` as its source stands under `root` (the folder that holds odm_core/)."""
    if not _module_file(module, root).is_file():
        raise ModuleNotFoundError(f"no source file for {module} under {root} (odm_core/registry.py names it)")
    modules = _module_closure(module, root) | {"odm_core.checkpoint"}
    parts = [__version__] + [f"{m}={sha256_file(_module_file(m, root))}" for m in sorted(modules)]
    parts += [f"{e}={importlib.metadata.version(e)}" for e in ENGINES]
    return sha256_text(*parts)


def _module_file(module: str, root: Path = _ROOT.parent) -> Path:
    base = root.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def _module_closure(module: str, root: Path = _ROOT.parent) -> set[str]:
    """odm_core modules that `module` imports, directly or not (read from the source with ast), less the
    CONFIG_MODULES."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen or name in CONFIG_MODULES or not _module_file(name, root).exists():
            continue
        seen.add(name)
        tree = ast.parse(_module_file(name, root).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("odm_core"):
                todo.append(node.module)
                todo += [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                todo += [a.name for a in node.names if a.name.startswith("odm_core")]
    return seen


def photo_files(tree: ProjectTree) -> list[Path]:
    """Every file in images/ (photos and masks) plus gcp_list.txt, geo.txt and image_groups.txt: what the
    stages that read photos are keyed on."""
    files = [p for p in tree.images.iterdir() if p.is_file()] if tree.images.is_dir() else []
    return files + [f for f in (tree.gcp_list, tree.geo_txt, tree.image_groups_txt) if f.is_file()]


def stage_inputs(stage: str, options: BaseModel) -> tuple[str, ...]:
    """The stages whose outputs `stage` reads under these options (no dense cloud with --fast-orthophoto)."""
    inputs: tuple[str, ...] = SPECS[stage].inputs
    if getattr(options, "fast_orthophoto", False):
        return tuple(s for s in inputs if s != "openmvs")
    return inputs


def fingerprint(stage: str, tree: ProjectTree, options: BaseModel, cache: DigestCache) -> str:
    """The fingerprint a valid checkpoint of `stage` must carry."""
    inputs = [outputs_digest(tree.manifest(s)) for s in stage_inputs(stage, options)]
    if SPECS[stage].reads_photos:
        inputs.append(files_digest(photo_files(tree), tree.root, cache))
    if SPECS[stage].reads_submodels:
        inputs += submodel_products(tree)
    return sha256_text(stage, code_digest(stage), type(options).__name__, options.model_dump_json(), *inputs)


def submodel_products(tree: ProjectTree) -> list[str]:
    """What a stage that reads submodels (merge) reads besides its input stages: each submodel's
    (split.json names them) last stages' outputs, as their manifests record them ("missing" for a submodel
    not finished)."""
    record = read_split_record(tree.split_json)
    if record is None:
        return []
    digests = []
    for name in record.names:
        sub = ProjectTree(tree.submodel(name))
        for stage in SUBMODEL_PRODUCTS:
            manifest = sub.manifest(stage)
            digest = outputs_digest(manifest) if manifest.is_file() else "missing"
            digests.append(f"{name}/{stage}={digest}")
    return digests


def is_complete(stage: str, tree: ProjectTree, fp: str, cache: DigestCache) -> bool:
    """True when the stage's manifest carries `fp` and its outputs still hold the recorded content."""
    return manifest_valid(tree.manifest(stage), fp, tree.root, cache)


def finished_at(stage: str, tree: ProjectTree) -> float:
    """When the stage's current outputs were finished (seconds since the epoch; 0 without a manifest)."""
    data = read_manifest(tree.manifest(stage))
    return float(data.get("finished_at", 0.0)) if data else 0.0


def run_stage(stage: str, tree: ProjectTree, fp: str, work: Callable[[], R]) -> R:
    """Run a stage's work with its manifest removed during the run and written after it."""
    manifest = tree.manifest(stage)
    manifest.unlink(missing_ok=True)
    remove_partial_files(tree)
    started = time.monotonic()
    try:
        result = work()
    finally:
        release_freed_memory()  # the next stage starts from what this process really holds
    write_manifest(manifest, stage, fp, _unique(result.outputs), tree.root, time.monotonic() - started)
    return result


def stage_seconds(stage: str, tree: ProjectTree) -> float | None:
    """How long the stage's current outputs took to make (None without a manifest or a record)."""
    data = read_manifest(tree.manifest(stage))
    seconds = data.get("seconds") if data else None
    return float(seconds) if seconds is not None else None


def remove_partial_files(tree: ProjectTree) -> None:
    """Delete temporary files that a killed run left beside their targets (never inside images/)."""
    for path in tree.root.rglob("*.part"):
        if tree.images in path.parents:
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _unique(paths: Iterable[Path]) -> list[Path]:
    return sorted(set(paths))
