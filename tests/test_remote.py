"""Projects in an S3 bucket, against a real moto server: checks, pull, push, round trip, watcher queries."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import s3fs

from odm_core.artifacts import write_manifest
from odm_core.errors import OdmInputError
from odm_core.layout import ProjectTree
from odm_core.remote.fs import INDEX
from odm_core.remote.sync import (
    RemoteProject,
    check_remote,
    is_processed,
    is_remote,
    list_datasets,
    parse_remote,
    pull_project,
    push_paths,
    push_stage,
    s3_filesystem,
)
from tests.s3server import (
    free_port,
    moto_server,
    reset,
)

BUCKET = "survey-data"
LOCAL_ONLY = {INDEX, ".odmflow/digests.json"}


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, s3_endpoint: str) -> str:
    """Test credentials and the moto endpoint, nothing from this machine's AWS settings; empty server."""
    empty = tmp_path / "aws-empty"
    empty.write_text("")
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    reset(s3_endpoint)
    return s3_endpoint


@pytest.fixture
def fs(aws_env: str) -> Iterator[s3fs.S3FileSystem]:
    filesystem = s3_filesystem()
    filesystem.mkdir(BUCKET)
    yield filesystem


def make_project(root: Path) -> Path:
    """A small finished-looking ODM project: photos, dataset outputs, manifest and a Prefect result."""
    tree = ProjectTree(root)
    tree.images.mkdir(parents=True)
    for i, name in enumerate(["DJI_0001.JPG", "DJI_0002.jpg", "DJI_0003.tif"]):
        (tree.images / name).write_bytes(bytes([i]) * (1000 + i))
    (tree.images / "notes.txt").write_text("flight notes")
    tree.images_json.write_text('[{"filename": "DJI_0001.JPG"}]')
    tree.img_list.write_text("DJI_0001.JPG\nDJI_0002.jpg\nDJI_0003.tif\n")
    tree.coords_txt.parent.mkdir(parents=True)
    tree.coords_txt.write_text("WGS84 UTM 32N\n500000 5000000\n")
    outputs = [tree.images_json, tree.img_list, tree.coords_txt]
    write_manifest(tree.manifest("dataset"), "dataset", "fp1", outputs, root)
    tree.results.mkdir(parents=True)
    (tree.results / "dataset-fp1").write_bytes(b"prefect result")
    (tree.results / "opensfm-fp2").write_bytes(b"another stage's result")
    return root


def upload_tree(fs: s3fs.S3FileSystem, local: Path, remote: RemoteProject) -> None:
    """Put every file of `local` into the bucket, as a user or another worker would."""
    files = sorted(p for p in local.rglob("*") if p.is_file())
    fs.put([str(p) for p in files], [remote.path(p.relative_to(local).as_posix()) for p in files])


def bucket_state(fs: s3fs.S3FileSystem) -> dict[str, str]:
    """Every key in the bucket with its ETag."""
    fs.invalidate_cache()
    return {k: str(v["ETag"]) for k, v in fs.find(BUCKET, detail=True).items()}


def local_files(root: Path) -> dict[str, bytes]:
    """Every file under root (except sync bookkeeping) with its content."""
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    return {k: v for k, v in files.items() if k not in LOCAL_ONLY}


def count_calls(monkeypatch: pytest.MonkeyPatch, fs: s3fs.S3FileSystem, method: str) -> list[tuple[str, str]]:
    """Record (source, target) of each call to the filesystem's async `method` (_get_file, _put_file)."""
    calls: list[tuple[str, str]] = []
    original: Callable[..., Awaitable[Any]] = getattr(fs, method)

    async def recorded(src: str, dst: str, **kwargs: Any) -> Any:
        result = await original(src, dst, **kwargs)
        calls.append((str(src), str(dst)))
        return result

    monkeypatch.setattr(fs, method, recorded)
    return calls


# --- addresses ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "bucket", "prefix", "normal"),
    [
        ("s3://survey-data/site-a", "survey-data", "site-a", "s3://survey-data/site-a"),
        ("s3://my.bucket-1/2024/field 3/flight_b/", "my.bucket-1", "2024/field 3/flight_b", None),
        ("s3://abc", "abc", "", "s3://abc"),
        ("S3://survey-data/x", "survey-data", "x", "s3://survey-data/x"),
    ],
)
def test_parse_remote_accepts(url: str, bucket: str, prefix: str, normal: str | None) -> None:
    remote = parse_remote(url)
    assert (remote.bucket, remote.prefix) == (bucket, prefix)
    assert remote.url == (normal or url.rstrip("/"))
    assert is_remote(url)


