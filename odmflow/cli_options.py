"""`odmflow run`'s option flags, made from the catalogue in `odm_core.option_specs`.

Typer reads a command's parameters from its signature; `run_signature` builds that signature from the
catalogue (one `inspect.Parameter` per option, annotated `Annotated[type, typer.Option(...)]`), so every
flag has its model field's name, default, help and choices. Booleans that default to False are presence
flags (`--dsm`); those that default to True have a `--no-` form (`--cog/--no-cog`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from odm_core.option_specs import OPTIONS, RUN, OptionSpec, flag_for, pipeline_options
from odm_core.options import PipelineOptions
from odmflow.cli_errors import fail


def parameter_name(spec: OptionSpec) -> str:
    """The Python name typer passes an option's value by: the field name."""
    return spec.name.replace("-", "_")


def _panel(spec: OptionSpec) -> str:
    return "Run" if spec.stage == RUN else f"Stage {spec.stage}"


def _option(spec: OptionSpec) -> Any:
    """The typer.Option of one catalogue entry."""
    if spec.kind == "bool":
        decl = f"{spec.flag}/--no-{spec.name}" if spec.default else spec.flag
        return typer.Option(decl, help=spec.help, rich_help_panel=_panel(spec))
    metavar = "FILE" if spec.text == "geojson_file" else None
    return typer.Option(spec.flag, help=spec.help, metavar=metavar, rich_help_panel=_panel(spec))


def _flag_type(spec: OptionSpec) -> Any:
    """The value type typer parses: the field's, or a path for an option whose value is a file's text."""
    return Path | None if spec.text == "geojson_file" else spec.annotation


def option_parameters() -> list[inspect.Parameter]:
    """One keyword parameter per catalogue option, with the model's default."""
    return [
        inspect.Parameter(
            parameter_name(spec),
            inspect.Parameter.KEYWORD_ONLY,
            default=spec.default,
            annotation=Annotated[_flag_type(spec), _option(spec)],
        )
        for spec in OPTIONS
    ]


def with_option_flags(command: Callable[..., None]) -> Callable[..., None]:
    """Give `command(first, **options, rest...)` the catalogue's flags after its first parameter.

    The command takes the options as `**options` keyed by parameter name; its own parameters
    (PROJECT, --verbose) keep their annotations.
    """
    own = [
        p for p in inspect.signature(command, eval_str=True).parameters.values() if p.kind != p.VAR_KEYWORD
    ]
    first, rest = own[:1], [p.replace(kind=p.KEYWORD_ONLY) for p in own[1:]]
    command.__signature__ = inspect.Signature([*first, *option_parameters(), *rest])  # type: ignore[attr-defined]
    return command


def validation_message(err: ValidationError, flag_of: Callable[[str], str | None] = flag_for) -> str:
    """pydantic's errors as lines that name the flag of each bad field."""
    lines = []
    for e in err.errors():
        field = next((str(loc) for loc in reversed(e["loc"]) if isinstance(loc, str)), "")
        msg = e["msg"].removeprefix("Value error, ")
        flag = flag_of(field) or field
        lines.append(f"{flag}: {msg}" if flag else msg)
    return "invalid options:\n  " + "\n  ".join(lines)


def options_from_flags(values: Mapping[str, Any]) -> PipelineOptions:
    """PipelineOptions from the flags' values (keyed by parameter name); a bad value exits naming its flag."""
    by_name = {}
    for spec in OPTIONS:
        value = values[parameter_name(spec)]
        if spec.text and value is not None:
            try:
                value = spec.convert(str(value))
            except ValueError as err:
                raise fail(str(err)) from None
        by_name[spec.name] = value
    try:
        return pipeline_options(by_name)
    except ValidationError as err:
        raise fail(validation_message(err)) from None
