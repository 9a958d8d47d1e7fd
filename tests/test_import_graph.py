"""Dependencies inside ``pet_lightning`` point one way: no import circle, and no layer imports a layer above it.

The graph is read from the source (an AST pass over every module), so an import inside a function counts as much
as one at the top of a file: a function-level import only hides a circle until the function runs. Rules:

* ``import a.b`` and ``from a.b import name`` import the module ``a.b`` (a package's ``__init__``);
  ``from a import b`` where ``b`` is a submodule imports ``a.b``; relative imports are resolved first.
* Imports under ``if TYPE_CHECKING:`` are left out: they never run.

The layers, lowest first; a module may import its own layer and the layers below it, never one above:

0. foundations: ``errors``, ``paths``, ``device``, ``tasks``, ``metrics``, ``precision``, ``optim`` (settings,
   names and numbers that know no model and no data module);
1. ``strategies``: what trains (knows only Hugging Face models);
2. the model's parts: ``backbones``, ``heads``, ``feature_cache``, ``probes``, ``run_checks``, ``checkpoint_io``,
   ``checkpoint_format``, ``loop_restart`` (the data side loads its tokenizer from ``backbones``);
3. ``data``: task sources, splits, encoding, the data modules and the contract they offer (``data.contract``);
4. ``module``, ``seeds``: the LightningModule and a run's seeding, which read a data module through that contract;
5. ``callbacks``: Lightning callbacks over the model and the data;
6. ``lightning_cli``, ``export``: one run composed (which callbacks a run gets) and a trained run exported;
7. ``sweeps``: many runs on Ray Tune;
8. ``reports``: tables and statistics of a sweep's records;
9. ``studies``: the papers' grids and their layouts over reports;
10. the commands: ``cli``, ``export_command``, and the package's ``__init__`` (re-exports).

A second test imports every module in a fresh interpreter, dependencies first (the order a topological sort of
the graph gives), so a module that imports only because another one happened to be imported first is found.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

PACKAGE = "pet_lightning"
PACKAGE_DIR = REPO_ROOT / PACKAGE
LAYERS: list[set[str]] = [
    {"errors", "paths", "device", "tasks", "metrics", "precision", "optim"},
    {"strategies"},
    {"backbones", "heads", "feature_cache", "probes", "run_checks", "checkpoint_io", "checkpoint_format",
     "loop_restart"},
    {"data"},
    {"module", "seeds"},
    {"callbacks"},
    {"lightning_cli", "export"},
    {"sweeps"},
    {"reports"},
    {"studies"},
    {"cli", "export_command", PACKAGE},
]


def modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the package (a package's name -> its ``__init__.py``)."""
    found = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(REPO_ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


class _Imports(ast.NodeVisitor):
    def __init__(self, name: str, is_package: bool, known: set[str]) -> None:
        self.package = name if is_package else name.rpartition(".")[0]
        self.known = known
        self.found: set[str] = set()

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        checking = (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
        for child in (node.orelse if checking else [*node.body, *node.orelse]):
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        self.found.update(alias.name for alias in node.names if alias.name in self.known)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")
            base = base[: len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        if not target.startswith(PACKAGE):
            return
        submodules = {f"{target}.{alias.name}" for alias in node.names} & self.known
        self.found.update(submodules)
        if len(submodules) < len(node.names) and target in self.known:
            self.found.add(target)


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its file (itself left out)."""
    known = modules()
    graph = {}
    for name, path in known.items():
        visitor = _Imports(name, path.name == "__init__.py", set(known))
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        graph[name] = visitor.found - {name}
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module (each an import circle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def layer_of(module: str) -> int:
    unit = module.split(".")[1] if "." in module else module
    for number, layer in enumerate(LAYERS):
        if unit in layer:
            return number
    raise AssertionError(f"{module} is in no layer: add {unit!r} to LAYERS (and to this file's docstring)")


def dependency_order(graph: dict[str, set[str]]) -> list[str]:
    """Every module after the modules it imports (a circle's members in name order)."""
    order: list[str] = []
    placed: set[str] = set()

    def place(node: str, path: tuple[str, ...]) -> None:
        if node in placed or node in path:
            return
        for nxt in sorted(graph[node]):
            place(nxt, (*path, node))
        placed.add(node)
        order.append(node)

    for node in sorted(graph):
        place(node, ())
    return order


def test_no_import_circle_at_module_or_function_level():
    circles = strongly_connected(import_graph())
    assert not circles, "modules in an import circle (counting imports inside functions):\n" + "\n".join(
        ", ".join(circle) for circle in circles)


def test_every_import_points_down_the_layers():
    upward = sorted(
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
        for module, targets in import_graph().items() for target in targets if layer_of(target) > layer_of(module)
    )
    assert not upward, "imports that point up the layers:\n" + "\n".join(upward)


def test_every_module_imports_in_a_fresh_interpreter_in_dependency_order():
    order = dependency_order(import_graph())
    script = ("import importlib, sys\nfor name in sys.argv[1:]:\n    try:\n        importlib.import_module(name)\n"
              "    except Exception as err:\n        sys.exit(f'{name}: {type(err).__name__}: {err}')\n")
    done = subprocess.run([sys.executable, "-c", script, *order], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_graph_sees_function_level_and_relative_imports():
    source = "def f():\n    from .b import x\n    import pet_lightning.c\n"
    visitor = _Imports("pet_lightning.a", False, {"pet_lightning.b", "pet_lightning.c", "pet_lightning"})
    visitor.visit(ast.parse(source))
    assert visitor.found == {"pet_lightning.b", "pet_lightning.c"}
    assert strongly_connected({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert dependency_order({"a": {"b"}, "b": set(), "c": {"a"}}) == ["b", "a", "c"]