@pytest.mark.parametrize(
    "url",
    [
        "survey-data/site-a",
        "/data/site-a",
        "https://survey-data/site-a",
        "s3://",
        "s3:///site-a",
        "s3://Survey-Data/site-a",
        "s3://survey_data/site-a",
        "s3://ab/site-a",
        "s3://-survey/site-a",
        "s3://survey..data/site-a",
        "s3://192.168.1.10/site-a",
        "s3://survey-data/a//b",
        "s3://survey-data/a/../b",
        "s3://survey-data/a\nb",
    ],
)
def test_parse_remote_refuses(url: str) -> None:
    with pytest.raises(OdmInputError):
        parse_remote(url)


def test_is_remote_only_for_s3() -> None:
    assert not is_remote("site-a") and not is_remote("/data/s3/site-a")


# --- check_remote: errors before any work ---------------------------------------------------------


def test_check_remote_counts_photos(fs: s3fs.S3FileSystem, tmp_path: Path) -> None:
    remote = parse_remote(f"s3://{BUCKET}/2024/site-a")
    upload_tree(fs, make_project(tmp_path / "p"), remote)
    fs.pipe(remote.path("images/sub/DJI_9999.JPG"), b"nested: not read by ODM")
    assert check_remote(remote, fs) == 3


def _fill_empty(fs: s3fs.S3FileSystem) -> None:
    fs.pipe(f"{BUCKET}/other-site/images/a.jpg", b"x")  # a neighbour whose prefix starts alike


def _fill_no_images(fs: s3fs.S3FileSystem) -> None:
    fs.pipe(f"{BUCKET}/site/photos/a.jpg", b"x")
    fs.pipe(f"{BUCKET}/site/images.json", b"[]")


def _fill_no_photos(fs: s3fs.S3FileSystem) -> None:
    fs.pipe(f"{BUCKET}/site/images/readme.txt", b"x")
    fs.pipe(f"{BUCKET}/site/images/", b"")  # a console's folder marker


@pytest.mark.parametrize(
    ("url", "fill", "expected"),
    [
        ("s3://no-such-bucket/site", lambda fs: None, "bucket 'no-such-bucket' does not exist"),
        (f"s3://{BUCKET}/site", _fill_empty, "is empty: upload the photos to"),
        (f"s3://{BUCKET}/site", _fill_no_images, "has no images/ folder"),
        (f"s3://{BUCKET}/site", _fill_no_photos, "holds no photos"),
    ],
)
def test_check_remote_refuses_and_writes_nothing(
    fs: s3fs.S3FileSystem,
    tmp_path: Path,
    url: str,
    fill: Callable[[s3fs.S3FileSystem], None],
    expected: str,
) -> None:
    fill(fs)
    before = bucket_state(fs)
    remote = parse_remote(url)
    with pytest.raises(OdmInputError, match=expected) as err:
        check_remote(remote, fs)
    assert remote.url in str(err.value)
    with pytest.raises(OdmInputError, match=expected):
        pull_project(remote, tmp_path / "local", fs)
    assert not (tmp_path / "local").exists()
    assert bucket_state(fs) == before


