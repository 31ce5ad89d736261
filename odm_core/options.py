"""Frozen, validated options: one model per stage, gathered in PipelineOptions.

Field names are ODM's option names with dashes as underscores, and defaults are ODM's
(opendm/config.py), so `--min-num-features 8000` means what it means in ODM. These fields are the
one source of the run's options: `odm_core.option_specs` derives the catalogue (CLI flags, help,
NodeODM's /options) from their types, defaults, bounds, descriptions and `json_schema_extra`:
`{"internal": True}` marks a field that is not a user option (no flag), and `{"text": "geojson_file"}`
says a text value is a file whose contents become the value.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import Field, model_validator

from odm_core.option_fields import (
    GCP_HELP,
    GEO_HELP,
    CameraLens,
    Quality,
    SfmAlgorithm,
    StageOptions,
    skip_3dmodel_field,
    use_3dmesh_field,
)
from odm_core.option_rules import implicit_rules
from odm_core.options_products import (
    DemOptions,
    GeoreferencingOptions,
    OrthophotoOptions,
    ReportOptions,
)
from odm_core.options_split import SUBMODEL_END, MergeOptions, SplitOptions, submodel_options
from odm_core.registry import STAGE_SPECS, STAGES, StageName


class DatasetOptions(StageOptions):
    """Options of the `dataset` stage (reading photos and their EXIF/XMP)."""

    use_exif: bool = Field(False, description="Use EXIF GPS even when a GCP file is present (ignore it).")
    gcp: str | None = Field(None, description=GCP_HELP, json_schema_extra={"text": "gcp_file"})  # file's text
    gps_accuracy: float = Field(
        3.0, gt=0, le=1000, description="GPS accuracy in metres, set for every photo."
    )
    gps_z_offset: float = Field(0.0, description="Metres added to every photo's GPS altitude.")
    geo: str | None = Field(None, description=GEO_HELP, json_schema_extra={"text": "geo_file"})  # file's text
    georeference: str | None = Field(
        None, description="coords.txt of a split-merge parent.", json_schema_extra={"internal": True}
    )


class OpensfmOptions(StageOptions):
    """Options of the `opensfm` stage (structure from motion; pycolmap is the engine)."""

    feature_quality: Quality = Field(
        "high",
        description="Feature extraction size: ultra=full image, high=1/2, medium=1/4, low=1/8, lowest=1/16.",
    )
    min_num_features: int = Field(10000, ge=100, le=200000, description="Features to extract per photo.")
    matcher_neighbors: int = Field(
        0,
        ge=0,
        le=1000,
        description="Match each photo with its N nearest photos by GPS; 0 = neighbours of a triangulation.",
    )
    camera_lens: CameraLens = Field(
        "auto", description="Camera model: auto, perspective, brown, fisheye, fisheye_opencv."
    )
    sfm_algorithm: SfmAlgorithm = Field(
        "incremental",
        description="Structure from motion: incremental; triangulation from each photo's GPS and gimbal "
        "angles (RTK and a calibrated gimbal; photos without angles: incremental); planar for nadir photos "
        "of flat ground from one altitude.",
    )
    force_gps: bool = Field(False, description="With GCPs, keep the photos' GPS in bundle adjustment too.")
    gcp_accuracy: float = Field(
        0.02, gt=0, le=100, description="GCP survey accuracy in metres (vertical: twice this): their weight."
    )
    gcp_checks: str = Field("", description="GCP names (comma-separated) used as check points, like CHK*.")
    model_seed: str | None = Field(
        None, description="sha256 of a submodel's split_seed/ model.", json_schema_extra={"internal": True}
    )

    @model_validator(mode="after")
    def _supported_lens(self) -> OpensfmOptions:
        if self.camera_lens in ("spherical", "equirectangular", "dual"):
            raise ValueError(
                f"--camera-lens {self.camera_lens} is not supported by odmflow's SfM engine; "
                "use auto, perspective, brown, fisheye or fisheye_opencv"
            )
        return self


class OpenmvsOptions(StageOptions):
    """Options of the `openmvs` stage (dense matching; odmflow's own CPU engine)."""

    pc_quality: Quality = Field(
        "medium",
        description="Depth-map size: ultra=1/2 photo, high=1/4, medium=1/8, low=1/16, lowest=1/32.",
    )
    pc_skip_geometric: bool = Field(
        False, description="Skip the geometric pass that makes depth maps consistent with their neighbours."
    )


class FilterpointsOptions(StageOptions):
    """Options of the `odm_filterpoints` stage (outlier removal, thinning, cropping)."""

    pc_filter: float = Field(
        5.0, ge=0, le=100, description="Remove points N standard deviations from their neighbours (0 = off)."
    )
    pc_sample: float = Field(0.0, ge=0, le=100, description="Keep one point per N metres (0 = all).")
    boundary: str | None = Field(
        None,
        description="GeoJSON polygon file: crop the point cloud to it.",
        json_schema_extra={"text": "geojson_file"},  # the model holds the file's text
    )
    auto_boundary: bool = Field(False, description="Crop to the camera positions' hull plus a margin.")
    auto_boundary_distance: float = Field(
        0.0, ge=0, le=100000, description="Margin of --auto-boundary in metres (0 = 100 x average GSD)."
    )
    fast_orthophoto: bool = Field(False, description="Skip dense matching (openmvs); use the sparse cloud.")

    @model_validator(mode="after")
    def _valid_boundary(self) -> FilterpointsOptions:
        if self.boundary is not None:
            from odm_core.geo.boundary import parse_boundary

            parse_boundary(self.boundary)
        return self


class MeshingOptions(StageOptions):
    """Options of the `odm_meshing` stage (the 3D and 2.5D meshes)."""

    mesh_octree_depth: int = Field(
        11,
        ge=1,
        le=14,
        description="Octree depth of the Poisson reconstruction (8-12 usual; +1 = 4x faces); at most as fine "
        "as the cloud's sampling.",
    )
    mesh_size: int = Field(
        200000, ge=100, le=100_000_000, description="The meshes' maximum vertex count (2x as many faces)."
    )
    skip_3dmodel: bool = skip_3dmodel_field()
    use_3dmesh: bool = use_3dmesh_field()


class TexturingOptions(StageOptions):
    """Options of the `mvs_texturing` stage (the textured models)."""

    texturing_skip_global_seam_leveling: bool = Field(
        False, description="Do not level colours across photos (for radiometric data)."
    )
    texturing_keep_unseen_faces: bool = Field(False, description="Keep the faces that no photo sees.")
    texturing_single_material: bool = Field(
        False, description="One material and one texture image per model instead of several."
    )
    gltf: bool = Field(False, description="Also write the textured model as binary glTF (.glb).")
    skip_3dmodel: bool = skip_3dmodel_field()
    use_3dmesh: bool = use_3dmesh_field()


SUBMODEL_SKIPS = {"split", "merge", "odm_meshing", "mvs_texturing"}


class PipelineOptions(StageOptions):
    """All options of a run: each stage's model plus how the run is driven."""

    dataset: DatasetOptions = DatasetOptions()
    opensfm: OpensfmOptions = OpensfmOptions()
    split: SplitOptions = SplitOptions()
    merge: MergeOptions = MergeOptions()
    openmvs: OpenmvsOptions = OpenmvsOptions()
    odm_filterpoints: FilterpointsOptions = FilterpointsOptions()
    odm_meshing: MeshingOptions = MeshingOptions()
    mvs_texturing: TexturingOptions = TexturingOptions()
    odm_georeferencing: GeoreferencingOptions = GeoreferencingOptions()
    odm_dem: DemOptions = DemOptions()
    odm_orthophoto: OrthophotoOptions = OrthophotoOptions()
    odm_report: ReportOptions = ReportOptions()
    end_with: StageName = Field(STAGES[-1], description="Stop after this stage.")
    rerun_from: StageName | None = Field(
        None, description="Re-run this stage and every one after it (units with unchanged inputs are reused)."
    )
    rerun_all: bool = Field(False, description="Re-run every stage (units with unchanged inputs are reused).")
    max_concurrency: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=1,
        le=1024,
        description="Threads, and local Dask workers, to use (default: CPU count).",
    )
    dask_address: str | None = Field(
        None,
        pattern=r"^(tcp|tls)://[^\s:/]+:\d{1,5}$",
        description="Dask scheduler (tcp://HOST:PORT) for the per-view work; none: a local cluster.",
    )
    submodel: bool = Field(
        False, description="A split-merge submodel's run.", json_schema_extra={"internal": True}
    )

    @model_validator(mode="before")
    @classmethod
    def _implicit_rules(cls, data: Any) -> Any:
        """ODM's implicit rules: --orthophoto-cutline without --crop crops by 0.01 m, and with --crop 0
        the --boundary polygon is the crop (so odm_georeferencing, which owns the crop, gets it);
        --fast-orthophoto sets --skip-3dmodel, which --use-3dmesh overrides (opendm/config.py)."""
        if not isinstance(data, dict):
            return data
        return implicit_rules(data, GeoreferencingOptions.model_fields["crop"].default)

    @model_validator(mode="after")
    def _order(self) -> PipelineOptions:
        if self.rerun_from and STAGES.index(self.rerun_from) > STAGES.index(self.end_with):
            raise ValueError(
                f"--rerun-from {self.rerun_from} comes after --end-with {self.end_with}; nothing would run"
            )
        if self.merge.merge == "dem" and not (self.odm_dem.dsm or self.odm_dem.dtm):
            raise ValueError(
                "--merge dem merges the submodels' DSM and DTM, and this run makes neither: add --dsm "
                "(and/or --dtm), or choose another --merge (all, pointcloud, orthophoto)"
            )
        return self

    def skipped_stages(self) -> frozenset[str]:
        """Stages this run leaves out (ODM skips dense matching with --fast-orthophoto; a submodel makes
        only what the merge reads)."""
        fast = {"openmvs"} if self.odm_filterpoints.fast_orthophoto else set()
        return frozenset(fast | (SUBMODEL_SKIPS if self.submodel else set()))

    def stage_options(self, stage: str, image_groups: bool = False) -> StageOptions:
        """What a stage's task receives: its own options; `split`, when the run may split (--split or
        --split-image-groups given, or the project has an image_groups.txt: `image_groups`), also the
        options its submodels run with (they run the later stages, so those options enter its
        fingerprint; a run that cannot split does not re-run its split stage for them)."""
        opts: StageOptions = getattr(self, stage)
        may_split = image_groups or self.split.split_image_groups is not None
        may_split = may_split or self.split.split != SplitOptions().split
        if stage == "split" and may_split:
            return opts.model_copy(update={"submodel_options": submodel_options(self)})
        return opts

    def forced_stages(self) -> set[str]:
        """Stages whose checkpoints are ignored in this run (in a split survey, `merge` too when the
        submodels rerun: see submodel_rerun)."""
        if self.rerun_all:
            return set(STAGES)
        if self.rerun_from:
            return set(STAGES[STAGES.index(self.rerun_from) :])
        return set()

    def submodel_rerun(self) -> dict[str, Any]:
        """The rerun options a split survey's submodels take from this run's: --rerun-all, or
        --rerun-from a stage after `merge` that they run (up to SUBMODEL_END), and then the merge runs
        again too; none for earlier stages (those re-cut the submodels, whose checkpoints then follow
        their new content)."""
        if self.rerun_all:
            return {"rerun_all": True}
        merge, rerun = STAGES.index("merge"), STAGES.index(self.rerun_from) if self.rerun_from else -1
        if merge < rerun <= STAGES.index(SUBMODEL_END):
            return {"rerun_from": self.rerun_from}
        return {}


def _check_registry() -> None:
    """Each registry entry's options model is a stage model here and the PipelineOptions field of the
    stage's name (run at import: an entry naming a missing model fails here, never later)."""
    for spec in STAGE_SPECS:
        model = globals().get(spec.options)
        if not (isinstance(model, type) and issubclass(model, StageOptions)):
            raise RuntimeError(f"registry: {spec.name}'s options model {spec.options} is not in {__name__}")
        field = PipelineOptions.model_fields.get(spec.name)
        if field is None or field.annotation is not model:
            raise RuntimeError(f"registry: PipelineOptions.{spec.name} must be a {spec.options}")


_check_registry()
