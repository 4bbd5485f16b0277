"""The package's layers, checked on the source:

- ``lstm_assets.core``: the library (data, features, training, evaluation) and, on top of it,
  ``core.stages`` (the pipeline's per-symbol steps). No dagster: a GPU box runs it without
  dagster installed. Imports nothing of the package outside ``core``.
- ``lstm_assets.bench``: the benchmark, on top of ``core``; no dagster either (its GPU part
  runs on the same bare box), nor the orchestration layer.
- ``lstm_assets.defs``: the Dagster definitions, on top of ``core``; never the command lines.
- the command lines (``cli``, ``orchestration_cli``, ``bench.cli``) on top of everything.

Imports are read with ``ast`` at any depth (inside functions too), with ``from x import y``
counted as an import of ``x.y`` where ``y`` is a module, and relative imports resolved. The
module graph (every edge) has no cycle: a cycle dodged with a function-level import still ties
the modules together.
"""

from __future__ import annotations

import ast
import pkgutil
import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path

import lstm_assets.core

CORE = Path(lstm_assets.core.__file__).parent
PACKAGE = CORE.parent
CLI_MODULES = ("lstm_assets.cli", "lstm_assets.orchestration_cli", "lstm_assets.bench")


def test_core_sources_do_not_import_dagster() -> None:
    for f in sorted(CORE.glob("*.py")):
        text = f.read_text()
        assert not re.search(r"^\s*(import|from)\s+dagster", text, re.M), f


def test_importing_every_core_module_loads_no_dagster() -> None:
    mods = [f"lstm_assets.core.{m.name}" for m in pkgutil.iter_modules([str(CORE)])]
    code = ("import importlib, sys\n"
            f"for m in {mods!r}: importlib.import_module(m)\n"
            "assert 'dagster' not in sys.modules, [m for m in sys.modules if 'dagster' in m]\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


# ------------------------------------------------------------------------- the import graph


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__.py``)."""
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve_from(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    """The absolute name ``from <...> import`` names in ``module``."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base.pop()
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imported(module: str, path: Path) -> set[str]:
    """Every module name ``module`` imports, at any depth; ``from x import y`` gives ``x.y``
    where that is a module of the package, else ``x``."""
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(module, node, path.name == "__init__.py")
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in _modules() else base)
    return out


@cache
def _graph() -> dict[str, frozenset[str]]:
    """Module -> every name it imports (the package's modules and outside ones)."""
    return {m: frozenset(_imported(m, p)) for m, p in _modules().items()}


def _under(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _violations(importers: Iterable[str], forbidden: Callable[[str, str], bool]) -> list[str]:
    """``importer -> imported`` for every import for which ``forbidden(importer, imported)``."""
    return [f"{m} -> {i}" for m in sorted(importers) for i in sorted(_graph()[m])
            if forbidden(m, i)]


def _modules_under(prefix: str) -> list[str]:
    return [m for m in _modules() if _under(m, prefix)]


def test_layering_sees_function_level_and_submodule_imports() -> None:
    """The reader itself: a function-level import, ``from package import submodule`` and a
    relative import each give the edge to the module they load."""
    g = _graph()
    assert "lstm_assets.core.stages" in g["lstm_assets.bench.data_stages"]
    assert "lstm_assets.core.stages.data" in g["lstm_assets.core.stages"]  # relative or not
    assert "lstm_assets.bench.runner" in g["lstm_assets.bench.cli"]  # inside cmd_bench
    assert len(g) > 30


def test_layering_core_imports_only_core() -> None:
    """(a) The core imports no dagster, and nothing of the package outside ``core``."""
    bad = _violations(_modules_under("lstm_assets.core"), lambda m, i: (
        _under(i, "dagster") or (_under(i, "lstm_assets") and not _under(i, "lstm_assets.core"))
        or i.startswith("dagster_")))
    assert not bad, "the core imports outside itself:\n" + "\n".join(bad)


def test_layering_bench_imports_only_core_and_bench() -> None:
    """(b) The benchmark imports no dagster, no ``defs``, nothing of the package but ``core``
    and ``bench``."""
    bad = _violations(_modules_under("lstm_assets.bench"), lambda m, i: (
        _under(i, "dagster") or i.startswith("dagster_")
        or (_under(i, "lstm_assets")
            and not _under(i, "lstm_assets.core", "lstm_assets.bench"))))
    assert not bad, "the benchmark imports outside core and bench:\n" + "\n".join(bad)


def test_layering_defs_do_not_import_the_command_lines() -> None:
    """(c) The Dagster definitions import no command line module (nor the benchmark)."""
    bad = _violations(_modules_under("lstm_assets.defs"), lambda m, i: _under(i, *CLI_MODULES))
    assert not bad, "defs import a command line:\n" + "\n".join(bad)


def test_layering_stages_sit_on_top_of_the_core_library() -> None:
    """(d) Inside the core, only ``core.stages`` imports ``core.stages``."""
    stages = "lstm_assets.core.stages"
    library = [m for m in _modules_under("lstm_assets.core") if not _under(m, stages)]
    bad = _violations(library, lambda m, i: _under(i, stages))
    assert not bad, "core library modules import the stages:\n" + "\n".join(bad)


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (its modules in import order, the first repeated at the end), or
    None. Iterative depth-first search: white (unseen), grey (on the path), black (done)."""
    state: dict[str, int] = dict.fromkeys(graph, 0)
    for start in sorted(graph):
        if state[start]:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state[nxt] == 1:
                return path[path.index(nxt):] + [nxt]
            elif state[nxt] == 0:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_layering_find_cycle_reports_the_cycle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]


def test_layering_module_graph_has_no_cycle() -> None:
    """(e) No import cycle among the package's modules, function-level imports included."""
    internal = {m: {i for i in deps if i in _modules() and i != m}
                for m, deps in _graph().items()}
    cycle = _find_cycle(internal)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])
