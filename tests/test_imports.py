"""Every module imports on its own, as the first module of ours in a fresh interpreter.

An import loop only shows when the modules of the loop are imported in an unlucky order
(``import cardsvc.payments.routes`` alone once failed while ``import cardsvc.api`` worked),
so each module is imported first, in its own process. To keep that cheap on a small
machine, one interpreter loads the third-party libraries, then forks one child per module:
the child starts with none of our modules loaded and imports exactly one.
"""

from __future__ import annotations

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
for module in json.loads(sys.argv[3]):
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            importlib.import_module(module)
            code, text = 0, b""
        except BaseException:
            code, text = 1, traceback.format_exc().encode()
        os.write(write_end, text[-4000:])
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        text = pipe.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if status != 0:
        failures[module] = text or f"exit status {status}"
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


def test_the_module_list_covers_the_known_loops() -> None:
    names = _modules()
    assert {"cardsvc.payments.routes", "verifier.terminal", "cardsvc.services.persons",
            "cardsvc.services.cards", "cardsvc.console"} <= set(names)
    assert len(names) > 100


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_every_module_imports_alone() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _DRIVER, json.dumps(_THIRD_PARTY), json.dumps(PACKAGES),
         json.dumps(_modules())],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr
    failures = json.loads(result.stdout.strip().splitlines()[-1])
    assert failures == {}, "\n\n".join(f"{name}:\n{text}" for name, text in failures.items())
