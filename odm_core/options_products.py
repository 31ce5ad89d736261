"""The options of the product stages: odm_georeferencing, odm_dem, odm_orthophoto and odm_report (ODM's
names and defaults; odm_core.options gathers them in PipelineOptions)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from odm_core.option_fields import (
    CROP_HELP,
    StageOptions,
    cog_field,
    ignore_gsd_field,
    tiles_field,
)


class GeoreferencingOptions(StageOptions):
    """Options of the `odm_georeferencing` stage (the georeferenced LAZ and its exports)."""

    pc_las: bool = Field(False, description="Also export the cloud as LAS.")
    pc_csv: bool = Field(False, description="Also export the cloud as CSV.")
    crop: float = Field(3.0, ge=0, le=10000, description=CROP_HELP)
    boundary: str | None = Field(
        None,
        description="GeoJSON polygon, the crop with --crop 0 (PipelineOptions copies --boundary).",
        json_schema_extra={"internal": True},
    )

    @model_validator(mode="after")
    def _valid_boundary(self) -> GeoreferencingOptions:
        if self.boundary is not None:
            from odm_core.geo.boundary import parse_boundary

            parse_boundary(self.boundary)
        return self


class DemOptions(StageOptions):
    """Options of the `odm_dem` stage (DSM and DTM rasters)."""

    dsm: bool = Field(False, description="Build the DSM (odm_dem/dsm.tif).")
    dtm: bool = Field(False, description="Build the DTM (odm_dem/dtm.tif) from SMRF ground points.")
    dem_resolution: float = Field(
        5.0, gt=0, le=10000, description="DEM cell size in cm, no finer than the GSD unless --ignore-gsd."
    )
    dem_gapfill_steps: int = Field(
        3, ge=0, le=100, description="Search radii (x sqrt 2 each) before holes are filled (0 = 1 radius)."
    )
    smrf_scalar: float = Field(1.25, ge=0, le=100, description="SMRF elevation scalar.")
    smrf_slope: float = Field(0.15, gt=0, le=100, description="SMRF slope (rise over run).")
    smrf_threshold: float = Field(0.5, ge=0, le=100, description="SMRF elevation threshold (m).")
    smrf_window: float = Field(18.0, gt=0, le=1000, description="SMRF maximum window radius (m).")
    ignore_gsd: bool = ignore_gsd_field()
    tiles: bool = tiles_field()
    cog: bool = cog_field()
    dem_euclidean_map: bool = Field(
        False, description="Also write odm_dem/{dsm,dtm}.euclideand.tif: cells to the nearest nodata cell."
    )


OrthophotoCompression = Literal["JPEG", "LZW", "PACKBITS", "DEFLATE", "LZMA", "NONE"]


class OrthophotoOptions(StageOptions):
    """Options of the `odm_orthophoto` stage."""

    skip_orthophoto: bool = Field(False, description="Do not build the orthophoto.")
    orthophoto_resolution: float = Field(
        5.0,
        gt=0,
        le=10000,
        description="Orthophoto pixel size in cm, no finer than the GSD unless --ignore-gsd.",
    )
    orthophoto_compression: OrthophotoCompression = Field("DEFLATE", description="GeoTIFF compression.")
    orthophoto_png: bool = Field(False, description="Also write odm_orthophoto/odm_orthophoto.png.")
    orthophoto_kmz: bool = Field(False, description="Also write odm_orthophoto/odm_orthophoto.kmz.")
    ignore_gsd: bool = ignore_gsd_field()
    tiles: bool = tiles_field()
    cog: bool = cog_field()
    orthophoto_cutline: bool = Field(
        False, description="Also write odm_orthophoto/cutline.gpkg: a crop polygon cut along feature edges."
    )


class ReportOptions(StageOptions):
    """Options of the `odm_report` stage (the quality report)."""

    skip_report: bool = Field(
        False, description="Skip odm_report/report.pdf (shots and stats are still written)."
    )
