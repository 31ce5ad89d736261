"""The catalogue of a run's options, derived from the options models' fields.

Each user-facing option has ODM's name (the field name with dashes), the model fields it sets (a field
that several stages share, such as `ignore_gsd`, is one option setting all of them), its type, default,
domain (Literal choices, numeric bounds, pattern) and help (the Field's description). `odmflow run`'s
flags, `odmflow submit -o NAME=VALUE` and NodeODM's `/options` all read this one list, so an option is
added by adding a Field to its stage's model and nothing else.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from odm_core.option_files import read_boundary, read_gcp, read_geo, read_image_groups_file
from odm_core.options import PipelineOptions, StageOptions

RUN = "run"  # the `stage` of an option that drives the run (a PipelineOptions field of its own)
_BOUND_SIGNS = {"gt": "<", "ge": "<=", "lt": "<", "le": "<="}


# How a text value becomes a field's value, by the `text` key of a Field's json_schema_extra.
TEXT_READERS: dict[str, Callable[[str], Any]] = {
    "geojson_file": lambda value: read_boundary(Path(value)),
    "geo_file": lambda value: read_geo(Path(value)),
    "gcp_file": lambda value: read_gcp(Path(value)),
    "image_groups_file": lambda value: read_image_groups_file(Path(value)),
}


@dataclass(frozen=True)
class OptionSpec:
    """One user-facing option of a run, as its model fields declare it."""

    name: str  # ODM's name without dashes, e.g. "feature-quality"
    fields: tuple[tuple[str, str], ...]  # (stage key in PipelineOptions, or RUN; field name)
    annotation: Any  # the field's type, e.g. Literal["ultra", ...], float, StageName | None
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    bounds: tuple[tuple[str, float], ...] = ()  # ("ge", 100), ("le", 200000)
    pattern: str | None = None
    text: str | None = None  # a key of TEXT_READERS, or None: pydantic parses the text

    @property
    def flag(self) -> str:
        """The command-line flag, e.g. "--feature-quality"."""
        return f"--{self.name}"

    @property
    def stage(self) -> str:
        """The stage whose model holds the option (the first one for a shared field), or RUN."""
        return self.fields[0][0]

    @property
    def kind(self) -> str:
        """NodeODM's type: bool, int, float, enum or string."""
        base = _without_none(self.annotation)
        if self.choices is not None:
            return "enum"
        return {bool: "bool", int: "int", float: "float"}.get(base, "string")

    @property
    def domain(self) -> list[str] | str:
        """The accepted values: the choices, or a phrase such as "float: 0 < x <= 1000"."""
        if self.choices is not None:
            return list(self.choices)
        if self.text == "geojson_file":
            return "GeoJSON file"
        words = {"int": "integer", "float": "float", "string": "string", "bool": ""}[self.kind]
        lower = [f"{v:g} {_BOUND_SIGNS[op]} " for op, v in self.bounds if op in ("gt", "ge")]
        upper = [f" {_BOUND_SIGNS[op]} {v:g}" for op, v in self.bounds if op in ("lt", "le")]
        if lower or upper:
            return f"{words}: {''.join(lower)}x{''.join(upper)}"
        return f"{words}: {self.pattern}" if self.pattern else words

    @property
    def node_domain(self) -> list[str] | str:
        """The domain in NodeODM's grammar, which clients (ClusterODM, WebODM) check values against: the
        choices (with the default), "json" for a GeoJSON value, "" for a flag, "integer: a <= x <= b",
        "float > a", "string"...

        It comes from the same bounds as the model's check, strict or not, so a client refuses what the
        node refuses. NodeODM's range form is inclusive only: an integer's strict bound becomes the next
        integer, and a float range with a strict bound is written as that bound alone ("float > 0", as
        ODM's own help says); the node still checks the other bound when a task is created.
        """
        if self.choices is not None:
            return [*self.choices, *([] if str(self.default) in self.choices else [str(self.default)])]
        if self.text == "geojson_file":
            return "json"
        words = {"int": "integer", "float": "float", "string": "string", "bool": ""}[self.kind]
        bounds = [_inclusive(op, v) if self.kind == "int" else (op, v) for op, v in self.bounds]
        lower = [(op, v) for op, v in bounds if op in ("gt", "ge")]
        upper = [(op, v) for op, v in bounds if op in ("lt", "le")]
        strict = [(op, v) for op, v in bounds if op in ("gt", "lt")]
        if lower and upper and not strict:
            return f"{words}: {_number(lower[0][1])} <= x <= {_number(upper[0][1])}"
        if strict or lower or upper:
            op, v = (strict or lower or upper)[0]
            sign = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}[op]
            return f"{words} {sign} {_number(v)}"
        return words

    def convert(self, value: str) -> Any:
        """The field value for a text value: read by the option's reader, else left to pydantic."""
        return TEXT_READERS[self.text](value) if self.text else value

    def node_option(self) -> dict[str, Any]:
        """NodeODM's /options item: {name, type, value (the default as text), domain, help}."""
        value = str(self.default).lower() if self.kind == "bool" else str(self.default)
        return {
            "name": self.name,
            "type": self.kind,
            "value": value,
            "domain": self.node_domain,
            "help": self.help,
        }


