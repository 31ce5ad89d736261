"""What the quality report shows, gathered from the figures the stages wrote (it recomputes nothing):
images.json, opensfm/stats/stats.json, the point cloud's stats, the stage manifests' run times, and the
rasters for previews."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from odm_core.checkpoint import stage_seconds
from odm_core.layout import ProjectTree
from odm_core.registry import STAGES


@dataclass(frozen=True)
class ReportData:
    """The report's inputs: `stats` is stats.json as odm_report writes it (opensfm's figures plus the
    processing and point cloud blocks); rasters are listed only when they exist."""

    project: str
    photos: list[dict[str, Any]]
    stats: dict[str, Any]
    stage_seconds: dict[str, float]
    crs: str | None  # "EPSG:32615", or None for a local frame
    rasters: dict[str, Path] = field(default_factory=dict)  # "orthophoto", "dsm", "dtm"

    @property
    def reconstruction(self) -> dict[str, Any]:
        return dict(self.stats.get("reconstruction_statistics", {}))

    @property
    def has_gcp(self) -> bool:
        return bool(self.stats.get("gcp_residuals"))


def gather(tree: ProjectTree, stats: dict[str, Any], epsg: int | None) -> ReportData:
    """The report's data for the project at `tree`, with the stats.json being written (`stats`)."""
    seconds: dict[str, float] = {
        s: t for s in STAGES if s != "odm_report" and (t := stage_seconds(s, tree)) is not None
    }
    rasters = {
        name: path
        for name, path in (("orthophoto", tree.orthophoto_tif), ("dsm", tree.dsm_tif), ("dtm", tree.dtm_tif))
        if path.is_file()
    }
    return ReportData(
        project=tree.root.name,
        photos=json.loads(tree.images_json.read_text()),
        stats=stats,
        stage_seconds=seconds,
        crs=f"EPSG:{epsg}" if epsg else None,
        rasters=rasters,
    )
