"""The project's import graph has no cycles, counting imports made inside functions and
imports by dotted path (a string such as "plugins.email.SendEmail" that a registry or
settings hand to import_module).

A cycle hidden in a function body (a "lazy" import) still ties two modules together: each
needs the other to work, and the order they load in decides whether they do. The layers in
DESIGN.md run one way; these tests hold them to it: no cycles, wings that do not import
each other, and nothing below the wings that imports one.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("tasks", "plugins", "taskservice", "taskcli")
DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")

# Edges (importer, imported) left out of the graph, each with a comment naming the cycle
# it closes and why it cannot be broken yet. None today.
KNOWN_EXCEPTIONS: set[tuple[str, str]] = set()

# DESIGN.md's layers: the wings call the engine and the selectors, never each other; the
# engine, the services and the rules below them import no wing.
WINGS = ("tasks.api", "tasks.admin", "tasks.live", "tasks.djtasks", "tasks.management")
BELOW_THE_WINGS = ("tasks.engine", "tasks.maintenance", "tasks.worker", "tasks.states",
                   "tasks.conf", "tasks.models", "plugins")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue  # generated; they import only models and django
            found[module_name(path)] = path
    return found


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module `name` refers to: itself, or the package holding it."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    targets: set[str] = set()
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import mod` imports the submodule; `from mod import name` the module.
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        elif isinstance(node, ast.Constant) and id(node) not in docstrings:
            # "plugins.email.SendEmail" in the plugin registry, "tasks.….Backend" in
            # settings: a dotted path is imported by whoever reads it.
            if not (isinstance(node.value, str) and DOTTED.fullmatch(node.value)):
                continue
            names = [node.value, node.value.rpartition(".")[0]]
            # Naming the settings module (DJANGO_SETTINGS_MODULE) is where Django starts,
            # not an import of it.
            names = [n for n in names if n in modules and n != "taskservice.settings"][:1]
        else:
            continue
        for name in names:
            target = resolve(name, modules)
            if target and target != module:
                targets.add(target)
    return targets


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    graph = {m: imports_of(m, p, modules) for m, p in modules.items()}
    for importer, imported in KNOWN_EXCEPTIONS:
        # An exception whose edge is gone must leave the list with it.
        assert imported in graph[importer], f"{importer} no longer imports {imported}"
        graph[importer].discard(imported)
    # `from tasks.admin import filters` names the package too; Python loads a module's
    # packages before it anyway, so an edge to one's own ancestor is no cycle.
    for module, targets in graph.items():
        graph[module] = {t for t in targets if not module.startswith(t + ".")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(graph, white)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = grey
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if colour.get(nxt, black) == grey:
                return stack[stack.index(nxt):] + [nxt]
            if colour.get(nxt) == white:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        colour[node] = black
        return None

    for node in sorted(graph):
        if colour[node] == white:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_project_import_graph_is_acyclic():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_reports_a_lazy_import_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def _top_level_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            found.add((node.module or "").partition(".")[0])
    return found


def test_the_console_cli_imports_only_itself_the_standard_library_and_yaml():
    # task-service-cli installs taskcli/ with PyYAML alone: anything else it imported,
    # even lazily, would fail there.
    allowed = {"taskcli", "yaml", "__future__"} | set(sys.stdlib_module_names)
    for path in sorted((ROOT / "taskcli").rglob("*.py")):
        assert _top_level_imports(path) <= allowed, (path.name,
                                                      _top_level_imports(path) - allowed)


def test_imports_inside_functions_are_counted(tmp_path):
    modules = {"tasks.x": tmp_path / "x.py", "tasks.y": tmp_path / "y.py"}
    modules["tasks.x"].write_text("def f():\n    from tasks import y\n")
    assert imports_of("tasks.x", modules["tasks.x"], modules) == {"tasks.y"}


def test_a_dotted_path_string_is_an_import(tmp_path):
    modules = {"plugins.registry": tmp_path / "registry.py", "tasks.plugin": tmp_path / "p.py"}
    modules["plugins.registry"].write_text(
        '"""Docs naming tasks.plugin.Plugin are not imports."""\n'
        'BUILTINS = {"x": "tasks.plugin.Plugin"}\n')
    assert imports_of("plugins.registry", modules["plugins.registry"], modules) == {
        "tasks.plugin"}
    modules["plugins.registry"].write_text('"""Docs naming tasks.plugin.Plugin."""\n')
    assert imports_of("plugins.registry", modules["plugins.registry"], modules) == set()


def _within(module: str, packages: tuple[str, ...]) -> str | None:
    return next((p for p in packages if module == p or module.startswith(p + ".")), None)


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports (edges of the graph) that cross DESIGN.md's layers the wrong way."""
    found = []
    for module, targets in sorted(graph.items()):
        wing, below = _within(module, WINGS), _within(module, BELOW_THE_WINGS)
        for target in sorted(targets):
            other = _within(target, WINGS)
            if other and wing and other != wing:
                found.append(f"{module} -> {target} (one wing importing another)")
            elif other and below:
                found.append(f"{module} -> {target} ({below} imports a wing)")
    return found


def test_wings_import_no_other_wing_and_nothing_below_them_imports_a_wing():
    assert layer_violations(import_graph()) == []


def test_the_layer_check_reports_both_kinds_of_crossing():
    graph = {"tasks.admin.x": {"tasks.live.y", "tasks.admin.z", "tasks.engine"},
             "tasks.engine.runs": {"tasks.api.views", "tasks.states"},
             "plugins.registry": {"tasks.djtasks.plugin"},
             "tasks.apps": {"tasks.djtasks.plugin", "tasks.admin"}}
    assert layer_violations(graph) == [
        "plugins.registry -> tasks.djtasks.plugin (plugins imports a wing)",
        "tasks.admin.x -> tasks.live.y (one wing importing another)",
        "tasks.engine.runs -> tasks.api.views (tasks.engine imports a wing)"]
