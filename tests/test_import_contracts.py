"""The shape of the code, guarded: which package may import which.

The layers are ``schemas`` <- ``keys`` <- ``verifier`` <- ``cardsvc``; ``wallet_sim`` stands
apart and uses only ``schemas`` and ``keys``; the authority never imports a command-line
module. Every import statement counts, including those inside functions and under
``TYPE_CHECKING``: a lazy import is still an edge. The imports are read with :mod:`ast`,
so nothing is executed and a violation names its file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# package -> the project packages it may import (itself always allowed)
ALLOWED: dict[str, frozenset[str]] = {
    "schemas": frozenset(),
    "keys": frozenset({"schemas"}),
    "verifier": frozenset({"schemas", "keys"}),
    "wallet_sim": frozenset({"schemas", "keys"}),
    "cardsvc": frozenset({"schemas", "keys", "verifier"}),
}
PROJECT = frozenset(ALLOWED)

# Other packages' modules that are (or hold) a command-line interface: the authority must not
# import them (its own cardsvc.cli is its entry point, imported only by cardsvc.__main__).
CLI_MODULES = ("verifier.cli", "verifier.terminal.cli", "verifier.__main__", "wallet_sim.cli",
               "wallet_sim.__main__")

def _imports(path: Path) -> list[tuple[int, str]]:
    """Every absolute module named by an import statement in ``path``, with its line."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            # `from verifier import cli` names the module verifier.cli
            found.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
    return found


def _edges() -> list[tuple[str, int, str, str]]:
    """(file, line, importing package, imported module) for every project-internal import."""
    edges = []
    for package in sorted(PROJECT):
        for path in sorted((REPO / package).rglob("*.py")):
            relative = path.relative_to(REPO).as_posix()
            for line, module in _imports(path):
                if module.split(".")[0] in PROJECT:
                    edges.append((relative, line, package, module))
    return edges


EDGES = _edges()


def _cli_module(module: str) -> str | None:
    """The command-line module that ``module`` is or lies in, if any."""
    return next((cli for cli in CLI_MODULES if module == cli or module.startswith(cli + ".")),
                None)


def test_the_scan_sees_the_code() -> None:
    # A contract over no edges would pass for ever: the known layering must be visible.
    assert {package for _, _, package, _ in EDGES} == PROJECT
    assert any(p == "cardsvc" and m.startswith("verifier") for _, _, p, m in EDGES)


@pytest.mark.parametrize("package", sorted(PROJECT))
def test_package_imports_only_the_layers_below(package: str) -> None:
    allowed = ALLOWED[package] | {package}
    wrong = [f"{file}:{line} imports {module}" for file, line, importer, module in EDGES
             if importer == package and module.split(".")[0] not in allowed]
    assert wrong == []


def test_the_authority_imports_no_command_line_module() -> None:
    wrong = [f"{file}:{line} imports {module}" for file, line, importer, module in EDGES
             if importer == "cardsvc" and _cli_module(module) is not None]
    assert wrong == []


@pytest.mark.parametrize(("source", "module", "expected"), [
    ("import verifier.cli\n", "verifier.cli", True),
    ("from verifier import cli\n", "verifier.cli", True),
    ("from verifier.terminal import Receipt\n", "verifier.terminal", True),
    ("def f():\n    from keys import x\n", "keys", True),
    ("from . import cli\n", "verifier.cli", False),
])
def test_the_scanner_finds_imports(tmp_path: Path, source: str, module: str,
                                   expected: bool) -> None:
    path = tmp_path / "m.py"
    path.write_text(source)
    assert (module in {name for _, name in _imports(path)}) is expected
