"""The terminal's progress display: the run's stages move the bar; a split run's submodels, whose
pipelines run nested in its split stage, show their own lines and hold the bar."""

from __future__ import annotations

import logging

import pytest

from odm_core.registry import overall_percent
from odmflow.display import ProgressDisplay

LOG = logging.getLogger("odmflow.progress")


def _say(stage: str, fraction: float, message: str, submodel: str | None = None) -> None:
    LOG.info(message, extra={"odm_stage": stage, "odm_fraction": fraction, "odm_submodel": submodel})


def test_submodel_stages_past_the_runs_end_hold_the_bar_and_name_the_submodel(
    capsys: pytest.CaptureFixture[str],
) -> None:
    display = ProgressDisplay("split")  # --end-with split: openmvs is no stage of this run
    with display:
        _say("opensfm", 0.5, "matching")
        assert display._percent == pytest.approx(overall_percent("opensfm", 0.5, "split"))
        _say("split", 1.0, "done")
        _say("openmvs", 0.5, "depth maps (4/8)", submodel="submodel_0001")
        _say("dataset", 1.0, "done", submodel="submodel_0001")
        assert display._percent == pytest.approx(100.0)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == [
        "opensfm:  50% matching",
        "split: 100% done",
        "submodel_0001 openmvs:  50% depth maps (4/8)",
        "submodel_0001 dataset: 100% done",
    ]
