"""Shared fixtures: paths to ../shared data, a Prefect server for the run, a CLI runner in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from odm_core.layout import ProjectTree
from odm_core.registry import STAGES
from odm_core.synthetic import SyntheticOptions, SyntheticTruth, generate_synthetic
from tests.inprocess import expected, flow_states
from tests.s3server import s3_endpoint_fixture  # noqa: F401 (the session's `s3_endpoint` fixture)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
BRIGHTON = SHARED / "datasets" / "brighton_beach"


# A small survey: 3 lines of 3 nadir photos and 2 obliques at 800 x 600, EXIF GPS noise sigma 0.3 m.
# Absolute accuracy is bounded by the GPS noise: the truth itself, fitted to the noisy GPS by the best
# similarity, is 0.45 m off at worst here; with sigma 0.5 m that bound alone exceeds 1% of the height.
SYNTHETIC = SyntheticOptions(
    n_cols=3,
    n_rows=3,
    n_oblique=2,
    image_width=800,
    image_height=600,
    gps_sigma_h_m=0.3,
    gps_sigma_v_m=0.3,
    seed=2,
)


@pytest.fixture(scope="session")
def survey(tmp_path_factory: pytest.TempPathFactory) -> SyntheticTruth:
    """The small synthetic survey, generated once per session (treat as read-only; copy to process)."""
    return generate_synthetic(tmp_path_factory.mktemp("synthetic") / "survey", SYNTHETIC)


# A smaller survey still (8 photos at 640 x 480, 4 buildings, the generator's GPS noise) for tests of the
# generator itself and for end-to-end runs that check orchestration, not accuracy (node, bucket).
SMALL = SyntheticOptions(n_cols=3, n_rows=2, n_oblique=2, image_width=640, image_height=480, n_buildings=4)


@pytest.fixture(scope="session")
def small_survey(tmp_path_factory: pytest.TempPathFactory) -> SyntheticTruth:
    """The SMALL survey, generated once per session (treat as read-only)."""
    return generate_synthetic(tmp_path_factory.mktemp("small") / "survey", SMALL)


def require_brighton() -> Path:
    """The Brighton Beach photos, or a skip that says where they were looked for."""
    if not (BRIGHTON / "images").is_dir():
        pytest.skip(f"needs the shared Brighton Beach photos at {BRIGHTON} (absent in a fresh clone)")
    return BRIGHTON


def copy_project(src_images: Path, dest: Path) -> Path:
    """A writable ODM project at dest with a copy of src_images as images/."""
    shutil.copytree(src_images, dest / "images")
    for f in (dest / "images").iterdir():
        f.chmod(0o644)
    return dest


@pytest.fixture(scope="session")
def prefect_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Environment for CLI subprocesses: one Prefect server for the whole session, a temp PREFECT_HOME."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    home = tmp_path_factory.mktemp("prefect-home")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    with prefect_test_harness(server_startup_timeout=60):
        env = dict(os.environ)
        env.update(
            PREFECT_API_URL=str(PREFECT_API_URL.value()),
            PREFECT_HOME=str(home),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
        )
        yield env


CONSOLE_SCRIPT = Path(sys.executable).with_name("odmflow")  # the installed `odmflow`, as users run it


def run_cli(args: list[str], env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run `odmflow ARGS` through the installed console script, as a user would, capturing its output."""
    return subprocess.run(
        [str(CONSOLE_SCRIPT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


# Runs that check something other than the 3D model (orchestration, inputs, resume) mesh and texture a
# small mesh: the default (200,000 vertices at octree depth 11) is checked on the processed survey and
# Brighton.
LIGHT_3D = ("--mesh-size", "20000", "--mesh-octree-depth", "9")


def copy_survey(survey: SyntheticTruth, dest: Path) -> ProjectTree:
    shutil.copytree(survey.images_dir, dest / "images")
    return ProjectTree(dest)


@pytest.fixture(scope="session")
def processed(
    survey: SyntheticTruth, prefect_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> ProjectTree:
    tree = copy_survey(survey, tmp_path_factory.mktemp("processed") / "processed-survey")
    result = run_cli(["run", str(tree.root)], prefect_env)
    (tree.root.parent / "run.log").write_text(result.stdout)  # beside the project: its summary lines
    (tree.root.parent / "run.stderr.log").write_text(result.stderr)  # its progress lines
    assert result.returncode == 0, result.stdout + result.stderr
    assert flow_states(tree.root.name) == expected(*STAGES)  # every stage ran, as the flow recorded it
    return tree


NODE_TOKEN = "T"


@pytest.fixture(scope="session")
def nodeodm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """`odmflow server up` (Prefect server, worker, NodeODM node with token T) on free 127.0.0.1 ports,
    through the installed console script; `odmflow server down` afterwards. Its url, token, home and API."""
    from tests.s3server import free_port

    home = tmp_path_factory.mktemp("nodeodm-home")
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    args = ["server", "up", "--home", str(home), "--port", str(free_port()), "--timeout", "120"]
    args += ["--node-port", str(free_port()), "--node-token", NODE_TOKEN]
    try:
        up = run_cli(args, env, timeout=600)
        assert up.returncode == 0, up.stdout + up.stderr
        state = json.loads((home / "state.json").read_text())
        yield {
            "url": state["node_url"],
            "token": NODE_TOKEN,
            "home": str(home),
            "api_url": state["api_url"],
            "up_output": up.stdout,
        }
    finally:
        run_cli(["server", "down", "--home", str(home)], env, timeout=120)


# Fixtures that run the whole pipeline once per session, or start a node: the tests that use them (stage
# tests on the processed survey's outputs, end-to-end runs) form the slow layer; `-m "not slow"` is the
# core layer.
PIPELINE_FIXTURES = frozenset({"processed", "nodeodm_server"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if PIPELINE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
