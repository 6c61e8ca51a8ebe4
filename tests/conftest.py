from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("FMC_FUZZ_EXAMPLES", "20000")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("fuzz" if os.environ.get("FMC_FUZZ_EXAMPLES") else "ci")

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_vectors() -> Path:
    path = SHARED / "vectors"
    if not path.is_dir():
        pytest.fail(f"public test vectors missing: expected {path}")
    return path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from support import FUZZ_INPUTS

    if FUZZ_INPUTS:
        total = sum(FUZZ_INPUTS.values())
        parts = ", ".join(f"{name} {count}" for name, count in sorted(FUZZ_INPUTS.items()))
        terminalreporter.write_line(f"fuzz: {total} inputs tried ({parts})")