def _inclusive(op: str, value: float) -> tuple[str, float]:
    """An integer bound made inclusive: x > 0 is x >= 1, x < 10 is x <= 9."""
    if op == "gt":
        return "ge", float(math.floor(value) + 1)
    if op == "lt":
        return "le", float(math.ceil(value) - 1)
    return op, value


def _number(value: float) -> str:
    """A bound as NodeODM's domain grammar writes numbers: digits, sign and point, no exponent."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _without_none(annotation: Any) -> Any:
    """`X` for `X | None`, else the annotation itself."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _extra(field: FieldInfo) -> dict[str, Any]:
    extra = field.json_schema_extra
    return dict(extra) if isinstance(extra, dict) else {}


def is_internal(field: FieldInfo) -> bool:
    """Whether a field is set by the models themselves, not by a user option (no flag)."""
    return bool(_extra(field).get("internal"))


def stage_models(pipeline: type[PipelineOptions] = PipelineOptions) -> dict[str, type[StageOptions]]:
    """PipelineOptions' stage fields and their models, in pipeline order."""
    return {
        name: field.annotation
        for name, field in pipeline.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, StageOptions)
    }


def _spec(name: str, fields: list[tuple[str, str]], info: FieldInfo) -> OptionSpec:
    base = _without_none(info.annotation)
    choices = tuple(str(c) for c in get_args(base)) if get_origin(base) is Literal else None
    bounds = tuple(
        (op, float(getattr(m, op)))
        for m in info.metadata
        if isinstance(m, at.Gt | at.Ge | at.Lt | at.Le)
        for op in _BOUND_SIGNS
        if hasattr(m, op)
    )
    pattern = next((m.pattern for m in info.metadata if getattr(m, "pattern", None)), None)
    text = _extra(info).get("text")
    if text is not None and text not in TEXT_READERS:
        raise TypeError(f"option --{name}: unknown text reader {text!r}; add it to TEXT_READERS")
    default = info.get_default(call_default_factory=True)
    help_ = info.description or ""
    return OptionSpec(name, tuple(fields), info.annotation, default, help_, choices, bounds, pattern, text)


def _model_fields(key: str, model: type[BaseModel]) -> list[tuple[str, str, FieldInfo]]:
    return [(key, f, info) for f, info in model.model_fields.items() if not is_internal(info)]


def build_catalogue(pipeline: type[PipelineOptions] = PipelineOptions) -> tuple[OptionSpec, ...]:
    """Every user-facing option: stage fields in pipeline order, then the run's own fields.

    Raises TypeError when fields of one name disagree (type, default, bounds, help), so a shared
    option never means two things.
    """
    models = stage_models(pipeline)
    found = [entry for key, model in models.items() for entry in _model_fields(key, model)]
    found += [entry for entry in _model_fields(RUN, pipeline) if entry[1] not in models]
    grouped: dict[str, list[tuple[str, str, FieldInfo]]] = {}
    for key, field, info in found:
        grouped.setdefault(field.replace("_", "-"), []).append((key, field, info))
    specs = []
    for name, entries in grouped.items():
        fields = [(key, field) for key, field, _ in entries]
        spec = _spec(name, fields, entries[0][2])
        for key, field, info in entries[1:]:
            if _spec(name, fields, info) != spec:
                raise TypeError(
                    f"option --{name}: {key}.{field} disagrees with {fields[0][0]}.{fields[0][1]}"
                )
        specs.append(spec)
    return tuple(specs)


OPTIONS: tuple[OptionSpec, ...] = build_catalogue()
OPTIONS_BY_NAME: dict[str, OptionSpec] = {spec.name: spec for spec in OPTIONS}


def flag_for(field: str) -> str | None:
    """The flag that sets a model field (an internal field copied from an option names that option)."""
    spec = OPTIONS_BY_NAME.get(field.replace("_", "-"))
    return spec.flag if spec else None


def pipeline_options(values: Mapping[str, Any]) -> PipelineOptions:
    """PipelineOptions from option values keyed by ODM name ({"feature-quality": "medium", ...}).

    Each value goes to every field of its option. Raises ValueError naming an unknown option, and
    pydantic's ValidationError (a ValueError) for a bad value.
    """
    nested: dict[str, dict[str, Any]] = {}
    for name, value in values.items():
        spec = OPTIONS_BY_NAME.get(name)
        if spec is None:
            raise ValueError(f"unknown option --{name}")
        for key, field in spec.fields:
            if key == RUN:
                nested[field] = value
            else:
                nested.setdefault(key, {})[field] = value
    return PipelineOptions.model_validate(nested)


def pipeline_options_from_odm(values: Mapping[str, str]) -> PipelineOptions:
    """PipelineOptions from ODM-style names and text values ({"--feature-quality": "medium", ...}).

    A text value is read as its option says (--boundary: the GeoJSON file's text), else pydantic parses
    it ("true", "5"). Raises ValueError naming an unknown option, an unreadable file or a bad value.
    """
    converted: dict[str, Any] = {}
    for odm_name, value in values.items():
        name = odm_name.lstrip("-")
        spec = OPTIONS_BY_NAME.get(name)
        if spec is None:
            raise ValueError(f"unknown option --{name}")
        converted[name] = spec.convert(value)
    return pipeline_options(converted)
