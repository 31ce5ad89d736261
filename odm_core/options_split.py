"""The options of ODM's split-merge stages, `split` and `merge` (ODM's names and defaults), and the
options a submodel runs with."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator

from odm_core.option_fields import StageOptions

MergeWhat = Literal["all", "pointcloud", "orthophoto", "dem"]
SUBMODEL_END = "odm_orthophoto"  # a submodel makes what the merge reads, then stops


class SplitOptions(StageOptions):
    """Options of the `split` stage (a large survey cut into submodels, each run as its own pipeline)."""

    split: int = Field(
        999999,
        ge=2,
        description="Average photos per submodel: a geotagged survey with more photos is split into "
        "submodels processed separately (on any worker of the pool) and merged.",
    )
    split_overlap: float = Field(
        150.0,
        ge=0,
        le=100000,
        description="Metres around a submodel's own photos from which it also takes photos (overlap).",
    )
    split_image_groups: str | None = Field(
        None,
        description="A file of 'photo_filename group_name' lines: one submodel per group instead of "
        "--split's partition (default: the project's image_groups.txt when there is one).",
        json_schema_extra={"text": "image_groups_file"},
    )  # the file's text
    sm_no_align: bool = Field(
        False,
        description="ODM's switch to skip aligning the submodels to each other. odmflow cuts every "
        "submodel from one model of the whole survey, so they are aligned by construction and there is "
        "no alignment to skip: accepted, as ODM's clients send it, and changes nothing.",
    )
    sm_cluster: str | None = Field(
        None,
        description="URL of a NodeODM-compatible node that runs the submodels, "
        "http(s)://HOST:PORT/?token=TOKEN: an odmflow node, or ClusterODM in front of odmflow nodes "
        "(ODM's LocalRemoteExecutor contract).",
    )
    submodel_options: dict[str, Any] | None = Field(
        None,
        description="The pipeline options each submodel runs with (set from the run's options).",
        json_schema_extra={"internal": True},
    )

    @field_validator("sm_cluster")
    @classmethod
    def _node_url(cls, url: str | None) -> str | None:
        if url is None or url == "":
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not a node's URL: give http(s)://HOST:PORT/?token=TOKEN")
        return url


class MergeOptions(StageOptions):
    """Options of the `merge` stage (the submodels' products merged into the project's)."""

    merge: MergeWhat = Field(
        "all", description="What to merge from the submodels: all, pointcloud, orthophoto or dem."
    )
    merge_skip_blending: bool = Field(
        False, description="Merge orthophotos along the cutlines without feathering or colour balance."
    )


def submodel_options(pipeline: BaseModel) -> dict[str, Any]:
    """The options a run's submodels run with, as JSON values: the run's own, without split-merge, ending
    with odm_orthophoto, marked as a submodel (no 3D model nor report; odm_core.options says which stages
    a submodel leaves out). The split stage adds each submodel's georeference, model and resolutions."""
    values = pipeline.model_dump(mode="json")
    values.update(
        split=SplitOptions().model_dump(mode="json"),
        merge=MergeOptions().model_dump(mode="json"),
        end_with=SUBMODEL_END,
        rerun_from=None,
        rerun_all=False,
        submodel=True,
    )
    return values
