"""The dataset stage: outputs, skipped files, errors that list every problem, images/ left untouched."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from odm_core.errors import OdmInputError
from odm_core.geo.georef import GeoReference
from odm_core.layout import ProjectTree
from odm_core.options import DatasetOptions
from odm_core.stages.dataset import DatasetResult, dataset
from tests.conftest import BRIGHTON

OPTS = DatasetOptions()


def make_jpeg(path: Path, dms_seconds: float | None = None, size: tuple[int, int] = (64, 48)) -> Path:
    """A small noisy JPEG, with a GPS position near Brighton Beach (UTM 15N) unless dms_seconds is None."""
    rng = np.random.default_rng(list(path.name.encode()))  # pixels differ by name: no duplicates
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    exif = Image.Exif()
    if dms_seconds is not None:
        gps = exif.get_ifd(0x8825)
        gps[1], gps[2], gps[3], gps[4] = "N", (46.0, 50.0, dms_seconds), "W", (91.0, 59.0, dms_seconds)
    Image.fromarray(pixels).save(path, "JPEG", exif=exif)
    return path


def snapshot(folder: Path) -> tuple[int, list[tuple[str, str]]]:
    """The folder's mtime and every entry (hidden ones too) with its content hash."""
    entries = sorted(
        (e.name, hashlib.sha256(Path(e.path).read_bytes()).hexdigest() if e.is_file() else "dir")
        for e in os.scandir(folder)
    )
    return folder.stat().st_mtime_ns, entries


@pytest.fixture
def tree(tmp_path: Path) -> ProjectTree:
    t = ProjectTree(tmp_path / "project")
    t.images.mkdir(parents=True)
    return t


def add_gps_photos(tree: ProjectTree, n: int = 3, prefix: str = "DJI_") -> list[str]:
    names = []
    for i in range(n):
        name = f"{prefix}{i:04d}.JPG"
        make_jpeg(tree.images / name, 33.0 + i)
        names.append(name)
    return names


def add_plain_photos(tree: ProjectTree, names: list[str]) -> None:
    for name in names:
        colour = tuple(hashlib.sha256(name.encode()).digest()[:3])  # differs by name: no duplicates
        Image.new("RGB", (32, 24), colour).save(tree.images / name)


def run_unchanged(tree: ProjectTree, opts: DatasetOptions = OPTS, **kwargs: object) -> DatasetResult:
    """Run the stage and check that images/ is byte-for-byte the same afterwards."""
    before = snapshot(tree.images)
    try:
        return dataset(tree, opts, **kwargs)  # type: ignore[arg-type]
    finally:
        assert snapshot(tree.images) == before


