"""The structural rules of the code base, checked on the source with ``ast`` so they cannot
regress: no import cycles, the analysis stage never imports the extraction stage or torch, a
small top level of each stage (``analyze/``, ``extract/``), and no private name used outside the
module that defines it.

Imports are counted wherever they are written (inside functions too) and however (``import``,
``from ... import``, ``__import__("...")``, ``importlib.import_module("...")``); only those
under ``if TYPE_CHECKING:`` are left out, since they never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import REPO

PACKAGES = ("layercal", "extract", "analyze")
# the one module that sees both stages (it hands `steer --online` the model-backed sweeper)
BOTH_STAGES = {"layercal.cli"}
CLI_HELPERS = {"layercal.cliargs", "layercal.demo"}
HEAVY = ("torch", "transformers", "accelerate")
MAX_TOP_LEVEL = 8  # modules at the top of a stage's package; the rest lives in subpackages


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def other_files() -> list[Path]:
    """Code outside the packages that must keep to the package API too."""
    return sorted([*(REPO / "bench").rglob("*.py"), *(REPO / "scripts").glob("*.py")])


@dataclass(frozen=True)
class Import:
    module: str  # the module imported (``from a.b import c``: a.b.c when that is a module)
    names: tuple[str, ...]  # the names taken from it (``from m import x, y``)
    line: int


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, skipping the bodies of ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def imports(path: Path, name: str, known: set[str]) -> list[Import]:
    """What the file at ``path`` (module ``name``) imports."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: list[Import] = []
    for node in _nodes(tree):
        if isinstance(node, ast.Import):
            out += [Import(a.name, (), node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                if sub in known:  # `from pkg import module`
                    out.append(Import(sub, (), node.lineno))
                else:
                    out.append(Import(base, (a.name,), node.lineno))
        elif isinstance(node, ast.Call):
            f = node.func
            fname = (
                f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            )
            if fname in ("__import__", "import_module") and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    out.append(Import(arg.value, (), node.lineno))
    return out


def private_attribute_uses(path: Path, known: set[str]) -> list[tuple[str, int]]:
    """``alias._name`` where ``alias`` is a project module imported under that name."""
    tree = ast.parse(path.read_text(), str(path))
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname and a.name in known:
                    aliases[a.asname] = a.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                if f"{node.module}.{a.name}" in known:
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and _private(node.attr)
        ):
            found.append((f"{aliases[node.value.id]}.{node.attr}", node.lineno))
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _in_project(module: str) -> bool:
    return module.split(".")[0] in PACKAGES


def _ancestors(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def import_graph() -> dict[str, set[str]]:
    """Project module -> the project modules it imports, with the packages whose
    ``__init__`` an import runs (``import a.b.c`` runs a and a.b), except its own."""
    mods = project_modules()
    known = set(mods)
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        edges = set()
        for imp in imports(path, name, known):
            if not _in_project(imp.module):
                continue
            target = imp.module
            while target not in known and "." in target:  # a name inside a module
                target = target.rpartition(".")[0]
            edges |= ({target} | _ancestors(target)) - _ancestors(name) - {name}
        graph[name] = edges & known
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        v = todo.pop()
        if v not in seen:
            seen.add(v)
            todo += graph.get(v, ())
    return seen


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, f"import cycles: {found}"


def test_the_cycle_finder_sees_imports_inside_functions_and_by_name(tmp_path):
    code = (
        "import importlib\n"
        "def f():\n    from analyze.b import x\n"
        "def g():\n    __import__('analyze.c')\n    importlib.import_module('analyze.d')\n"
    )
    path = tmp_path / "a.py"
    path.write_text(code)
    got = {i.module for i in imports(path, "analyze.a", {"analyze.b", "analyze.c"})}
    assert got == {"importlib", "analyze.b", "analyze.c", "analyze.d"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_analyze_never_imports_extract_or_torch():
    graph = import_graph()
    mods = project_modules()
    known = set(mods)
    for name in (m for m in graph if m.split(".")[0] == "analyze"):
        reach = reachable(graph, name)
        assert not [m for m in reach if m.split(".")[0] == "extract"], name
        for m in reach:
            heavy = {
                i.module for i in imports(mods[m], m, known) if i.module.split(".")[0] in HEAVY
            }
            assert not heavy, f"{name} reaches {m}, which imports {heavy}"


def test_only_layercal_cli_sees_both_stages():
    """The ground package (the format, the store tools, the lens formula) never imports a stage;
    only the command that ties the stages together does."""
    graph = import_graph()
    for name, edges in graph.items():
        stages = {e.split(".")[0] for e in edges} & {"extract", "analyze"}
        top = name.split(".")[0]
        if name in BOTH_STAGES:
            continue
        if top == "layercal":
            assert not stages, f"{name} imports {stages}: only {BOTH_STAGES} may"
        else:
            assert stages <= {top}, f"{name} imports the other stage: {stages}"


def test_the_layercal_command_reaches_each_stage_only_through_its_api():
    """``layercal.cli`` imports ``extract`` and ``analyze`` (their ``__init__``), never a module
    inside them, and reads no option of a stage's command: of the parsed arguments it only
    calls ``args.func`` (each package registers its own commands)."""
    mods = project_modules()
    known = set(mods)
    for name in sorted(BOTH_STAGES):
        for imp in imports(mods[name], name, known):
            if imp.module.split(".")[0] in ("extract", "analyze"):
                assert imp.module in ("extract", "analyze"), f"{name}:{imp.line} {imp.module}"
        tree = ast.parse(mods[name].read_text())
        read = {
            n.attr
            for n in ast.walk(tree)
            if isinstance(n, ast.Attribute)
            and isinstance(n.value, ast.Name)
            and n.value.id == "args"
        }
        assert read <= {"func"}, f"{name} reads the options {sorted(read - {'func'})}"


def _is_cli(module: str) -> bool:
    """Command-line modules: a ``cli`` module or package, the shared argparse helpers, the demo."""
    return "cli" in module.split(".") or module in CLI_HELPERS


def test_library_modules_never_import_command_line_modules():
    """The functions a command runs are library code: they take values, not parsed options, and
    never import the argparse helpers (``--scheduler`` lives with analyze's commands, its names
    and defaults in ``analyze.lens.scheduler``)."""
    graph = import_graph()
    bad = [
        f"{name} imports {sorted(e for e in edges if _is_cli(e))}"
        for name, edges in sorted(graph.items())
        if not _is_cli(name) and name.split(".")[-1] != "__main__" and any(map(_is_cli, edges))
    ]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("stage", ["analyze", "extract"])
def test_stage_top_level_is_small(stage):
    top = sorted(p.name for p in (REPO / stage).glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL, top


@pytest.mark.parametrize("stage", ["analyze", "extract"])
def test_stage_api_is_lazy(stage):
    """``import analyze`` / ``import extract`` imports none of its modules until a name of its
    API is used (so ``layercal summary`` never pays for torch), and every name exists."""
    import subprocess
    import sys

    code = (
        f"import sys, {stage}; "
        f"loaded = sorted(m for m in sys.modules if m.startswith('{stage}.')); "
        f"assert not loaded, loaded; "
        f"missing = [n for n in {stage}.__all__ if not hasattr({stage}, n)]; "
        f"assert not missing, missing"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_no_private_name_is_used_outside_its_module():
    mods = project_modules()
    known = set(mods)
    files = [(n, p) for n, p in mods.items()]
    files += [(module_name(p), p) for p in other_files()]
    files += [(module_name(p), p) for p in sorted((REPO / "tests").rglob("*.py"))]
    bad = []
    for name, path in files:
        for imp in imports(path, name, known):
            if not _in_project(imp.module) or imp.module == name:
                continue
            bad += [f"{path}:{imp.line} {imp.module}.{n}" for n in imp.names if _private(n)]
        bad += [f"{path}:{line} {use}" for use, line in private_attribute_uses(path, known)]
    assert not bad, "private names used outside their module:\n" + "\n".join(bad)


def test_private_modules_are_imported_only_inside_their_package():
    """``pkg/_m.py`` is pkg's implementation; others go through what pkg exports. (Tests may
    test an implementation module directly.)"""
    mods = project_modules()
    known = set(mods)
    files = [*mods.items(), *((module_name(p), p) for p in other_files())]
    bad = []
    for name, path in files:
        for imp in imports(path, name, known):
            parts = imp.module.split(".")
            for i, part in enumerate(parts):
                if _private(part) and _in_project(imp.module):
                    owner = ".".join(parts[:i])
                    if not (name == owner or name.startswith(owner + ".")):
                        bad.append(f"{path}:{imp.line} imports {imp.module}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    "package",
    [
        "analyze.calibration",
        "analyze.lens",
        "layercal.store",
        "layercal.store.verify",
        "extract.data",
        "extract.model",
        "extract.forward",
        "extract.write",
        "extract.online",
    ],
)
def test_package_exports_exist(package):
    import importlib

    mod = importlib.import_module(package)
    missing = [n for n in mod.__all__ if not hasattr(mod, n)]
    assert not missing, missing


MAX_FUNCTION_LINES = 80
# functions over the limit that may stay there: none (issue 21, item 6)
LONG_FUNCTIONS_TO_SPLIT: set[str] = set()


def test_no_function_is_over_80_lines():
    """A function does one thing a reader can hold in their head (tests excepted)."""
    roots = [*(REPO / pkg for pkg in PACKAGES), REPO / "bench", REPO / "scripts"]
    long = set()
    for path in sorted(p for root in roots for p in root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                    long.add(f"{path.relative_to(REPO)}:{node.name}")
    assert long <= LONG_FUNCTIONS_TO_SPLIT, sorted(long - LONG_FUNCTIONS_TO_SPLIT)