def test_missing_credentials_are_named(
    fs: s3fs.S3FileSystem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = parse_remote(f"s3://{BUCKET}/site-a")
    upload_tree(fs, make_project(tmp_path / "p"), remote)
    before = bucket_state(fs)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    anonymous = s3_filesystem()
    with pytest.raises(OdmInputError, match="no usable S3 credentials.*AWS_ACCESS_KEY_ID") as err:
        pull_project(remote, tmp_path / "local", anonymous)
    assert remote.url in str(err.value)
    assert not (tmp_path / "local").exists()
    assert bucket_state(fs) == before


def test_credentials_from_a_profile(
    fs: s3fs.S3FileSystem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs.pipe(f"{BUCKET}/site-a/images/DJI_0001.JPG", b"x")
    credentials = tmp_path / "credentials"
    credentials.write_text("[survey]\naws_access_key_id = k\naws_secret_access_key = s\n")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_PROFILE", "survey")
    assert check_remote(parse_remote(f"s3://{BUCKET}/site-a"), s3_filesystem()) == 1


def test_invalid_credentials_are_refused(
    aws_env: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with moto_server(auth=True) as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        remote = parse_remote(f"s3://{BUCKET}/site-a")
        with pytest.raises(OdmInputError, match="access denied.*credentials are invalid"):
            pull_project(remote, tmp_path / "local", s3_filesystem())
    assert not (tmp_path / "local").exists()


def test_unreachable_endpoint_is_named(aws_env: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    quick = s3_filesystem(config_kwargs={"retries": {"max_attempts": 1}})
    with pytest.raises(OdmInputError, match="cannot reach the S3 endpoint.*AWS_ENDPOINT_URL"):
        pull_project(parse_remote(f"s3://{BUCKET}/site-a"), tmp_path / "local", quick)
    assert not (tmp_path / "local").exists()


def test_endpoint_from_aws_endpoint_url_s3(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # the S3-specific one wins
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", aws_env)
    fs = s3_filesystem()
    fs.mkdir(BUCKET)
    fs.pipe(f"{BUCKET}/s/images/a.jpg", b"x")
    assert check_remote(parse_remote(f"s3://{BUCKET}/s"), fs) == 1


# --- pull -----------------------------------------------------------------------------------------


def test_pull_mirrors_and_second_pull_downloads_nothing(
    fs: s3fs.S3FileSystem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = make_project(tmp_path / "source")
    remote = parse_remote(f"s3://{BUCKET}/2024/site-a")
    upload_tree(fs, source, remote)
    fs.pipe(remote.path("images/"), b"")  # folder marker: not a file
    fs.pipe(remote.path(INDEX), b"{}")  # another machine's bookkeeping: never pulled
    gets = count_calls(monkeypatch, fs, "_get_file")

    local = pull_project(remote, tmp_path / "local", fs)
    assert local_files(local) == local_files(source)
    assert len(gets) == len(local_files(source))
    assert gets[-1][0].endswith(".odmflow/manifests/dataset.json")  # manifests come last
    assert not list(local.rglob("*.part"))

    gets.clear()
    pull_project(remote, local, fs)
    assert gets == []


def test_pull_updates_changes_and_mirrors_images_only(
    fs: s3fs.S3FileSystem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = make_project(tmp_path / "source")
    remote = parse_remote(f"s3://{BUCKET}/site-a")
    upload_tree(fs, source, remote)
    local = pull_project(remote, tmp_path / "local", fs)
    (local / "images" / "DJI_0004.jpg").write_bytes(b"a photo the bucket does not have")
    (local / "odm_report").mkdir()
    (local / "odm_report" / "stats.json").write_text("{}")  # a local output the bucket lacks
    (local / "img_list.txt").write_text("edited locally, same size?")
    fs.pipe(remote.path("images.json"), b'[{"filename": "DJI_0002.jpg"}]')  # same size, new content
    gets = count_calls(monkeypatch, fs, "_get_file")

    pull_project(remote, local, fs)
    assert sorted(g[0].rsplit("/", 1)[-1] for g in gets) == ["images.json", "img_list.txt"]
    assert (local / "images.json").read_bytes() == b'[{"filename": "DJI_0002.jpg"}]'
    assert (local / "img_list.txt").read_bytes() == (source / "img_list.txt").read_bytes()
    assert not (local / "images" / "DJI_0004.jpg").exists()
    assert (local / "odm_report" / "stats.json").read_text() == "{}"


def test_pull_existing_copy_is_recognised_by_md5(
    fs: s3fs.S3FileSystem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = make_project(tmp_path / "source")
    remote = parse_remote(f"s3://{BUCKET}/site-a")
    upload_tree(fs, source, remote)
    gets = count_calls(monkeypatch, fs, "_get_file")
    pull_project(remote, source, fs)  # no index yet: ETag = MD5 shows the files are already there
    assert gets == []
    assert (source / INDEX).is_file()


def test_interrupted_pull_leaves_no_half_file(
    fs: s3fs.S3FileSystem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = make_project(tmp_path / "source")
    remote = parse_remote(f"s3://{BUCKET}/site-a")
    upload_tree(fs, source, remote)
    original = fs._get_file

    async def failing(rpath: str, lpath: str, **kwargs: Any) -> None:
        if rpath.endswith("DJI_0002.jpg"):
            Path(lpath).write_bytes(b"half")
            raise ConnectionResetError("connection lost")
        await original(rpath, lpath, **kwargs)

    monkeypatch.setattr(fs, "_get_file", failing)
    local = tmp_path / "local"
    with pytest.raises(OSError, match="connection lost"):
        pull_project(remote, local, fs)
    expected = local_files(source)
    for rel, data in local_files(local).items():
        assert data == expected[rel], rel
    assert not list(local.rglob("*.part"))
    monkeypatch.setattr(fs, "_get_file", original)
    assert local_files(pull_project(remote, local, fs)) == expected


# --- push -----------------------------------------------------------------------------------------


def test_push_stage_uploads_outputs_then_manifest(
    fs: s3fs.S3FileSystem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = make_project(tmp_path / "local")
    remote = parse_remote(f"s3://{BUCKET}/site-a")
    photos = {f"images/{p.name}": p for p in (local / "images").iterdir()}
    fs.put([str(p) for p in photos.values()], [remote.path(r) for r in photos])
    images_before = {k: v for k, v in bucket_state(fs).items() if "/images/" in k}
    puts = count_calls(monkeypatch, fs, "_put_file")

    uploaded = push_stage(remote, local, "dataset", fs)
    keys = [dst.split("/", 1)[1] for _, dst in puts]
    assert keys[-1] == "site-a/.odmflow/manifests/dataset.json"
    assert sorted(keys[:-1]) == [
        "site-a/.odmflow/results/dataset-fp1",
        "site-a/images.json",
        "site-a/img_list.txt",
        "site-a/odm_georeferencing/coords.txt",
    ]
    assert uploaded[-1] == remote.address(".odmflow/manifests/dataset.json")
    assert {k: v for k, v in bucket_state(fs).items() if "/images/" in k} == images_before
    assert not any("/images/" in k for k in keys)


def test_push_paths_refuses_photos_and_missing_files(fs: s3fs.S3FileSystem, tmp_path: Path) -> None:
    local = make_project(tmp_path / "local")
    remote = parse_remote(f"s3://{BUCKET}/site-a")
    for paths, error in [
        ([Path("images.json"), Path("images/DJI_0001.JPG")], ValueError),
        ([Path("images.json"), local / "images" / "notes.txt"], ValueError),
        ([Path("images.json"), tmp_path / "elsewhere.txt"], ValueError),
        ([Path("images.json"), Path("missing.json")], FileNotFoundError),
    ]:
        with pytest.raises(error):
            push_paths(remote, local, paths, fs)
    assert bucket_state(fs) == {}


def test_push_stage_needs_a_manifest(fs: s3fs.S3FileSystem, tmp_path: Path) -> None:
    with pytest.raises(OdmInputError, match="'opensfm' has no manifest"):
        push_stage(parse_remote(f"s3://{BUCKET}/s"), make_project(tmp_path / "p"), "opensfm", fs)


def test_round_trip_is_byte_identical(
    fs: s3fs.S3FileSystem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = make_project(tmp_path / "local")
    remote = parse_remote(f"s3://{BUCKET}/2024/site-a")
    photos = [p for p in (local / "images").iterdir()]
    fs.put([str(p) for p in photos], [remote.path(f"images/{p.name}") for p in photos])
    push_stage(remote, local, "dataset", fs)
    push_paths(remote, local, [Path(".odmflow/results/opensfm-fp2")], fs)

    copy = pull_project(remote, tmp_path / "copy", fs)
    assert local_files(copy) == local_files(local)
    gets = count_calls(monkeypatch, fs, "_get_file")
    pull_project(remote, local, fs)  # what push recorded: nothing to download back
    assert gets == []


# --- watcher queries ------------------------------------------------------------------------------


def test_list_datasets_and_is_processed(fs: s3fs.S3FileSystem, tmp_path: Path) -> None:
    fs.pipe(f"{BUCKET}/incoming/site-a/images/DJI_0001.JPG", b"x")
    fs.pipe(f"{BUCKET}/incoming/site-b/images/readme.txt", b"x")
    fs.pipe(f"{BUCKET}/incoming/site-c/notes.txt", b"x")
    fs.pipe(f"{BUCKET}/incoming/site-d/images/ortho.TIFF", b"x")
    fs.pipe(f"{BUCKET}/incoming/site-d/.odmflow/manifests/odm_report.json", b"{}")
    fs.pipe(f"{BUCKET}/incoming/loose.jpg", b"x")
    fs.pipe(f"{BUCKET}/top/images/a.png", b"x")

    found = list_datasets(f"s3://{BUCKET}/incoming/", fs)
    assert [d.url for d in found] == [f"s3://{BUCKET}/incoming/site-a", f"s3://{BUCKET}/incoming/site-d"]
    assert [is_processed(d, fs) for d in found] == [False, True]
    assert [d.prefix for d in list_datasets(f"s3://{BUCKET}", fs)] == ["top"]
    assert list_datasets(f"s3://{BUCKET}/nothing-here", fs) == []
    with pytest.raises(OdmInputError, match="does not exist"):
        list_datasets("s3://no-such-bucket/incoming", fs)