def test_writes_odm_outputs(tree: ProjectTree) -> None:
    names = add_gps_photos(tree)
    calls: list[tuple[float, str]] = []
    result = run_unchanged(tree, progress=lambda f, m: calls.append((f, m)))

    assert (result.n_photos, result.skipped, result.has_gps, result.without_gps) == (3, (), True, ())
    assert result.epsg == 32615
    assert set(result.outputs) == {tree.images_json, tree.img_list, tree.coords_txt, tree.proj_txt}
    assert all(p.is_file() for p in result.outputs)
    photos = json.loads(tree.images_json.read_text())
    assert [p["filename"] for p in photos] == names
    assert photos[0]["latitude"] == pytest.approx(46 + 50 / 60 + 33 / 3600)
    assert tree.img_list.read_text().splitlines() == names
    assert tree.coords_txt.read_text().startswith("WGS84 UTM 15N\n")
    assert GeoReference.read(tree.coords_txt).epsg == 32615
    assert "+zone=15" in tree.proj_txt.read_text()
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_bad_files_are_skipped_with_reasons(tree: ProjectTree, caplog: pytest.LogCaptureFixture) -> None:
    add_gps_photos(tree, 2)
    (tree.images / "empty.jpg").touch()
    (tree.images / "notes.jpg").write_text("not a photo\n")
    full = make_jpeg(tree.images / "full.jpg", size=(400, 300)).read_bytes()
    (tree.images / "full.jpg").unlink()
    (tree.images / "half.JPG").write_bytes(full[: len(full) // 2])
    (tree.images / ".hidden.jpg").write_text("ignored")
    (tree.images / "DJI_0000_mask.png").write_text("ignored")
    (tree.images / "flight.srt").write_text("ignored")
    (tree.images / "raw.DNG").write_bytes(b"II*\x00")

    with caplog.at_level(logging.WARNING, "odm_core.stages.dataset"):
        result = run_unchanged(tree)

    reasons = {s.filename: s.reason for s in result.skipped}
    assert set(reasons) == {"empty.jpg", "notes.jpg", "half.JPG", "raw.DNG"}
    assert reasons["empty.jpg"] == "empty file (0 bytes)"
    assert "not an image" in reasons["notes.jpg"]
    assert "truncated" in reasons["half.JPG"]
    assert "RAW" in reasons["raw.DNG"]
    for name, reason in reasons.items():
        assert f"Skipping {name}: {reason}" in caplog.text
    assert result.n_photos == 2
    assert tree.img_list.read_text().splitlines() == ["DJI_0000.JPG", "DJI_0001.JPG"]


def test_case_collision_reported_with_other_problems(tree: ProjectTree) -> None:
    make_jpeg(tree.images / "a.JPG", 1.0)
    make_jpeg(tree.images / "A.jpg", 2.0)
    if len(os.listdir(tree.images)) < 2:
        pytest.skip("case-insensitive file system: cannot hold both names")
    add_gps_photos(tree, 2)
    (tree.images / "empty.jpg").touch()

    with pytest.raises(OdmInputError) as info:
        run_unchanged(tree)
    msg = str(info.value)
    assert "'A.jpg' and 'a.JPG' differ only in case" in msg and "rename one" in msg
    assert "empty.jpg: empty file (0 bytes)" in msg  # every problem at once
    assert not tree.images_json.exists()


def test_fewer_than_two_usable_photos(tree: ProjectTree) -> None:
    add_gps_photos(tree, 1)
    (tree.images / "zero.jpg").touch()
    (tree.images / "text.jpeg").write_text("hello")
    with pytest.raises(OdmInputError) as info:
        run_unchanged(tree)
    msg = str(info.value)
    assert "only 1 usable photo" in msg
    assert "zero.jpg: empty file (0 bytes)" in msg
    assert "text.jpeg: not an image" in msg
    assert not tree.images_json.exists()


def test_missing_images_folder(tmp_path: Path) -> None:
    with pytest.raises(OdmInputError, match=r"No images folder at .*put your photos in"):
        dataset(ProjectTree(tmp_path / "nowhere"), OPTS)


def test_empty_images_folder(tree: ProjectTree) -> None:
    (tree.images / "readme.txt").write_text("photos go here")
    (tree.images / "flight1").mkdir()
    with pytest.raises(OdmInputError) as info:
        run_unchanged(tree)
    msg = str(info.value)
    assert "No photos" in msg and "put your photos in" in msg and "flight1" in msg


def test_no_gps_runs_local_and_removes_stale_georeference(
    tree: ProjectTree, caplog: pytest.LogCaptureFixture
) -> None:
    add_gps_photos(tree, 2)
    dataset(tree, OPTS)
    assert tree.coords_txt.exists()
    for f in tree.images.iterdir():
        f.unlink()
    add_plain_photos(tree, ["p1.png", "p2.png", "p3.png"])

    with caplog.at_level(logging.WARNING, "odm_core.stages.dataset"):
        result = run_unchanged(tree)
    assert (result.n_photos, result.has_gps, result.epsg) == (3, False, None)
    assert not tree.coords_txt.exists() and not tree.proj_txt.exists()
    assert set(result.outputs) == {tree.images_json, tree.img_list}
    assert "local (non-georeferenced) coordinates" in caplog.text


def test_some_photos_without_gps_are_named(tree: ProjectTree, caplog: pytest.LogCaptureFixture) -> None:
    add_gps_photos(tree, 2)
    add_plain_photos(tree, ["nogps.png"])
    with caplog.at_level(logging.WARNING, "odm_core.stages.dataset"):
        result = run_unchanged(tree)
    assert result.without_gps == ("nogps.png",) and result.has_gps
    assert "not for georeferencing: nogps.png" in caplog.text


@pytest.mark.shared
def test_brighton_beach(tmp_path: Path) -> None:
    if not (BRIGHTON / "images").is_dir():
        pytest.skip(f"shared dataset not found at {BRIGHTON} (needs ../shared/datasets/brighton_beach)")
    tree = ProjectTree(tmp_path / "brighton")
    tree.root.mkdir()
    tree.images.symlink_to(BRIGHTON / "images", target_is_directory=True)

    result = run_unchanged(tree)

    assert (result.n_photos, result.skipped, result.without_gps, result.epsg) == (18, (), (), 32615)
    photos = json.loads(tree.images_json.read_text())
    assert len(photos) == 18
    for p in photos:
        assert (p["camera_make"], p["camera_model"], p["width"], p["height"]) == ("DJI", "FC300S", 4000, 2250)
        assert p["latitude"] == pytest.approx(46.84, abs=0.01)
        assert p["longitude"] == pytest.approx(-91.99, abs=0.01)
        assert p["relative_altitude"] is not None and p["pitch"] is not None
        assert p["focal_ratio"] == pytest.approx(20 / 36)
    assert tree.coords_txt.read_text().startswith("WGS84 UTM 15N\n")
