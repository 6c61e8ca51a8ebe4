"""Every module imports on its own, as the first module of ours in a fresh interpreter.

An import loop only shows when the modules of the loop are imported in an unlucky order
(``import cardsvc.payments.routes`` alone once failed while ``import cardsvc.api`` worked),
so each module of a loop is imported first, in its own process. To keep that cheap on a
small machine, one interpreter loads the third-party libraries, then forks one child per
module: the child starts with none of our modules loaded and imports exactly one.

Only the members of import cycles (strongly connected components of the static import
graph, package ``__init__`` files included) are imported first one by one: a module in no
cycle cannot find a module half-imported because of the order it was imported in (nothing
it imports leads back to it, and each cycle it enters is entered at one of its members,
each tested alone). The others are imported together in one more child, which still
catches a module that fails to import at all.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("schemas", "keys", "verifier", "wallet_sim", "cardsvc", "bench")
# Run as scripts, not imported: Alembic's env.py and revisions, ``python -m`` entry points.
_NOT_IMPORTED = ("cardsvc.migrations.env", "cardsvc.migrations.versions.")

# Loaded once before forking: big libraries, never our code (a plugin of theirs that
# imported ours would hide a loop, and none does).
_THIRD_PARTY = ("fastapi", "starlette", "pydantic", "sqlalchemy", "typer", "rich", "jinja2",
                "cryptography", "httpx", "uvicorn", "alembic", "PIL", "qrcode", "nacl")

_DRIVER = r"""
import importlib, json, os, sys, traceback
for name in json.loads(sys.argv[1]):
    try:
        importlib.import_module(name)
    except ImportError:
        pass
ours = json.loads(sys.argv[2])
assert not [m for m in sys.modules if m.split(".")[0] in ours], "ours loaded before forking"
failures = {}
for group in json.loads(sys.argv[3]):
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        code, text = 0, b""
        for module in group:
            try:
                importlib.import_module(module)
            except BaseException:
                code, text = 1, (module + ": " + traceback.format_exc()).encode()
                break
        os.write(write_end, text[-4000:])
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        text = pipe.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if status != 0:
        failures[" ".join(group[:1]) + ("" if len(group) == 1 else " ...")] = (
            text or f"exit status {status}")
print(json.dumps(failures))
"""


def _modules() -> list[str]:
    names = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__main__":
                continue
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            if not name.startswith(_NOT_IMPORTED):
                names.append(name)
    return names


def _source(module: str) -> Path:
    path = ROOT.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _imports(module: str, known: set[str]) -> set[str]:
    """Ours that ``module`` imports anywhere (functions too: more edges, never fewer),
    with the packages each import loads on the way."""
    source = _source(module)
    package = module.split(".") if source.name == "__init__.py" else module.split(".")[:-1]
    found: set[str] = set()

    def add(name: str) -> None:
        parts = name.split(".")
        found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1)
                     if ".".join(parts[:i]) in known)

    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            name = ".".join([*base, *([node.module] if node.module else [])])
            add(name)
            for alias in node.names:
                add(f"{name}.{alias.name}")
    return found - {module}


def _in_cycles(modules: list[str]) -> set[str]:
    """The modules in an import cycle (Tarjan's strongly connected components)."""
    known = set(modules)
    graph = {module: sorted(_imports(module, known)) for module in modules}
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: set[str] = set()

    def visit(module: str) -> None:
        order[module] = low[module] = len(order)
        stack.append(module)
        for imported in graph[module]:
            if imported not in order:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], order[imported])
        if low[module] == order[module]:
            component = stack[stack.index(module):]
            del stack[stack.index(module):]
            if len(component) > 1:
                cycles.update(component)

    for module in modules:
        if module not in order:
            visit(module)
    return cycles


def test_the_module_list_covers_the_known_loops() -> None:
    names = _modules()
    assert {"cardsvc.payments.routes", "verifier.terminal", "cardsvc.services.persons",
            "cardsvc.services.cards", "cardsvc.console"} <= set(names)
    assert len(names) > 100
    cycles = _in_cycles(names)
    assert {"cardsvc.payments.routes", "verifier.terminal", "cardsvc.console"} <= cycles
    assert "schemas.codes" not in cycles and len(cycles) < len(names)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_every_module_imports_alone() -> None:
    modules = _modules()
    cycles = _in_cycles(modules)
    groups = [[module] for module in modules if module in cycles]
    groups.append([module for module in modules if module not in cycles])
    result = subprocess.run(
        [sys.executable, "-c", _DRIVER, json.dumps(_THIRD_PARTY), json.dumps(PACKAGES),
         json.dumps(groups)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr
    failures = json.loads(result.stdout.strip().splitlines()[-1])
    assert failures == {}, "\n\n".join(f"{name}:\n{text}" for name, text in failures.items())
