"""The house's rule, checked on the source: every module of ``src/gleam_mri`` sits on a floor and
imports only from its own floor or below, and no modules import each other in a circle.

Imports inside functions count (they hide a circle, they do not remove it), and so do imports under
``if TYPE_CHECKING:`` (a type named from a module is a dependency on it, for a reader if not at run
time): where a module needs only part of another that depends on it, it says so with a
``Protocol`` (``training.run.StrategyState``, ``training.stage_checkpoints.Stage``).
``docs/architecture.md`` draws the floors and says where a new concept goes.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "gleam_mri"

# floors from the ground up; a module belongs to the longest prefix that names it
FLOORS: dict[str, int] = {
    # ground: no import from the project
    "gleam_mri": 0,
    "gleam_mri.fft": 0,
    "gleam_mri.crop": 0,
    "gleam_mri.linalg": 0,
    "gleam_mri.units": 0,
    "gleam_mri.atomic": 0,
    "gleam_mri.devices": 0,
    "gleam_mri.metrics": 0,
    "gleam_mri.schema": 0,
    "gleam_mri.lazy": 0,
    "gleam_mri.overrides": 0,
    "gleam_mri.loss_names": 0,
    "gleam_mri.report": 0,
    # physics and the memory meters: the ground only
    "gleam_mri.physics": 1,
    "gleam_mri.meters": 1,
    # data: files, datasets, batches
    "gleam_mri.data": 2,
    # on data: the networks, classical reconstruction and scoring, self-supervised splits
    "gleam_mri.models": 3,
    "gleam_mri.recon": 3,
    "gleam_mri.selfsup": 3,
    # the run configuration (strategy options are read by the strategies, above)
    "gleam_mri.config": 4,
    "gleam_mri.strategy_section": 4,
    # the training stack
    "gleam_mri.training": 5,
    # built on training: the planner, trained networks in use, scan-specific training
    "gleam_mri.plan": 6,
    "gleam_mri.inference": 6,
    "gleam_mri.onnx": 6,
    "gleam_mri.adapt": 6,
    # commands built on everything below
    "gleam_mri.study": 7,
    "gleam_mri.bench": 7,
    "gleam_mri.serve": 7,
    "gleam_mri.demo": 7,
    # dispatch only
    "gleam_mri.cli": 8,
}


class Import:
    """An import of one project module by another: where it is and how it runs."""

    def __init__(self, source: str, target: str, line: int, typing: bool, deferred: bool):
        self.source, self.target, self.line = source, target, line
        self.typing, self.deferred = typing, deferred

    def __repr__(self) -> str:
        how = " (typing)" if self.typing else " (in a function)" if self.deferred else ""
        return f"{self.source}:{self.line} -> {self.target}{how}"


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__``)."""
    found = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _absolute(source: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = source.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports() -> list[Import]:
    """Every import of a project module by a project module (``from m import name`` names the
    submodule ``m.name`` where that is a module)."""
    known = modules()
    found: list[Import] = []
    for source, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))

        def visit(node: ast.AST, typing: bool, deferred: bool, source=source, path=path) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and _is_type_checking(child.test):
                    for sub in child.body:
                        visit_one(sub, True, deferred)
                    for sub in child.orelse:
                        visit_one(sub, typing, deferred)
                    continue
                visit_one(child, typing, deferred)

        def visit_one(node: ast.AST, typing: bool, deferred: bool, source=source, path=path):
            if isinstance(node, ast.Import | ast.ImportFrom):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                else:
                    base = _absolute(source, path.name == "__init__.py", node)
                    names = [f"{base}.{alias.name}" for alias in node.names]
                    names = [n if n in known else base for n in names]
                for name in dict.fromkeys(names):
                    while name not in known and "." in name:
                        name = name.rsplit(".", 1)[0]
                    if name in known and name != source:
                        found.append(Import(source, name, node.lineno, typing, deferred))
                return
            inner = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            visit(node, typing, deferred or inner)

        visit(tree, False, False)
    return found


def floor_of(module: str) -> int | None:
    """The floor of ``module``: that of the longest prefix in :data:`FLOORS`."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        floor = FLOORS.get(".".join(parts[:n]))
        if floor is not None:
            return floor
    return None


def cycles(edges: list[Import]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_every_module_is_on_a_floor():
    lost = sorted(m for m in modules() if floor_of(m) is None)
    assert not lost, f"modules on no floor (add them to FLOORS and docs/architecture.md): {lost}"


def test_no_import_runs_up_a_floor():
    up = [e for e in imports() if floor_of(e.target) > floor_of(e.source)]
    assert not up, "imports from a higher floor:\n" + "\n".join(map(repr, up))


def test_no_modules_import_each_other_in_a_circle():
    found = cycles(imports())
    assert not found, f"import circles: {found}"


@pytest.mark.parametrize(
    ("modules_text", "expected"),
    [
        ({"a": "from p import b\n", "b": "def f():\n    from p import a\n"}, [["p.a", "p.b"]]),
        ({"a": "from p import b\n", "b": "x = 1\n"}, []),
    ],
)
def test_the_check_sees_circles_hidden_in_functions(tmp_path, monkeypatch, modules_text, expected):
    package = tmp_path / "p"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, text in modules_text.items():
        (package / f"{name}.py").write_text(text)
    monkeypatch.setitem(globals(), "SRC", package)
    assert cycles(imports()) == expected
