"""The shape of the source tree, read from the code itself (the AST; nothing is imported).

- **No import cycle in** ``tlrun/``: every ``import``/``from`` statement counts, at any depth (a function-local import
  is how a cycle hides). Importing ``a.b.c`` is an edge to the module ``a.b.c`` (or to ``a.b`` when ``c`` is a name
  in it), not to the packages above it.
- **Dependencies point down**: the core (config, scenarios, data, backbones, losses, methods...) reaches neither the
  runner nor the record (the MLflow side), and the record does not reach the runner.
- **No private name of another module**: nowhere in ``tlrun/``, ``tests/``, ``benchmarks/`` or ``hydra_plugins/``
  does code import ``_name`` from a tlrun module, read ``module._name`` of one, or name ``"tlrun.x._name"`` in a
  string (a ``monkeypatch`` target), except a module's own tests (``tests/**/test_<x>.py`` for ``tlrun/**/x.py``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.helpers import REPO

PACKAGE = "tlrun"
CHECKED_FOLDERS = ("tlrun", "tests", "benchmarks", "hydra_plugins")
#: Cycles the lead removes at merge, each as the sorted modules of its strongly connected component (none now).
KNOWN_CYCLES: list[list[str]] = []
#: The wings above the core, by module prefix; the doors, the CLI and the Python API, may import anything.
RUNNER = ("tlrun.runner", "tlrun.run")
RECORD = ("tlrun.tracking",)
DOOR = ("tlrun.cli", "tlrun.api")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def tlrun_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted((REPO / PACKAGE).rglob("*.py"))}


def imported_names(tree: ast.AST, module: str, is_package: bool) -> list[tuple[str, str | None]]:
    """``(module, name)`` of every import statement in ``tree``: ``import a.b`` gives ``("a.b", None)``,
    ``from a import b`` gives ``("a", "b")`` (relative imports resolved against ``module``)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, *([base] if base else [])])
            found += [(base, alias.name) for alias in node.names]
    return found


