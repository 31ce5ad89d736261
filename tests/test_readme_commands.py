"""Every `odmflow` command the README and ARCHITECTURE.md name exists in the installed console script.

The commands are read from the docs (fenced shell blocks and inline code), so a command the docs name and
the app lacks fails here, run as a user runs it: the `odmflow` executable of this environment, in a
subprocess. The terminal test reads the output of the shared `processed` run.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main

from odm_core.layout import ProjectTree
from odmflow.cli import app
from tests.conftest import CONSOLE_SCRIPT, REPO

DOCS = ("README.md", "ARCHITECTURE.md")
# At least these, so a parser that finds nothing cannot pass.
EXPECTED = {
    ("run",),
    ("synthetic",),
    ("submit",),
    ("list",),
    ("status",),
    ("logs",),
    ("cancel",),
    ("download",),
    ("server", "up"),
    ("server", "status"),
    ("server", "down"),
    ("node",),
}
_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
_INLINE = re.compile(r"`(odmflow [^`]+)`")
_INVOCATION = re.compile(r"(?:^|\s)(?:\S*/)?odmflow\s+(.*)")
_SHELL_SPLIT = re.compile(r"&&|\|\||;|\s\|\s")
_WORD = re.compile(r"[a-z][a-z0-9-]*(\|[a-z][a-z0-9-]*)*")


def doc_invocations(text: str) -> list[str]:
    """The argument strings after `odmflow` in a Markdown text's shell blocks and inline code spans."""
    lines = [line.split("#")[0] for block in _FENCE.findall(text) for line in block.splitlines()]
    segments = [seg for line in lines for seg in _SHELL_SPLIT.split(line)]
    found = [m.group(1) for seg in segments if (m := _INVOCATION.search(seg))]
    return found + [span.removeprefix("odmflow ") for span in _INLINE.findall(text)]


def command_paths(invocation: str, root: Any) -> set[tuple[str, ...]]:
    """The command paths an invocation names, `a|b` alternatives expanded.

    A word after a group of the app is its subcommand; a word the app does not know ends the path (its
    `--help` then fails, as it does for the user).
    """
    paths: set[tuple[str, ...]] = set()
    words = invocation.split()
    if not words or not _WORD.fullmatch(words[0]):
        return paths
    for name in words[0].split("|"):
        group = root.commands.get(name)
        rest = words[1:]
        if hasattr(group, "commands") and rest and _WORD.fullmatch(rest[0]):
            paths |= {(name, *sub) for sub in command_paths(" ".join(rest), group)}
        else:
            paths.add((name,))
    return paths


def documented_commands() -> set[tuple[str, ...]]:
    """Every command path README.md and ARCHITECTURE.md name."""
    root = typer.main.get_command(app)
    paths: set[tuple[str, ...]] = set()
    for doc in DOCS:
        for invocation in doc_invocations((REPO / doc).read_text()):
            paths |= command_paths(invocation, root)
    return paths


def test_parser_reads_groups_alternatives_and_shell_lines() -> None:
    text = (
        "```bash\n.venv/bin/odmflow synthetic demo && .venv/bin/odmflow run demo   # odmflow ghost\n"
        "odmflow list | head\ndask worker tcp://x\n```\n"
        "See `odmflow server up|down` and `odmflow logs RUN`.\n"
    )
    root = typer.main.get_command(app)
    found = {p for inv in doc_invocations(text) for p in command_paths(inv, root)}
    assert found == {("synthetic",), ("run",), ("list",), ("server", "up"), ("server", "down"), ("logs",)}


def test_docs_name_at_least_the_known_commands() -> None:
    found = documented_commands()
    assert found >= EXPECTED, f"not found in the docs: {sorted(EXPECTED - found)}"


