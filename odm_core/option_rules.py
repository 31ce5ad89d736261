"""ODM's implicit rules between options (opendm/config.py), applied to a run's options before the models
validate them: one option that sets or refuses another."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def implicit_rules(data: dict[str, Any], default_crop: float) -> dict[str, Any]:
    """--orthophoto-cutline without --crop crops by 0.01 m, and with --crop 0 the --boundary polygon is
    the crop (so odm_georeferencing, which owns the crop, gets it); --fast-orthophoto sets
    --skip-3dmodel, which --use-3dmesh overrides (then the 3D mesh is made from the sparse cloud).
    `data` is PipelineOptions' input (stage name -> options, as models or dicts); returns a new dict.
    """
    geo = _fields(data.get("odm_georeferencing"))
    crop = float(geo.get("crop", default_crop))
    if crop == 0 and _fields(data.get("odm_orthophoto")).get("orthophoto_cutline"):
        geo["crop"] = crop = 0.01
    boundary = _fields(data.get("odm_filterpoints")).get("boundary")
    if crop == 0 and boundary and not geo.get("boundary"):
        geo["boundary"] = boundary
    if geo:
        data = {**data, "odm_georeferencing": geo}
    return _model_rules(data)


def _model_rules(data: dict[str, Any]) -> dict[str, Any]:
    fast = _fields(data.get("odm_filterpoints")).get("fast_orthophoto")
    for stage in ("odm_meshing", "mvs_texturing"):
        fields = _fields(data.get(stage))
        if fast or fields.get("skip_3dmodel"):
            data = {**data, stage: {**fields, "skip_3dmodel": not fields.get("use_3dmesh")}}
    return data


def _fields(value: Any) -> dict[str, Any]:
    """A stage's options as a dict of the values set, whether given as a model or a dict."""
    if isinstance(value, BaseModel):
        return value.model_dump(exclude_unset=True)
    return dict(value) if isinstance(value, dict) else {}
