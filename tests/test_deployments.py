"""prefect.yaml: valid for Prefect, entrypoints that resolve to our flows, parameters that validate."""

from __future__ import annotations

import pytest
import yaml
from prefect import Flow
from prefect.cli.deploy._models import PrefectYamlModel
from prefect.flows import load_flow_from_entrypoint

from odm_core.options import PipelineOptions
from tests.conftest import REPO


def _deployments() -> list[dict]:
    doc = yaml.safe_load((REPO / "prefect.yaml").read_text())
    PrefectYamlModel.model_validate(doc)
    return doc["deployments"]


def _flow(entrypoint: str) -> Flow:
    """Load the flow as a Prefect worker does, from the repository root."""
    path, name = entrypoint.split(":")
    flow = load_flow_from_entrypoint(f"{REPO / path}:{name}")
    assert isinstance(flow, Flow)
    return flow


def test_every_deployment_resolves_to_a_flow() -> None:
    names = {d["name"] for d in _deployments()}
    assert {"odm-process", "odm-watch-bucket"} <= names
    for d in _deployments():
        _flow(d["entrypoint"])


def test_odm_process_validates_cli_style_options() -> None:
    flow = _flow(next(d for d in _deployments() if d["name"] == "odm-process")["entrypoint"])
    params = flow.validate_parameters(
        {
            "project": "/data/site",
            "options": {"opensfm": {"feature_quality": "medium"}, "end_with": "opensfm"},
        }
    )
    assert isinstance(params["options"], PipelineOptions)
    assert params["options"].opensfm.feature_quality == "medium"
    with pytest.raises(Exception, match="feature_quality"):
        flow.validate_parameters({"project": "/x", "options": {"opensfm": {"feature_quality": "best"}}})