@pytest.mark.parametrize("path", sorted(documented_commands() | EXPECTED), ids=" ".join)
def test_documented_command_answers_help(path: tuple[str, ...]) -> None:
    """`odmflow PATH --help` through the installed console script, as the docs' reader would type it."""
    result = subprocess.run(
        [str(CONSOLE_SCRIPT), *path, "--help"], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "Usage:" in out and f"odmflow {' '.join(path)}" in out, out


def test_terminal_shows_progress_lines_not_prefect_task_runs(processed: ProjectTree) -> None:
    """Without -v, the depth-map and tile task runs on the Dask workers print no Prefect lines."""
    terminal = (processed.root.parent / "run.log").read_text()
    terminal += (processed.root.parent / "run.stderr.log").read_text()
    assert re.search(r"\] openmvs: 100% ", terminal), terminal  # odmflow's own progress lines are there
    assert "odmflow: processing" in terminal
    for prefect_line in ("Task run", "Flow run", "Finished in state"):
        assert prefect_line not in terminal, terminal


def test_prefect_task_run_lines_still_reach_the_api(
    processed: ProjectTree, prefect_env: dict[str, str]
) -> None:
    """The lines kept off the terminal are in the run's logs: the end of a depth-map task run on a worker."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas import filters

    depth = filters.TaskRunFilter(name=filters.TaskRunFilterName(like_="depth-"))
    with SyncPrefectClient(prefect_env["PREFECT_API_URL"]) as client:
        depth_runs = client.read_task_runs(task_run_filter=depth)
        assert depth_runs, "no depth-map task runs recorded"
        ids = filters.LogFilterTaskRunId(any_=[run.id for run in depth_runs])
        log_filter = filters.LogFilter(task_run_id=ids)
        messages = [log.message for log in client.read_logs(log_filter=log_filter)]
    assert any(m.startswith("Finished in state Completed") for m in messages), messages


_CONSOLE_LEVELS = (  # a fresh process configures Prefect's logging as a Dask worker's task engine does
    "import logging; from prefect.logging.configuration import ensure_logging_setup; "
    "from prefect.logging.handlers import PrefectConsoleHandler; ensure_logging_setup(); "
    "print([h.level for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)]); "
    "import distributed; print(logging.getLogger('distributed.worker').getEffectiveLevel())"
)


@pytest.mark.parametrize(("verbose", "levels"), [(False, "[30]\n50"), (True, "[0]\n20")])
def test_child_processes_print_prefect_lines_only_with_verbose(
    verbose: bool, levels: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The processes a run spawns (its Dask workers) configure Prefect's console at WARNING and Dask's
    loggers at CRITICAL unless -v."""
    import logging

    import pycolmap

    from odmflow.runner import CHILD_CONSOLE_LEVEL_ENV, CHILD_DASK_LEVEL_ENV, _quiet_prefect_console

    for name in (CHILD_CONSOLE_LEVEL_ENV, CHILD_DASK_LEVEL_ENV):
        monkeypatch.setenv(name, "unset")  # so that the teardown restores what was there
        monkeypatch.delenv(name)
    monkeypatch.setattr(pycolmap.logging, "minloglevel", pycolmap.logging.minloglevel)
    monkeypatch.setattr(logging.getLogger("distributed"), "level", logging.getLogger("distributed").level)
    _quiet_prefect_console(verbose)
    child = subprocess.run(
        [sys.executable, "-c", _CONSOLE_LEVELS], capture_output=True, text=True, timeout=60, check=True
    )
    assert child.stdout.strip() == levels, child.stdout + child.stderr


def readme_python_blocks() -> list[str]:
    """The README's ```python blocks."""
    text = (REPO / "README.md").read_text()
    return re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)


def test_readme_pyodm_script_processes_photos_on_the_node(
    nodeodm_server: dict[str, str], small_survey: Any, tmp_path: Path
) -> None:
    """The README's pyodm script, run as written against a node that `odmflow server up` started."""
    blocks = [b for b in readme_python_blocks() if "from pyodm import Node" in b]
    assert len(blocks) == 1, "the README should hold one pyodm script"
    script = tmp_path / "process.py"
    script.write_text(blocks[0])
    url = f"{nodeodm_server['url']}/?token={nodeodm_server['token']}"
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, str(script), url, str(small_survey.images_dir), str(out)],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "COMPLETED 100%" in done.stdout and "odmflow" in done.stdout
    for product in ("odm_orthophoto/odm_orthophoto.tif", "odm_dem/dsm.tif", "odm_report/shots.geojson"):
        assert (out / product).is_file(), product
