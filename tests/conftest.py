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
VECTORS = REPO / "tests" / "vectors"


@pytest.fixture(scope="session")
def public_vectors() -> Path:
    """The public test vectors kept in the repository (see tests/vectors/README.md)."""
    if not VECTORS.is_dir():
        pytest.fail(f"public test vectors missing: expected {VECTORS}")
    return VECTORS


def _fuzz_totals(config: pytest.Config) -> dict[str, int]:
    totals: dict[str, int] = getattr(config, "_fmc_fuzz_totals", {})
    config._fmc_fuzz_totals = totals  # type: ignore[attr-defined]
    return totals


def pytest_sessionfinish(session: pytest.Session) -> None:
    from support import FUZZ_INPUTS

    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: hand the counts to the controller
        workeroutput["fmc_fuzz_inputs"] = dict(FUZZ_INPUTS)
    else:
        for name, count in FUZZ_INPUTS.items():
            totals = _fuzz_totals(session.config)
            totals[name] = totals.get(name, 0) + count


def pytest_testnodedown(node: object, error: object) -> None:
    counts = getattr(node, "workeroutput", {}).get("fmc_fuzz_inputs", {})
    totals = _fuzz_totals(node.config)  # type: ignore[attr-defined]
    for name, count in counts.items():
        totals[name] = totals.get(name, 0) + count


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    totals = _fuzz_totals(terminalreporter.config)
    if totals:
        total = sum(totals.values())
        parts = ", ".join(f"{name} {count}" for name, count in sorted(totals.items()))
        terminalreporter.write_line(f"fuzz: {total} inputs tried ({parts})")
