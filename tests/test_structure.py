"""The code's shape, read from the source with `ast` (nothing is imported): no import cycles, the layers
import downwards only (odmflow -> flows -> tasks -> odm_core, and odm_core has no Prefect), a stage never
imports another stage, flows only wire, and modules and functions stay short."""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("odm_core", "tasks", "flows", "odmflow")
SHORT_FUNCTION_DIRS = (*PACKAGES, "benchmarks", "scripts")
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60
# Computation belongs in odm_core; a flow module that needs one of these is computing, not wiring.
NUMERIC_LIBRARIES = {"numpy", "scipy", "cv2", "open3d", "rasterio", "pycolmap", "laspy", "shapely", "pyproj"}


@dataclass(frozen=True)
class Import:
    """One import statement's target, as an absolute dotted name."""

    target: str
    line: int
    module_level: bool  # False inside a function (a deferred import)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, Path]:
    """Every module of the four packages, by dotted name."""
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(node: ast.AST, in_function: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """Import statements under `node` that run (not those under `if TYPE_CHECKING:`), with whether
    they sit inside a function."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for sub in child.orelse:
                yield from _import_nodes(ast.Module(body=[sub], type_ignores=[]), in_function)
            continue
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, in_function
        inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        yield from _import_nodes(child, inner)


def _resolve_from(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module if is_package else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def imports_of(module: str) -> list[Import]:
    """What a module of the packages imports."""
    path = _modules()[module]
    return imports_in(_tree(path), module, path.name == "__init__.py")


def imports_in(tree: ast.Module, module: str, is_package: bool) -> list[Import]:
    """What the source of `module` imports; `from a.b import c` names a.b.c when c is a module of the
    packages, relative imports are made absolute."""
    found: list[Import] = []
    for node, in_function in _import_nodes(tree):
        if isinstance(node, ast.Import):
            found += [Import(alias.name, node.lineno, not in_function) for alias in node.names]
            continue
        assert isinstance(node, ast.ImportFrom)
        base = _resolve_from(module, is_package, node)
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            found.append(Import(sub if sub in _modules() else base, node.lineno, not in_function))
    return found


def _internal(target: str) -> str | None:
    """The module of the packages an import target loads (its longest known prefix), if any."""
    parts = target.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        if name in _modules():
            return name
    return None


def import_graph(module_level_only: bool) -> dict[str, set[str]]:
    """module -> the modules of the packages it imports."""
    graph: dict[str, set[str]] = {}
    for module in _modules():
        targets = {
            _internal(imp.target) for imp in imports_of(module) if imp.module_level or not module_level_only
        }
        graph[module] = {t for t in targets if t is not None and t != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _violations(prefix: str, wanted: Callable[[str, str], bool]) -> list[str]:
    """`module:line -> target` for every import in modules under `prefix` that `wanted(module, target)`."""
    return [
        f"{module}:{imp.line} -> {imp.target}"
        for module in _modules()
        if module == prefix or module.startswith(prefix + ".")
        for imp in imports_of(module)
        if wanted(module, imp.target)
    ]


def _under(target: str, package: str) -> bool:
    return target == package or target.startswith(package + ".")


def _any_of(*packages: str) -> Callable[[str, str], bool]:
    return lambda _module, target: any(_under(target, p) for p in packages)


# --- the checks ----------------------------------------------------------------------------------


def _none(what: str, found: list[str] | list[list[str]] | dict[str, int]) -> None:
    """Fail listing every offender (pytest's diff would show only the first)."""
    items = found.items() if isinstance(found, dict) else found
    assert not found, f"{what}:\n" + "\n".join(f"  {item}" for item in items)


def test_the_checks_see_the_code() -> None:
    """Imports resolve as Python does, and the cycle finder finds cycles."""
    assert len(_modules()) > 60
    source = """
from odm_core import layout
from odm_core.layout import ProjectTree
from . import dataset
from .. import artifacts
import odm_core.registry as registry
if TYPE_CHECKING:
    import flows.odm_pipeline
def later():
    from tasks import remote
"""
    found = imports_in(ast.parse(source), "odm_core.stages.opensfm", is_package=False)
    assert [(i.target, i.module_level) for i in found] == [
        ("odm_core.layout", True),
        ("odm_core.layout", True),
        ("odm_core.stages.dataset", True),
        ("odm_core.artifacts", True),
        ("odm_core.registry", True),
        ("tasks.remote", False),
    ]
    assert "odm_core.layout" in import_graph(module_level_only=True)["odm_core.stages.dataset"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_at_module_level() -> None:
    _none("import cycles", cycles(import_graph(module_level_only=True)))


def test_no_import_cycle_counting_deferred_imports() -> None:
    """Imports inside functions count too: a deferred import only hides a cycle from Python."""
    _none("import cycles", cycles(import_graph(module_level_only=False)))


def test_tasks_never_import_flows() -> None:
    _none("tasks importing flows", _violations("tasks", _any_of("flows")))


def test_odm_core_never_imports_prefect() -> None:
    _none("odm_core importing Prefect", _violations("odm_core", _any_of("prefect", "prefect_dask")))


def test_odm_core_never_imports_the_layers_above() -> None:
    above = _any_of("tasks", "flows", "odmflow")
    _none("odm_core importing tasks/flows/odmflow", _violations("odm_core", above))


def test_a_stage_never_imports_another_stage() -> None:
    def other_stage(module: str, target: str) -> bool:
        stage = _internal(target)
        return stage is not None and stage.startswith("odm_core.stages.") and stage != module

    _none("stage modules importing other stages", _violations("odm_core.stages", other_stage))


def test_no_odm_core_module_over_300_lines() -> None:
    long = {
        name: n
        for name, path in _modules().items()
        if name.startswith("odm_core") and (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    _none(f"odm_core modules over {MAX_MODULE_LINES} lines", long)


def _functions(tree: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def test_no_function_over_60_lines() -> None:
    """From the `def` line to the last line of the body (decorators not counted)."""
    long = {
        f"{path.relative_to(ROOT)}:{fn.lineno} {fn.name}": n
        for folder in SHORT_FUNCTION_DIRS
        for path in sorted((ROOT / folder).rglob("*.py"))
        for fn in _functions(_tree(path))
        if (n := (fn.end_lineno or fn.lineno) - fn.lineno + 1) > MAX_FUNCTION_LINES
    }
    _none(f"functions over {MAX_FUNCTION_LINES} lines", long)


def _is_task_decorator(node: ast.expr) -> bool:
    target = node.func if isinstance(node, ast.Call) else node
    return (isinstance(target, ast.Name) and target.id == "task") or (
        isinstance(target, ast.Attribute) and target.attr == "task"
    )


def test_flows_define_no_task() -> None:
    """No @task (or @task(...)) in flows/, and no `task` imported from Prefect to build one with."""
    paths = sorted((ROOT / "flows").rglob("*.py"))
    tasks = [
        f"{path.relative_to(ROOT)}:{fn.lineno} {fn.name}"
        for path in paths
        for fn in _functions(_tree(path))
        if any(_is_task_decorator(d) for d in fn.decorator_list)
    ]
    tasks += [
        f"{path.relative_to(ROOT)}:{node.lineno} imports prefect's task"
        for path in paths
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.ImportFrom)
        and (node.module or "").startswith("prefect")
        and any(alias.name == "task" for alias in node.names)
    ]
    _none("tasks defined in flows/ (tasks belong in tasks/)", tasks)


def test_flows_import_no_numeric_library() -> None:
    def numeric(_module: str, target: str) -> bool:
        return target.split(".")[0] in NUMERIC_LIBRARIES

    _none("flows importing numeric libraries (compute in odm_core)", _violations("flows", numeric))
