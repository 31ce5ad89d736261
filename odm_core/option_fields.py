"""The pieces every stage's options model is made of: the frozen base, shared value types, help texts
and the fields that several stages share (one option sets them all; odm_core.option_specs checks they
agree). odm_core.options builds the stage models from these."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Quality = Literal["ultra", "high", "medium", "low", "lowest"]
GEO_HELP = "geo.txt (ODM's format) whose positions replace EXIF GPS; default: PROJECT/geo.txt."
CROP_HELP = "Crop the DEMs and orthophoto to the cloud's footprint shrunk by N metres, as ODM (0 = off)."
GCP_HELP = "Ground control points (ODM's gcp_list.txt format); default: PROJECT/gcp_list.txt."
CameraLens = Literal[
    "auto", "perspective", "brown", "fisheye", "fisheye_opencv", "spherical", "equirectangular", "dual"
]
SfmAlgorithm = Literal["incremental", "triangulation", "planar"]


def ignore_gsd_field() -> Any:
    """The field shared by odm_dem and odm_orthophoto (one option, `--ignore-gsd`, sets both)."""
    ignore = "Do not cap --dem-resolution and --orthophoto-resolution by the estimated GSD."
    return Field(False, description=ignore)


def tiles_field() -> Any:
    """The field shared by odm_dem and odm_orthophoto (one option, `--tiles`, sets both)."""
    tiles = "Also write XYZ PNG tiles: orthophoto_tiles/, dsm_tiles/, dtm_tiles/ (z/x/y.png)."
    return Field(False, description=tiles)


def cog_field() -> Any:
    """The field shared by odm_dem and odm_orthophoto (one option, `--cog/--no-cog`, sets both)."""
    cog = "Cloud-Optimized GeoTIFFs (default, unlike ODM); off: tiled GeoTIFFs with overviews."
    return Field(True, description=cog)


class StageOptions(BaseModel):
    """Base of every stage's options: frozen, no unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def skip_3dmodel_field() -> Any:
    """The field shared by odm_meshing and mvs_texturing (one option, `--skip-3dmodel`)."""
    skip = "Skip the full 3D model (mesh and texture); only the 2.5D model is made, as ODM."
    return Field(False, description=skip)


def use_3dmesh_field() -> Any:
    """The field shared by odm_meshing and mvs_texturing (one option, `--use-3dmesh`)."""
    use = "Use the full 3D mesh instead of a 2.5D mesh: no 2.5D mesh nor odm_texturing_25d, as ODM."
    return Field(False, description=use)
