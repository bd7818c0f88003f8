"""The package's shape: no import cycle between modules, no private name taken from another module,
modules and functions of a readable size, the plugin and ``saeval`` importable without torch, and a unit
test file mirroring every module.

The layer rules themselves are import-linter contracts in pyproject.toml (``lint-imports`` in CI).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pytest_saeval"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
LONG_REASON = "# long:"
"""A function past :data:`MAX_FUNCTION_LINES` says why on the line above its ``def`` (or decorator)."""


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path) -> list[tuple[str, list[str], int]]:
    """``(module, names, line)`` of every ``from X import names`` in a module, function-level ones too."""
    found = []
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            found.append((module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            found.extend((a.name, [], node.lineno) for a in node.names)
    return found


def test_no_module_imports_another_modules_private_names() -> None:
    modules = _modules()
    problems = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: from {module} import {n}"
        for name, path in modules.items()
        for module, names, line in _imports(name, path)
        if module.startswith("pytest_saeval") and module != name
        for n in names
        if n.startswith("_") and not n.startswith("__")
    ]
    assert not problems, "private names imported across modules:\n" + "\n".join(problems)


def test_no_import_cycle_between_modules() -> None:
    """Every import counts, at module level, inside functions or under ``TYPE_CHECKING``."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for module, names, _ in _imports(name, path):
            graph[name].update(_targets(module, names, modules) - {name})
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(cycles[:10])


def _targets(module: str, names: list[str], modules: dict[str, Path]) -> set[str]:
    """The project modules an import statement loads: each submodule it names (``from pkg import a, b``),
    else the module itself (``from pkg.mod import name``, ``import pkg.mod``)."""
    submodules = {f"{module}.{n}" for n in names} & modules.keys()
    return submodules or ({module} & modules.keys())


def test_every_submodule_of_one_import_statement_is_an_edge() -> None:
    modules = {m: Path() for m in ("p", "p.a", "p.b", "p.c")}
    assert _targets("p", ["a", "b"], modules) == {"p.a", "p.b"}
    assert _targets("p.c", ["name"], modules) == {"p.c"}
    assert _targets("os", ["path"], modules) == set()


def _cycles(graph: dict[str, set[str]]) -> list[str]:
    """Every module from which an import chain leads back to itself, with one such chain."""
    cycles = []
    for start in graph:
        stack, seen = [(start, [start])], set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    cycles.append(" -> ".join([*trail, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))
    return sorted(set(cycles))


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a -> b -> c -> a", "b -> c -> a -> b",
                                                                           "c -> a -> b -> c"]


def test_modules_stay_readable() -> None:
    long = {str(p.relative_to(PACKAGE.parent)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them): {long}"


def test_long_functions_say_why() -> None:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            size = (node.end_lineno or node.lineno) - node.lineno + 1
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            if size > MAX_FUNCTION_LINES and not lines[first - 2].strip().startswith(LONG_REASON):
                problems.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {node.name} ({size} lines)")
    assert not problems, f"functions over {MAX_FUNCTION_LINES} lines without a '{LONG_REASON} ...' line:\n" + "\n".join(problems)


@pytest.mark.parametrize("module", ["pytest_saeval", "pytest_saeval.plugin", "pytest_saeval.cli", "pytest_saeval.run.session",
                                    "pytest_saeval.spec.loader"])
def test_importing_needs_no_torch(module: str) -> None:
    code = (f"import sys, {module}; heavy = [m for m in ('torch', 'transformer_lens', 'sae_lens') if m in sys.modules]; "
            "assert not heavy, heavy")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


TESTS = Path(__file__).resolve().parents[1] / "unit"
NOT_MIRRORED = {"__init__.py", "__main__.py"}
"""Package and entry files: re-exports and hooks, tested through the surfaces they expose."""
UNMIRRORED: dict[str, str] = {
    # "pytest_saeval/<layer>/<module>.py": "why it has no logic of its own to test",
}
"""Modules exempt from having a mirror unit file, each with its reason (none today)."""


def mirror_of(module: Path) -> Path:
    """``pytest_saeval/<layer>/<m>.py`` -> ``tests/unit/<layer>/test_<m>.py`` (top level: ``tests/unit/test_<m>.py``)."""
    rel = module.relative_to(PACKAGE)
    return TESTS.joinpath(*rel.parts[:-1], f"test_{rel.name}")


def test_mirror_of() -> None:
    assert mirror_of(PACKAGE / "run" / "costs.py") == TESTS / "run" / "test_costs.py"
    assert mirror_of(PACKAGE / "versions.py") == TESTS / "test_versions.py"


def test_every_module_has_its_mirror_unit_file() -> None:
    missing = [str(path.relative_to(PACKAGE.parent)) for path in sorted(PACKAGE.rglob("*.py"))
               if path.name not in NOT_MIRRORED and str(path.relative_to(PACKAGE.parent)) not in UNMIRRORED
               and not mirror_of(path).is_file()]
    assert not missing, ("modules without a unit test file mirroring them (tests/unit/<layer>/test_<module>.py; "
                         "or add them to UNMIRRORED with a reason):\n" + "\n".join(missing))
    stale = [name for name in UNMIRRORED if not (PACKAGE.parent / name).is_file() or mirror_of(PACKAGE.parent / name).is_file()]
    assert not stale, f"UNMIRRORED entries that no longer need an exemption: {stale}"
