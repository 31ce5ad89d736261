"""NodeODM's options, from odmflow's options catalogue (the same metadata as the CLI's flags).

`/options` lists every catalogue option a client may set, as `OptionSpec.node_option()` writes it.
A client's options (`[{"name": ..., "value": ...}]`, a JSON string on the wire) are read as NodeODM's
`filterOptions` reads them: each value converted by the option's type, unknown names dropped (with a log
line), the result in `/options`' order, `max-concurrency` capped at the node's and added when absent.
The values are then checked by the options models themselves; a bad one is refused with NodeODM's
message, a JSON list naming each option and what is wrong with it.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from odm_core.layout import ProjectTree
from odm_core.option_specs import OPTIONS, OptionSpec, flag_for, pipeline_options
from odm_core.options import PipelineOptions

log = logging.getLogger("odmflow.node")

# Options a client does not set: files the node routes from the uploads (gcp, geo, image_groups.txt),
# ODM's hidden ones (rerun-all), and the node's own Dask cluster.
HIDDEN = frozenset({"gcp", "geo", "split-image-groups", "rerun-all", "dask-address"})
NODE_OPTIONS: tuple[OptionSpec, ...] = tuple(spec for spec in OPTIONS if spec.name not in HIDDEN)
BY_NAME = {spec.name: spec for spec in NODE_OPTIONS}
POST_PROCESSING = ("cog", "gltf")  # added as true unless skipPostProcessing, as NodeODM adds its own
_INT = re.compile(r"^\s*[+-]?\d+")
_FLOAT = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


class OptionsError(ValueError):
    """Options a task cannot have; str() is NodeODM's message: [{"name": ..., "error": ...}, ...]."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__(json.dumps(errors))
        self.errors = errors


@dataclass(frozen=True)
class TaskOptions:
    """A task's options: as its info shows them (typed, `/options` order) and as the flow run gets them."""

    values: list[dict[str, Any]]
    pipeline: dict[str, Any]  # PipelineOptions as JSON (only what was set), the flow run's parameter


def node_options() -> list[dict[str, Any]]:
    """`/options`: {name, type, value, domain, help} for each option a client may set."""
    return [spec.node_option() for spec in NODE_OPTIONS]


def _convert(spec: OptionSpec, value: Any) -> Any:
    """A client's value as NodeODM's typeConversion makes it, then as the model field takes it."""
    if spec.kind == "bool":
        if isinstance(value, bool):
            return value
        if str(value) in ("true", "1", "false", "0"):
            return str(value) in ("true", "1")
        raise ValueError(f"Cannot convert {value} to boolean")
    if spec.kind in ("int", "float"):
        match = (_INT if spec.kind == "int" else _FLOAT).match(str(value))
        if isinstance(value, bool) or match is None:
            raise ValueError(f"Invalid value {value} (not a number)")
        return int(match.group(0)) if spec.kind == "int" else float(match.group(0))
    if spec.text == "geojson_file" and isinstance(value, dict | list):
        return json.dumps(value)
    text = str(value)
    if spec.default is None and text in ("", "None", "none", "null"):
        return None
    return text


def parse_client_options(raw: Any, max_concurrency: int, post_processing: bool = False) -> TaskOptions:
    """A client's options checked and converted; raises OptionsError naming each bad option."""
    given = _as_list(raw)
    names = {str(o.get("name")) for o in given if isinstance(o, dict)}
    for unknown in sorted(names - set(BY_NAME)):
        log.info("dropping option %r: this node has no such option", unknown)
    values: dict[str, Any] = {}
    errors: list[dict[str, str]] = []
    for spec in NODE_OPTIONS:
        entry = next((o for o in given if isinstance(o, dict) and o.get("name") == spec.name), None)
        if entry is None:
            continue
        try:
            values[spec.name] = _convert(spec, entry.get("value"))
        except ValueError as err:
            errors.append({"name": spec.name, "error": str(err)})
    if errors:
        raise OptionsError(errors)
    values["max-concurrency"] = min(values.get("max-concurrency", max_concurrency), max_concurrency)
    if post_processing:
        values.update(dict.fromkeys(POST_PROCESSING, True))
    try:
        model = pipeline_options(values)
    except ValidationError as err:
        raise OptionsError(_errors(err, values)) from None
    ordered = [{"name": s.name, "value": values[s.name]} for s in NODE_OPTIONS if s.name in values]
    return TaskOptions(ordered, model.model_dump(mode="json", exclude_unset=True))


def _as_list(raw: Any) -> list[Any]:
    """The options as a list: NodeODM parses a JSON string and takes anything else but a list as []."""
    if isinstance(raw, str | bytes):
        if not raw.strip():
            return []
        try:
            raw = json.loads(raw)
        except ValueError:
            raise OptionsError([{"name": "options", "error": "Invalid options: not JSON"}]) from None
    return raw if isinstance(raw, list) else []


def _errors(err: ValidationError, values: dict[str, Any]) -> list[dict[str, str]]:
    """pydantic's errors as NodeODM's: the option's name, `Invalid value X (out of range)` and the like."""
    errors = []
    for e in err.errors():
        field = next((str(loc) for loc in reversed(e["loc"]) if isinstance(loc, str)), "")
        flag = flag_for(field)
        named = re.search(r"--([a-z0-9-]+)", e["msg"])
        name = flag.removeprefix("--") if flag else named.group(1) if named else field or "options"
        value = values.get(name, e.get("input"))
        kind = e["type"]
        if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
            text = f"Invalid value {value} (out of range: {e['msg'].lower()})"
        elif kind == "literal_error":
            text = f"Invalid value {value} (not in enum)"
        else:
            text = e["msg"].removeprefix("Value error, ")
        errors.append({"name": name, "error": text})
    return errors


def seeded_submodel_options(root: Path, max_concurrency: int) -> dict[str, Any] | None:
    """The options of an odmflow split run's submodel whose seed.zip brought its submodel_options.json
    (with its share of the model, split_seed/): the flow run's options then, in place of the client's,
    max-concurrency capped at the node's (as ODM's seed markers make its run a submodel). None without
    one; OptionsError naming the file when it is not valid."""
    path = ProjectTree(root).submodel_options_json
    if not path.is_file():
        return None
    try:
        options = PipelineOptions.model_validate_json(path.read_bytes())
    except ValidationError as err:
        first = err.errors()[0]["msg"]
        message = f"seed.zip's {path.name} is not valid: {err.error_count()} errors, first: {first}"
        raise OptionsError([{"name": "seed.zip", "error": message}]) from None
    capped = min(options.max_concurrency, max_concurrency)
    update = {"max_concurrency": capped, "dask_address": None}  # the node's own Dask cluster
    return options.model_copy(update=update).model_dump(mode="json")
