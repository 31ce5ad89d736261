"""Checkpoint keys of `opensfm`'s feature and matching units.

A unit's key is what its output depends on, not the stage's fingerprint: its module's code (with the
odm_core modules it imports and the engines' versions, odm_core.checkpoint.module_code_digest), the
options that reach it and, for a feature unit, its photo's and mask's content; a matching unit adds its
pairs, its photos' feature keys and their cameras (odm_core.sfm.match_units). So a change that only the
mapping reads (--sfm-algorithm, --force-gps, --gcp-accuracy, a gcp_list.txt added) or one photo more
reruns the stage but reuses every unit it does not touch, where a key made of the stage's fingerprint
made every photo's features and every pair's matches again.
"""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

from odm_core.artifacts import sha256_text
from odm_core.checkpoint import module_code_digest

_ROOT = Path(__file__).resolve().parent.parent.parent  # the folder that holds odm_core/
FEATURES_MODULE = "odm_core.sfm.extract"
MATCHING_MODULE = "odm_core.sfm.match_units"


def units_key(module: str, reuse: bool) -> str:
    """The prefix of the keys of `module`'s units: its code digest when `reuse`, else a new random one
    that no checkpoint carries (every unit runs)."""
    if not reuse:
        return f"unkeyed-{uuid4().hex}"
    return sha256_text(module, module_code_digest(module, _ROOT))
