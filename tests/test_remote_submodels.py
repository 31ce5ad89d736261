"""A split bucket project's submodels in the bucket, against a real moto server: the photos copied
server-side into each submodel's prefix, and the merge's inputs brought back (odm_core.remote.submodels)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import s3fs

from odm_core.artifacts import write_manifest
from odm_core.errors import OdmStageError
from odm_core.layout import ProjectTree
from odm_core.remote.fs import RemoteFile
from odm_core.remote.submodels import publish_submodels, pull_submodel_products
from odm_core.remote.sync import parse_remote, pull_project, submodel_run_file
from tests import test_remote
from tests.test_remote import BUCKET, make_project, upload_tree

aws_env = test_remote.aws_env  # the fixtures: moto's endpoint and credentials, an empty bucket
fs = test_remote.fs

URL = f"s3://{BUCKET}/site-a"


def _split_locally(root: Path, photos: dict[str, list[str]]) -> None:
    """What the split stage records: split.json naming each submodel's photos (no photo links: a parent
    resumed on another worker has none)."""
    tree = ProjectTree(root)
    tree.split_json.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "epsg": 32632,
        "submodels": [
            {"name": name, "photos": names, "core": names, "core_xy_m": [[0.0, 0.0]] * len(names)}
            for name, names in photos.items()
        ],
    }
    tree.split_json.write_text(json.dumps(record))


def _etags(fs: s3fs.S3FileSystem, path: str) -> dict[str, str]:
    fs.invalidate_cache()
    return {k.rsplit("/", 1)[-1]: str(v["ETag"]) for k, v in fs.find(path, detail=True).items()}


def test_publish_copies_each_submodels_photos_in_the_bucket_once(
    fs: s3fs.S3FileSystem,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = make_project(tmp_path / "site-a")
    remote = parse_remote(URL)
    upload_tree(fs, root, remote)
    parent = _etags(fs, f"{BUCKET}/site-a/images")
    _split_locally(
        root, {"submodel_0000": ["DJI_0001.JPG", "DJI_0002.jpg"], "submodel_0001": ["DJI_0003.tif"]}
    )
    uploads: list[str] = []
    monkeypatch.setattr(fs, "put", lambda *a, **k: uploads.append(str(a)))  # nothing goes through here

    assert publish_submodels(remote, root, ["submodel_0000", "submodel_0001"], fs) == 3
    first = _etags(fs, f"{BUCKET}/site-a/submodels/submodel_0000/images")
    assert first == {n: parent[n] for n in ("DJI_0001.JPG", "DJI_0002.jpg")}
    assert _etags(fs, f"{BUCKET}/site-a/submodels/submodel_0001/images") == {
        "DJI_0003.tif": parent["DJI_0003.tif"]
    }
    assert publish_submodels(remote, root, ["submodel_0000", "submodel_0001"], fs) == 0  # already there
    assert not uploads
    assert _etags(fs, f"{BUCKET}/site-a/images") == parent  # the user's photos untouched

    # a later split moves a photo out of submodel_0000: its copy goes
    _split_locally(root, {"submodel_0000": ["DJI_0001.JPG"], "submodel_0001": ["DJI_0003.tif"]})
    assert publish_submodels(remote, root, ["submodel_0000"], fs) == 0
    assert set(_etags(fs, f"{BUCKET}/site-a/submodels/submodel_0000/images")) == {"DJI_0001.JPG"}


def test_publish_names_a_photo_missing_from_the_bucket(fs: s3fs.S3FileSystem, tmp_path: Path) -> None:
    root = make_project(tmp_path / "site-a")
    remote = parse_remote(URL)
    upload_tree(fs, root, remote)
    fs.rm(f"{BUCKET}/site-a/images/DJI_0002.jpg")
    _split_locally(root, {"submodel_0000": ["DJI_0001.JPG", "DJI_0002.jpg"]})
    with pytest.raises(OdmStageError, match=r"images/DJI_0002\.jpg is missing: submodel submodel_0000"):
        publish_submodels(remote, root, ["submodel_0000"], fs)


def _finished_submodel(root: Path) -> None:
    """A submodel as its worker leaves it: an orthophoto stage finished (manifest and output), a dense
    stage's files the merge does not read, no DEM stage (its options skip it)."""
    tree = ProjectTree(root)
    ortho = root / "odm_orthophoto" / "odm_orthophoto.tif"
    dense = root / "openmvs" / "scene_dense.ply"
    for path, content in ((ortho, b"ortho"), (dense, b"dense")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    write_manifest(tree.manifest("odm_orthophoto"), "odm_orthophoto", "fp", [ortho], root)
    write_manifest(tree.manifest("openmvs"), "openmvs", "fp", [dense], root)


def test_pull_brings_back_only_what_merge_reads(fs: s3fs.S3FileSystem, tmp_path: Path) -> None:
    remote = parse_remote(URL)
    worker_disk = tmp_path / "worker" / "submodel_0000"
    _finished_submodel(worker_disk)
    upload_tree(fs, worker_disk, parse_remote(f"{URL}/submodels/submodel_0000"))
    parent = tmp_path / "parent"
    assert pull_submodel_products(remote, parent, ["submodel_0000"], fs) == 2
    sub = ProjectTree(parent / "submodels" / "submodel_0000")
    assert (sub.root / "odm_orthophoto" / "odm_orthophoto.tif").read_bytes() == b"ortho"
    assert (
        sub.manifest("odm_orthophoto").read_bytes()
        == ProjectTree(worker_disk).manifest("odm_orthophoto").read_bytes()
    )
    assert not (sub.root / "openmvs").exists() and not sub.manifest("openmvs").exists()
    assert pull_submodel_products(remote, parent, ["submodel_0000"], fs) == 0  # already here


def test_a_parents_pull_keeps_what_the_products_pull_recorded(
    fs: s3fs.S3FileSystem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The split run pulls its own project when it resumes: the products it pulled before stay known, so
    files whose ETag is not an MD5 (multipart uploads: no content check possible) are not downloaded
    again."""
    root = make_project(tmp_path / "site-a")
    remote = parse_remote(URL)
    upload_tree(fs, root, remote)
    worker_disk = tmp_path / "worker" / "submodel_0000"
    _finished_submodel(worker_disk)
    upload_tree(fs, worker_disk, parse_remote(f"{URL}/submodels/submodel_0000"))
    parent = pull_project(remote, tmp_path / "parent", fs)
    assert pull_submodel_products(remote, parent, ["submodel_0000"], fs) == 2
    pull_project(remote, parent, fs)  # the run resumed
    monkeypatch.setattr(RemoteFile, "md5", property(lambda self: None))  # as for multipart ETags
    assert pull_submodel_products(remote, parent, ["submodel_0000"], fs) == 0


def test_pull_refuses_a_manifest_whose_output_is_not_in_the_bucket(
    fs: s3fs.S3FileSystem, tmp_path: Path
) -> None:
    remote = parse_remote(URL)
    worker_disk = tmp_path / "worker" / "submodel_0000"
    _finished_submodel(worker_disk)
    upload_tree(fs, worker_disk, parse_remote(f"{URL}/submodels/submodel_0000"))
    fs.rm(f"{BUCKET}/site-a/submodels/submodel_0000/odm_orthophoto/odm_orthophoto.tif")
    with pytest.raises(OdmStageError, match="submodel_0000.*odm_orthophoto.tif is missing"):
        pull_submodel_products(remote, tmp_path / "parent", ["submodel_0000"], fs)
    assert (
        not ProjectTree(tmp_path / "parent" / "submodels" / "submodel_0000")
        .manifest("odm_orthophoto")
        .exists()
    )


@pytest.mark.parametrize(
    ("rel", "left_in_the_bucket"),
    [
        ("submodels/submodel_0000/openmvs/scene_dense.ply", True),
        ("submodels/submodel_0000/images/DJI_0001.JPG", True),
        ("submodels/submodel_0012/.odmflow/manifests/odm_orthophoto.json", True),
        ("submodels/submodel_0000/submodel_options.json", False),
        ("submodels/submodel_0000/split_seed/points3D.bin", False),
        ("submodels/split.json", False),
        ("submodels/opensfm/clusters_with_neighbors.geojson", False),
        ("odm_orthophoto/odm_orthophoto.tif", False),
    ],
)
def test_a_parents_pull_leaves_its_submodels_own_files_in_the_bucket(
    rel: str, left_in_the_bucket: bool
) -> None:
    assert submodel_run_file(rel) is left_in_the_bucket


def test_pulling_a_split_parent_skips_the_submodels_runs(fs: s3fs.S3FileSystem, tmp_path: Path) -> None:
    root = make_project(tmp_path / "site-a")
    remote = parse_remote(URL)
    upload_tree(fs, root, remote)
    _finished_submodel(tmp_path / "worker" / "submodel_0000")
    upload_tree(fs, tmp_path / "worker" / "submodel_0000", parse_remote(f"{URL}/submodels/submodel_0000"))
    fs.pipe(f"{BUCKET}/site-a/submodels/submodel_0000/submodel_options.json", b"{}")
    pulled = pull_project(remote, tmp_path / "elsewhere", fs)
    assert (pulled / "submodels" / "submodel_0000" / "submodel_options.json").read_bytes() == b"{}"
    assert not (pulled / "submodels" / "submodel_0000" / "odm_orthophoto").exists()
    assert (pulled / "images" / "DJI_0001.JPG").is_file()


def test_publish_copies_names_with_glob_characters_as_they_are(fs: s3fs.S3FileSystem, tmp_path: Path) -> None:
    """A photo named DJI_0001[1].JPG is copied as itself (not as a pattern matching DJI_00011.JPG), and a
    stale copy with such a name is deleted alone."""
    root = make_project(tmp_path / "site-a")
    (ProjectTree(root).images / "DJI_0001[1].JPG").write_bytes(b"bracketed")
    (ProjectTree(root).images / "DJI_00011.JPG").write_bytes(b"plain")
    remote = parse_remote(URL)
    upload_tree(fs, root, remote)
    _split_locally(root, {"submodel_0000": ["DJI_0001[1].JPG", "DJI_00011.JPG"]})
    assert publish_submodels(remote, root, ["submodel_0000"], fs) == 2
    copies = f"{BUCKET}/site-a/submodels/submodel_0000/images"
    assert fs.cat_file(f"{copies}/DJI_0001[1].JPG") == b"bracketed"
    _split_locally(root, {"submodel_0000": ["DJI_00011.JPG"]})
    publish_submodels(remote, root, ["submodel_0000"], fs)
    assert set(_etags(fs, copies)) == {"DJI_00011.JPG"}
    assert fs.cat_file(f"{copies}/DJI_00011.JPG") == b"plain"