def import_graph() -> dict[str, set[str]]:
    """Every tlrun module and the tlrun modules it imports."""
    modules = tlrun_modules()

    def owner(name: str) -> str | None:  # the module a dotted name lives in
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = set()
        for base, name in imported_names(ast.parse(path.read_text()), module, path.name == "__init__.py"):
            target = owner(f"{base}.{name}" if name and f"{base}.{name}" in modules else base)
            if target and target != module:
                targets.add(target)
        graph[module] = targets
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """The components of more than one module (Tarjan's algorithm, iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            advanced = False
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    advanced = True
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            if advanced:
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
                    components.append(sorted(component))
    return components


def a_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One cycle through the first module of ``component``, as ``[a, b, ..., a]`` (breadth-first: a shortest one)."""
    start, members = component[0], set(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for successor in sorted(graph[node] & members):
            if successor == start:
                return [*paths[node], start]
            if successor not in paths:
                paths[successor] = [*paths[node], successor]
                queue.append(successor)
    raise AssertionError(f"no cycle through {start}")


def test_the_graph_sees_function_local_and_relative_imports():
    tree = ast.parse("def f():\n    from tlrun.run import run\n    from . import steps\n    from .ddp import x\n")
    assert imported_names(tree, "tlrun.runner.job", False) == [
        ("tlrun.run", "run"), ("tlrun.runner", "steps"), ("tlrun.runner.ddp", "x")
    ]
    component = strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert component == [["a", "b", "c"]]
    assert a_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c"]) == ["a", "b", "c", "a"]


def test_tlrun_has_no_import_cycle():
    graph = import_graph()
    cycles = [component for component in strongly_connected(graph) if component not in KNOWN_CYCLES]
    assert not cycles, "import cycles in tlrun/:\n" + "\n".join(" -> ".join(a_cycle(graph, c)) for c in cycles)


def in_wing(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for successor in graph[todo.pop()] - seen:
            seen.add(successor)
            todo.append(successor)
    return seen


def test_dependencies_point_down():
    graph = import_graph()
    wrong = []
    for module in sorted(graph):
        if in_wing(module, RUNNER + DOOR):
            continue
        above = RUNNER if in_wing(module, RECORD) else RUNNER + RECORD
        wrong += [f"{module} -> {target}" for target in sorted(reachable(graph, module)) if in_wing(target, above)]
    assert not wrong, "imports that point up (directly or through other modules):\n" + "\n".join(wrong)


# ------------------------------------------------------------------------------------------- private names


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def own_tests(path: Path, module: str) -> bool:
    """Whether ``path`` is a test file of ``module`` (``test_ddp.py`` or ``test_runner_ddp.py`` for
    ``tlrun.runner.ddp``)."""
    if not path.name.startswith("test_"):
        return False
    parts = module.split(".")[1:]
    return path.stem.removeprefix("test_") in {"_".join(parts[i:]) for i in range(len(parts))}


def private_uses(path: Path, modules: set[str], source: str | None = None) -> list[tuple[int, str, str]]:
    """``(line, module, name)`` of every private name of a tlrun module (other than the file's own) that the file
    ``path`` (or ``source`` as if it were that file) imports, reads as an attribute of the module, or names in a
    string."""
    tree = ast.parse(path.read_text() if source is None else source)
    this = module_name(path) if path.is_relative_to(REPO / PACKAGE) else None
    is_package = path.name == "__init__.py"
    uses = []
    bound: dict[str, str] = {}  # local name -> the tlrun module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:  # ``import tlrun.a.b`` binds tlrun; ``... as c`` binds a.b
                    bound[alias.asname or PACKAGE] = alias.name if alias.asname else PACKAGE
        elif isinstance(node, ast.ImportFrom):
            for base, name in imported_names(ast.Module(body=[node], type_ignores=[]), this or "", is_package):
                if base not in modules:
                    continue
                alias = next(a for a in node.names if a.name == name)
                if f"{base}.{name}" in modules:
                    bound[alias.asname or name] = f"{base}.{name}"
                elif is_private(name) and base != this:
                    uses.append((node.lineno, base, name))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and is_private(node.attr):
            chain, value = [], node.value
            while isinstance(value, ast.Attribute):
                chain.insert(0, value.attr)
                value = value.value
            if isinstance(value, ast.Name) and value.id in bound:
                module = ".".join([bound[value.id], *chain])
                if module in modules and module != this:
                    uses.append((node.lineno, module, node.attr))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = re.fullmatch(r"(tlrun(?:\.\w+)*)\.(\w+)", node.value)
            if match and match[1] in modules and is_private(match[2]) and match[1] != this:
                uses.append((node.lineno, match[1], match[2]))
    return [(line, module, name) for line, module, name in uses if not own_tests(path, module)]


def test_the_private_check_sees_imports_attributes_and_strings():
    modules = {"tlrun", "tlrun.runner", "tlrun.runner.steps", "tlrun.data", "tlrun.data.features"}
    code = (
        "from tlrun.data.features import _loadmat, load\n"
        "from tlrun.runner import steps\n"
        "import tlrun.data.features as features\n"
        "import tlrun.runner.steps\n"
        "steps._device(); features._labels; tlrun.runner.steps._x; features.__name__\n"
        "monkeypatch.setattr('tlrun.runner.steps._y', None)\n"
    )
    found = private_uses(REPO / "tests" / "test_probe.py", modules, source=code)
    assert sorted(found) == [(1, "tlrun.data.features", "_loadmat"), (5, "tlrun.data.features", "_labels"),
                             (5, "tlrun.runner.steps", "_device"), (5, "tlrun.runner.steps", "_x"),
                             (6, "tlrun.runner.steps", "_y")]
    assert own_tests(REPO / "tests" / "unit" / "test_steps.py", "tlrun.runner.steps")
    assert own_tests(REPO / "tests" / "unit" / "test_runner_steps.py", "tlrun.runner.steps")
    assert not own_tests(REPO / "tests" / "runs" / "test_run.py", "tlrun.runner.steps")


@pytest.mark.parametrize("folder", CHECKED_FOLDERS)
def test_no_module_uses_a_private_name_of_another(folder):
    modules = set(tlrun_modules())
    found = [f"{path.relative_to(REPO)}:{line}: {module}.{name}"
             for path in sorted((REPO / folder).rglob("*.py")) for line, module, name in private_uses(path, modules)]
    assert not found, "private names used outside their module:\n" + "\n".join(found)
