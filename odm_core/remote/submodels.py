"""A split bucket project's submodels kept in the bucket, so that workers on other machines run them.

The split stage writes each submodel locally, its photos linked from the parent's images/. For workers
that share no disk with the split run, `publish_submodels` gives every submodel prefix
(PREFIX/submodels/NAME/) its own images/: server-side copies of the parent's photos (S3 CopyObject: no
photo passes through this machine; the parent's photos are only read). The submodel's other inputs
(options, its share of the model) are the split stage's outputs, which the flow pushes like any stage's.
A submodel's run then pulls its prefix onto its worker and pushes each stage back. `pull_submodel_products`
brings the files the merge reads (the outputs of SUBMODEL_PRODUCTS, manifests last) back to the split
run's machine.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

import s3fs

from odm_core.checkpoint import SUBMODEL_PRODUCTS
from odm_core.errors import OdmStageError
from odm_core.layout import ProjectTree
from odm_core.remote.fs import RemoteFile, RemoteProject, SyncIndex, list_files, remote_errors, safe_relative
from odm_core.remote.sync import download_files
from odm_core.split.record import photos_and_masks, read_split_record

log = logging.getLogger(__name__)


def submodel_prefix(name: str) -> str:
    """A submodel's folder relative to its parent project (ProjectTree.submodel's)."""
    return ProjectTree(Path(".")).submodel(name).as_posix()


def publish_submodels(remote: RemoteProject, local: Path, names: Iterable[str], fs: s3fs.S3FileSystem) -> int:
    """Copy, inside the bucket, each submodel's photos (split.json's, and their masks) from PREFIX/images/
    to PREFIX/submodels/NAME/images/, skipping copies already there with the same content, and delete
    copies of photos the submodel no longer has. Returns the number copied. Raises OdmStageError when a
    photo the submodel needs is not in the bucket's images/."""
    tree = ProjectTree(local)
    record = read_split_record(tree.split_json)
    if record is None:
        raise OdmStageError(f"{tree.split_json} is missing: the split stage did not record its submodels")
    photos = {s.name: s.photos for s in record.submodels}
    with remote_errors(remote):
        sources = list_files(fs, remote, "images")
        copied = 0
        for name in names:
            wanted = photos_and_masks(tree.images, photos[name])
            copied += _publish_one(remote, name, wanted, sources, fs)
    return copied


def _publish_one(
    remote: RemoteProject, name: str, wanted: set[str], sources: dict[str, RemoteFile], fs: s3fs.S3FileSystem
) -> int:
    """One submodel's photo copies (`wanted`: file names in the parent's images/); how many copied."""
    images = f"{submodel_prefix(name)}/images"
    present = list_files(fs, remote, images)
    todo: list[tuple[str, str]] = []
    for photo in sorted(wanted):
        source = sources.get(f"images/{photo}")
        if source is None:
            raise OdmStageError(
                f"{remote.address('images/' + photo)} is missing: submodel {name} needs it; put the photo "
                "back in the bucket and run the project again"
            )
        copy = present.get(f"{images}/{photo}")
        if copy is None or (copy.size, copy.etag) != (source.size, source.etag):
            todo.append((remote.path(source.rel), remote.path(f"{images}/{photo}")))
    stale = [remote.path(rel) for rel in present if rel.rsplit("/", 1)[-1] not in wanted]
    for path in stale:  # one key at a time: fs.rm and fs.copy would read [, * and ? in names as globs
        fs.rm_file(path)
    for source_path, target_path in todo:
        fs.cp_file(source_path, target_path)
    log.info("submodel %s: %d photos copied in the bucket, %d removed", name, len(todo), len(stale))
    return len(todo)


def pull_submodel_products(
    remote: RemoteProject, local: Path, names: Iterable[str], fs: s3fs.S3FileSystem
) -> int:
    """Download into `local`/submodels/NAME/ the outputs and manifests of each submodel's
    SUBMODEL_PRODUCTS stages (what merge reads), skipping files already here with the same content;
    manifests last, so a manifest never names a file not yet downloaded (a stage with no manifest in the
    bucket, one the submodel's options skip, is left out). Returns the number downloaded. Raises
    OdmStageError naming a submodel whose manifest names a file the bucket lacks."""
    index = SyncIndex.load(local, remote)
    wanted: dict[str, RemoteFile] = {}
    manifests: dict[str, RemoteFile] = {}
    with remote_errors(remote):
        for name in names:
            files = list_files(fs, remote, submodel_prefix(name))
            for stage in SUBMODEL_PRODUCTS:
                manifest = ProjectTree(Path(submodel_prefix(name))).manifest(stage).as_posix()
                if manifest not in files:  # a stage its options skip (merge reads what there is)
                    continue
                manifests[manifest] = files[manifest]
                for rel in _outputs(fs, remote, name, manifest):
                    if rel not in files:
                        raise OdmStageError(f"submodel {name}: {remote.address(rel)} is missing; run again")
                    wanted[rel] = files[rel]
        todo = [f for f in [*wanted.values(), *manifests.values()] if not index.up_to_date(local, f)]
        outputs = [f for f in todo if f.rel not in manifests]
        for batch in (outputs, [f for f in todo if f.rel in manifests]):
            if batch:
                download_files(fs, remote, local, batch)
                for f in batch:
                    index.record(local, f)
                index.save(local, None)
    log.info(
        "pulled the submodels' products: %d downloaded, %d up to date",
        len(todo),
        len(wanted) + len(manifests) - len(todo),
    )
    return len(todo)


def _outputs(fs: s3fs.S3FileSystem, remote: RemoteProject, name: str, manifest: str) -> list[str]:
    """The files a submodel's manifest in the bucket names, relative to the parent project."""
    data = json.loads(fs.cat_file(remote.path(manifest)))
    rels = [f"{submodel_prefix(name)}/{rel}" for rel in data.get("outputs", [])]
    return [rel for rel in rels if safe_relative(rel)]
