"""No import cycles among tsekit's modules, from an AST import graph of tsekit/ (no code is imported).

Edges: ``import a.b`` and ``from a.b import c`` (``c`` itself when it is a module), relative imports
resolved; an import of a package does not add edges to its parent packages. Three graphs:

* module-level imports, leaving out ``if TYPE_CHECKING:`` blocks (what runs on import): no cycle at all;
* every import, function-local ones included (what can run at all): no cycle outside ``tsekit.cli``,
  whose ``__init__`` assembles its command modules inside ``create_app`` while ``commands`` reads
  ``tsekit.cli.DEBUG`` back inside a command; such a late look-up cannot fail half-initialised;
* every import, ``TYPE_CHECKING`` ones included: the plugin layer (``components`` ← ``plugins`` ←
  ``registry``, ``plugin_index``) is in no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1] / "tsekit"
CORE = {"tsekit.components", "tsekit.plugins", "tsekit.registry", "tsekit.plugin_index", "tsekit.hookspecs"}


def _modules() -> dict[str, Path]:
    mods = {}
    for file in ROOT.rglob("*.py"):
        parts = list(file.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = file
    return mods


def _is_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def import_graph(*, local: bool, type_checking: bool) -> dict[str, set[str]]:
    mods = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for mod, file in mods.items():
        package = mod if file.name == "__init__.py" else mod.rpartition(".")[0]
        out: set[str] = set()

        def visit(node: ast.AST, in_function: bool, *, mod: str = mod, package: str = package, out: set = out) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                    if local:
                        visit(child, True)
                    continue
                if isinstance(child, ast.If) and _is_type_checking(child):
                    if type_checking:
                        visit(child, in_function)
                    for stmt in child.orelse:
                        visit(ast.Module(body=[stmt], type_ignores=[]), in_function)
                    continue
                if isinstance(child, ast.Import):
                    targets = [a.name for a in child.names]
                elif isinstance(child, ast.ImportFrom):
                    base = child.module or ""
                    if child.level:
                        parts = package.split(".")[: len(package.split(".")) - child.level + 1]
                        base = ".".join([*parts, base] if base else parts)
                    targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in child.names]
                else:
                    visit(child, in_function)
                    continue
                for target in targets:
                    found = resolve(target)
                    if found and found != mod:
                        out.add(found)

        visit(ast.parse(file.read_text(encoding="utf-8")), False)
        graph[mod] = out
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start, edges in graph.items():
        if start in index:
            continue
        work = [(start, iter(sorted(edges)))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_graph_sees_imports() -> None:
    graph = import_graph(local=True, type_checking=True)
    assert "tsekit.components" in graph["tsekit.plugins"]
    assert "tsekit.plugins" in graph["tsekit.registry"]
    assert "tsekit.cli.commands" in graph["tsekit.cli"]  # function-local, in create_app
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_cycle_among_module_level_imports() -> None:
    assert cycles(import_graph(local=False, type_checking=False)) == []


def test_no_cycle_counting_function_local_imports_outside_the_cli() -> None:
    found = cycles(import_graph(local=True, type_checking=False))
    assert [c for c in found if not all(m == "tsekit.cli" or m.startswith("tsekit.cli.") for m in c)] == []


def test_plugin_layer_is_in_no_cycle_at_all() -> None:
    found = cycles(import_graph(local=True, type_checking=True))
    assert [c for c in found if CORE & set(c)] == []
    graph = import_graph(local=True, type_checking=True)
    assert not {"tsekit.plugins", "tsekit.registry"} & graph["tsekit.components"]
    assert "tsekit.registry" not in graph["tsekit.plugins"]
