"""Synthetic ground truth: aerial photos of a known scene from a known flight, and the truth beside them.

`generate_synthetic(out, opts)` writes an ODM project folder (out/images/IMG_0001.JPG ... with EXIF GPS)
and out/truth/{cameras.json, dsm.tif, orthophoto.tif, truth.json}. `make_world(opts)` rebuilds the same
scene and cameras in memory (for tests: `cast_rays`, `visible`, `render_photo`).
"""

from odm_core.synthetic.camera import CameraPose, Intrinsics
from odm_core.synthetic.exif import GpsFix, read_gps
from odm_core.synthetic.generate import generate_synthetic
from odm_core.synthetic.options import SyntheticOptions, SyntheticTruth
from odm_core.synthetic.raycast import GROUND, ROOF, SKY, WALL, Hits, cast_rays, visible
from odm_core.synthetic.render import render_photo
from odm_core.synthetic.world import SyntheticWorld, make_world

__all__ = [
    "GROUND",
    "ROOF",
    "SKY",
    "WALL",
    "CameraPose",
    "GpsFix",
    "Hits",
    "Intrinsics",
    "SyntheticOptions",
    "SyntheticTruth",
    "SyntheticWorld",
    "cast_rays",
    "generate_synthetic",
    "make_world",
    "read_gps",
    "render_photo",
    "visible",
]
