"""Projects in an S3-compatible bucket (a moto server on 127.0.0.1): process, resume elsewhere, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import s3fs

from odm_core.synthetic import SyntheticTruth
from tests.conftest import LIGHT_3D, run_cli
from tests.inprocess import AFTER_OPENSFM, expected, flow_states
from tests.s3server import reset

pytestmark = pytest.mark.slow  # a moto S3 server and CLI runs against it
BUCKET = "surveys"
PROJECT = f"s3://{BUCKET}/datasets/survey"


@pytest.fixture
def aws(s3_endpoint: str, prefect_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """Environment with moto's credentials and endpoint, and an empty bucket holding the survey's photos."""
    reset(s3_endpoint)
    env = dict(prefect_env)
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=s3_endpoint,
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
    )
    return env


def _fs(env: dict[str, str]) -> s3fs.S3FileSystem:
    return s3fs.S3FileSystem(
        key=env["AWS_ACCESS_KEY_ID"],
        secret=env["AWS_SECRET_ACCESS_KEY"],
        endpoint_url=env["AWS_ENDPOINT_URL"],
        skip_instance_cache=True,
        use_listings_cache=False,
    )


def _keys(fs: s3fs.S3FileSystem) -> dict[str, str]:
    return {k: str(v.get("ETag")) for k, v in fs.find(BUCKET, detail=True).items()}


@pytest.fixture
def uploaded(aws: dict[str, str], small_survey: SyntheticTruth) -> s3fs.S3FileSystem:
    """The bucket holding the small survey's photos (what is checked here is orchestration, not accuracy)."""
    fs = _fs(aws)
    fs.mkdir(BUCKET)
    photos = sorted(small_survey.images_dir.iterdir())
    fs.put([str(p) for p in photos], [f"{BUCKET}/datasets/survey/images/{p.name}" for p in photos])
    return fs


CHEAP = ("--feature-quality", "lowest", *LIGHT_3D)  # resuming from the bucket is checked here, not accuracy


def test_bucket_project_resumes_on_another_machine(
    uploaded: s3fs.S3FileSystem, aws: dict[str, str], tmp_path: Path
) -> None:
    photos_before = {k: v for k, v in _keys(uploaded).items() if "/images/" in k}
    first = run_cli(
        ["run", PROJECT, *CHEAP, "--end-with", "opensfm"],
        {**aws, "ODMFLOW_WORK_DIR": str(tmp_path / "machine-a")},
    )
    assert first.returncode == 0, first.stdout + first.stderr
    keys = _keys(uploaded)
    assert f"{BUCKET}/datasets/survey/.odmflow/manifests/opensfm.json" in keys
    assert f"{BUCKET}/datasets/survey/opensfm/reconstruction.json" in keys
    assert {k: v for k, v in keys.items() if "/images/" in k} == photos_before  # photos untouched

    # A worker with an empty disk continues from the last stage finished in the bucket.
    second = run_cli(["run", PROJECT, *CHEAP], {**aws, "ODMFLOW_WORK_DIR": str(tmp_path / "machine-b")})
    assert second.returncode == 0, second.stdout + second.stderr
    assert flow_states("survey") == expected(*AFTER_OPENSFM)  # the bucket's checkpoints were used
    assert f"{BUCKET}/datasets/survey/odm_report/shots.geojson" in _keys(uploaded)
    assert {k: v for k, v in _keys(uploaded).items() if "/images/" in k} == photos_before


@pytest.mark.parametrize(
    ("address", "env_change", "message"),
    [
        ("s3://Bad_Bucket!/x", {}, "valid bucket name"),
        ("s3://missing-bucket/datasets/survey", {}, "does not exist"),
        (f"s3://{BUCKET}/datasets/nothing-here", {}, "is empty"),
        (PROJECT, {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}, "credentials"),
    ],
)
def test_bad_bucket_input_is_a_clear_error_that_writes_nothing(
    uploaded: s3fs.S3FileSystem,
    aws: dict[str, str],
    tmp_path: Path,
    address: str,
    env_change: dict[str, str],
    message: str,
) -> None:
    env = {k: v for k, v in {**aws, **env_change}.items() if v}
    env["ODMFLOW_WORK_DIR"] = str(tmp_path / "work")
    before = _keys(uploaded)
    for args in (["run", address], ["submit", address]):
        result = run_cli(args, env, timeout=300)
        out = result.stdout + result.stderr
        assert result.returncode == 2, out
        assert message in out.lower() and "Traceback" not in out
    assert _keys(uploaded) == before
    assert not (tmp_path / "work").exists()
