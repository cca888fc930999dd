"""The package's shape: no import circle between its modules, and rooms layered one way.

Every ``import camexp...`` / ``from camexp... import`` of every module counts, at any depth of
the file (an import inside a function is still a dependency), except the ones under
``if TYPE_CHECKING:`` (annotations only, never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "camexp"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for child in ast.walk(node))
    return skipped


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The camexp modules ``path`` imports (a package's ``__init__`` when only it matches)."""
    tree = ast.parse(path.read_text())
    skipped = _type_checking_nodes(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        for name in names:
            if not name.startswith("camexp"):
                continue
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(files)
    graph = {name: imports_of(path, modules) - {name} for name, path in files.items()}
    # importing camexp.a.b runs camexp.a's __init__ first: a package depends on nothing by that
    for name in graph:
        graph[name] = {m for m in graph[name] if not name.startswith(m + ".")}
    return graph


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (its modules in order, the first repeated), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (circle := visit(target)):
                return circle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (circle := visit(node)):
            return circle
    return None


def test_no_import_circle_in_the_package() -> None:
    graph = import_graph()
    assert len(graph) > 50  # the walk found the package
    circle = find_circle(graph)
    assert circle is None, "import circle: " + " -> ".join(circle)


def test_the_circle_finder_finds_a_planted_circle() -> None:
    graph = import_graph()
    graph["camexp.models.layers"] = graph["camexp.models.layers"] | {"camexp.methods.acol"}
    circle = find_circle(graph)
    assert circle is not None and circle[0] == circle[-1]
    assert "camexp.models.layers" in circle and "camexp.methods.acol" in circle


# rooms from the bottom up: a room imports only rooms below it (or itself)
LAYERS = [
    ["core"],
    ["localization", "viz", "data", "models", "maps"],
    ["methods"],
    ["modules"],
    ["callbacks"],
    ["config"],
    ["search", "runs", "report"],
]


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (PACKAGE / parts[1]).is_dir() else "<entry points>"


@pytest.mark.parametrize("room", [room for layer in LAYERS for room in layer])
def test_each_room_imports_only_rooms_below_it(room: str) -> None:
    level = {name: i for i, layer in enumerate(LAYERS) for name in layer}
    graph = import_graph()
    upward = sorted(f"{source} -> {target}" for source, targets in graph.items() for target in targets
                    if _room(source) == room and _room(target) in level
                    and level[_room(target)] > level[room])
    assert not upward, "imports of a room above: " + ", ".join(upward)


def test_every_folder_of_the_package_is_a_package_setuptools_installs() -> None:
    """A folder without ``__init__.py`` is a namespace package: ``find_packages`` leaves it out of
    a (non-editable) install, which then lacks its modules."""
    from setuptools import find_packages

    installed = set(find_packages(str(PACKAGE.parent)))
    folders = {module_name(path.parent / "__init__.py") for path in PACKAGE.rglob("*.py")}
    assert folders <= installed, f"not installed: {sorted(folders - installed)}"
