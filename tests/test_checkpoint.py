"""Checkpoints: atomic writes, content digests, manifests that catch damaged or half-written outputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from odm_core import checkpoint
from odm_core.artifacts import DigestCache, atomic_path, manifest_valid, write_manifest, write_text
from odm_core.layout import ProjectTree
from odm_core.options import DatasetOptions, OpensfmOptions


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_atomic_write_mode_follows_umask(tmp_path: Path) -> None:
    path = write_text(tmp_path / "a.txt", "x")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_digest_cache_sees_content_changes(tmp_path: Path) -> None:
    f = tmp_path / "a.bin"
    f.write_bytes(b"one")
    cache = DigestCache(tmp_path / "digests.json")
    first = cache.digest(f)
    f.write_bytes(b"two")  # same size: the mtime/inode stamp must still catch it
    assert cache.digest(f) != first
    cache.save()
    assert DigestCache(tmp_path / "digests.json").digest(f) == cache.digest(f)


def test_manifest_rejects_changed_missing_or_other_fingerprint(tmp_path: Path) -> None:
    out = tmp_path / "stage" / "result.txt"
    write_text(out, "result")
    manifest = tmp_path / "m.json"
    write_manifest(manifest, "stage", "fp1", [out], tmp_path)
    cache = DigestCache(tmp_path / "d.json")
    assert manifest_valid(manifest, "fp1", tmp_path, cache)
    assert not manifest_valid(manifest, "fp2", tmp_path, cache)
    out.write_text("resulT")  # same size, different content
    assert not manifest_valid(manifest, "fp1", tmp_path, cache)
    out.unlink()
    assert not manifest_valid(manifest, "fp1", tmp_path, cache)
    manifest.write_text("{ half a manif")
    assert not manifest_valid(manifest, "fp1", tmp_path, cache)


def _project(tmp_path: Path) -> ProjectTree:
    tree = ProjectTree(tmp_path / "p")
    tree.images.mkdir(parents=True)
    (tree.images / "a.jpg").write_bytes(b"photo a")
    return tree


def test_dataset_fingerprint_follows_photo_content_and_options(tmp_path: Path) -> None:
    tree = _project(tmp_path)
    cache = DigestCache(tree.digest_cache)
    fp = checkpoint.fingerprint("dataset", tree, DatasetOptions(), cache)
    assert checkpoint.fingerprint("dataset", tree, DatasetOptions(), cache) == fp
    assert checkpoint.fingerprint("dataset", tree, DatasetOptions(gps_accuracy=5), cache) != fp
    (tree.images / "a.jpg").write_bytes(b"photo A")  # same path, new content
    assert checkpoint.fingerprint("dataset", tree, DatasetOptions(), cache) != fp


def test_fingerprint_does_not_depend_on_project_location(tmp_path: Path) -> None:
    tree = _project(tmp_path)
    moved = ProjectTree(tmp_path / "moved")
    tree.root.rename(moved.root)
    fp_moved = checkpoint.fingerprint("dataset", moved, DatasetOptions(), DigestCache(moved.digest_cache))
    tree2 = _project(tmp_path)
    fp = checkpoint.fingerprint("dataset", tree2, DatasetOptions(), DigestCache(tree2.digest_cache))
    assert fp == fp_moved


def test_downstream_fingerprint_follows_upstream_outputs(tmp_path: Path) -> None:
    tree = _project(tmp_path)
    out = tree.images_json
    write_text(out, "[1]")
    write_manifest(tree.manifest("dataset"), "dataset", "x", [out], tree.root)
    cache = DigestCache(tree.digest_cache)
    fp = checkpoint.fingerprint("opensfm", tree, OpensfmOptions(), cache)
    assert checkpoint.fingerprint("opensfm", tree, OpensfmOptions(min_num_features=8000), cache) != fp
    write_text(out, "[2]")
    write_manifest(tree.manifest("dataset"), "dataset", "x", [out], tree.root)
    assert checkpoint.fingerprint("opensfm", tree, OpensfmOptions(), cache) != fp


def test_run_stage_leaves_no_manifest_when_the_stage_dies(tmp_path: Path) -> None:
    tree = _project(tmp_path)
    write_text(tree.manifest("opensfm"), '{"fingerprint": "old", "outputs": {}}')

    def crash() -> checkpoint.StageResult:
        raise RuntimeError("SIGKILL stand-in")

    with pytest.raises(RuntimeError):
        checkpoint.run_stage("opensfm", tree, "new", crash)
    assert not tree.manifest("opensfm").exists()


def test_code_digest_covers_imported_modules_only() -> None:
    modules = checkpoint._module_closure("odm_core.stages.odm_report")
    assert "odm_core.geo.georef" in modules and "odm_core.stages.opensfm" not in modules
    assert checkpoint.code_digest("opensfm") != checkpoint.code_digest("odm_report")


def test_partial_files_are_cleaned_but_never_in_images(tmp_path: Path) -> None:
    tree = _project(tmp_path)
    stale = tree.opensfm / ".reconstruction.json.x1.part"
    write_text(tree.opensfm / "keep.json", "{}")
    stale.write_text("half")
    user = tree.images / "photo.part"
    user.write_text("the user's file")
    checkpoint.remove_partial_files(tree)
    assert not stale.exists() and user.exists() and (tree.opensfm / "keep.json").exists()


def test_merge_fingerprint_follows_the_submodels_products(tmp_path: Path) -> None:
    """The merge stage reads the submodels' products: a submodel run again with another result, or not
    finished, changes its fingerprint (its input stages alone would not)."""
    tree = ProjectTree(tmp_path)
    sub0 = {"name": "submodel_0000", "photos": ["a.jpg"], "core": ["a.jpg"], "core_xy_m": [[0.0, 0.0]]}
    write_text(tree.split_json, json.dumps({"epsg": 32632, "submodels": [sub0]}))
    sub = ProjectTree(tree.submodel("submodel_0000"))
    missing = checkpoint.submodel_products(tree)
    assert missing == [f"submodel_0000/{s}=missing" for s in checkpoint.SUBMODEL_PRODUCTS]
    ortho = write_text(sub.orthophoto_tif, "one")
    write_manifest(sub.manifest("odm_orthophoto"), "odm_orthophoto", "fp", [ortho], sub.root)
    first = checkpoint.submodel_products(tree)
    write_text(sub.orthophoto_tif, "two")
    write_manifest(sub.manifest("odm_orthophoto"), "odm_orthophoto", "fp", [ortho], sub.root)
    assert len({tuple(missing), tuple(first), tuple(checkpoint.submodel_products(tree))}) == 3
    tree.split_json.unlink()
    assert checkpoint.submodel_products(tree) == []  # a survey not split: the merge reads nothing more
