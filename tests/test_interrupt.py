"""Ctrl-C during `odmflow run`: the whole run stops within seconds, and the same command resumes it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from odm_core.synthetic import SyntheticOptions, generate_synthetic
from tests.conftest import CONSOLE_SCRIPT, copy_survey, run_cli

pytestmark = pytest.mark.slow

SMALL = SyntheticOptions(n_cols=4, n_rows=3, n_oblique=0, image_width=640, image_height=480)
SPLIT = ["--split", "4", "--split-overlap", "10", "--feature-quality", "lowest", "--fast-orthophoto"]


def _session(pid: int) -> list[int]:
    """Live processes of the session `pid` leads (it was started with start_new_session)."""
    found = subprocess.run(["pgrep", "-s", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


def test_ctrl_c_stops_a_split_run_with_its_embedded_server_and_the_run_resumes(tmp_path: Path) -> None:
    """A terminal's Ctrl-C signals the whole process group, Prefect's embedded server included: before,
    the run went on for minutes (its crash handling waiting on the server gone, then its submodels tried
    again) and had to be killed. Now it ends within the grace period with 130 and what to do."""
    tree = copy_survey(generate_synthetic(tmp_path / "survey", SMALL), tmp_path / "p")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env |= {"PREFECT_HOME": str(tmp_path / "home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    args = [str(CONSOLE_SCRIPT), "run", str(tree.root), *SPLIT]
    err_log = tmp_path / "run.err"
    with err_log.open("w") as err:
        run = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        deadline = time.monotonic() + 600
        while "submodel_0001" not in err_log.read_text() and run.poll() is None:
            assert time.monotonic() < deadline, err_log.read_text()
            time.sleep(0.5)
        assert run.poll() is None, err_log.read_text()  # the run must still be going
        time.sleep(2)
        os.killpg(run.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        try:
            code = run.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            raise AssertionError("the run still went on 60 s after Ctrl-C") from None
    text = err_log.read_text()
    assert code == 130, text
    assert "odmflow: interrupted: stopping" in text
    assert "run the same command again to resume" in text
    time.sleep(5)
    assert _session(run.pid) == [], "processes of the run outlived it"

    result = run_cli(["run", str(tree.root), *SPLIT], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "dataset (checkpoint), opensfm (checkpoint)" in result.stdout
    assert tree.orthophoto_tif.is_file()
