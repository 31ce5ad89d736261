"""The figures odm_filterpoints records in point_cloud_stats.json, read back by later stages."""

from __future__ import annotations

import json
from pathlib import Path


def recorded_sampling_m(stats: Path) -> float | None:
    """The depth maps' sampling distance odm_filterpoints recorded; None without one (a sparse cloud)."""
    return _recorded_m(stats, "depthmap_sampling")


def recorded_spacing_m(stats: Path) -> float | None:
    """The spacing odm_filterpoints recorded in point_cloud_stats.json; None without the file or a value."""
    return _recorded_m(stats, "spacing")


def _recorded_m(stats: Path, key: str) -> float | None:
    if not stats.is_file():
        return None
    return float(json.loads(stats.read_text()).get(key) or 0) or None
