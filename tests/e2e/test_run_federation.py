"""``make run-federation`` as written: the Makefile's recipe starts the demo (a real process
on free ports), and the next steps it prints are run in bash, as a person would paste them.

A Hangzhou card provisioned from the printed code is ACCEPTED at the Yiwu counter (synced
from Yiwu, pinned to the printed national fingerprint) with Hangzhou shown; after the
printed national commands suspend Hangzhou and publish, the counter's next sync refuses it
(ISSUER_SUSPENDED). The cross-city charge lines are checked in the federation story.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kit.net import free_port
from kit.processes import BIN, clean_env, stop_process

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ("$(BIN)/python -m cardsvc.demo_federation --data-dir $(FED_DATA) --host $(HOST)"
          " --port $(PORT_FED)")


def _three_free_ports() -> int:
    while True:
        port = free_port()
        if port < 65000 and all(_free(port + offset) for offset in (1, 2)):
            return port


def _free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[str]:
    """The demo started by the Makefile's recipe; yields what it printed up to the end of
    its next steps."""
    assert RECIPE in (ROOT / "Makefile").read_text(), "the run-federation recipe changed"
    port = _three_free_ports()
    command = (RECIPE.replace("$(BIN)", str(BIN)).replace("$(FED_DATA)", str(tmp_path / "data"))
               .replace("$(HOST)", "127.0.0.1").replace("$(PORT_FED)", str(port)))
    out = tmp_path / "demo.out"
    with out.open("wb") as sink:
        process = subprocess.Popen(command.split(), stdout=sink, stderr=subprocess.STDOUT,
                                   env=clean_env(), cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while "-" * 78 + "\n" not in out.read_text().split("Next,", 1)[-1]:
            assert process.poll() is None, out.read_text()
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.2)
        printed = out.read_text()
        # Both cities answer before the steps run.
        for url in re.findall(r"\((CN-[A-Z]{2})\)\s+(http://\S+)", printed):
            _wait_for(url[1] + "/v1/health", process)
        yield printed
    finally:
        stop_process(process)
        # The demo stops the cities it started: nothing is left serving on their ports.
        deadline = time.monotonic() + 30
        while any(_listening(port + n) for n in range(3)):
            assert time.monotonic() < deadline, "the demo left a city's server running"
            time.sleep(0.2)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_for(url: str, process: subprocess.Popen[bytes]) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, url
        time.sleep(0.1)


def _steps(printed: str, tmp_path: Path) -> list[str]:
    block = printed.split("Next, in another terminal", 1)[1].split("-" * 78, 1)[0]
    lines = [line.strip() for line in block.splitlines()[1:]]
    return [line.split("   #", 1)[0].replace("/tmp/fmc-", f"{tmp_path}/fmc-")
            for line in lines if line and not line.startswith("#") and " " in line]


def test_make_run_federation_walks_as_printed(demo: str, tmp_path: Path) -> None:
    steps = _steps(demo, tmp_path)
    env = clean_env(PATH=f"{BIN}:/usr/bin:/bin")
    outputs = []
    for step in steps:
        if "terminal " in step:  # the cross-city charge: the federation story's part
            continue
        if step.startswith("export "):
            name, value = step.removeprefix("export ").strip().split("=", 1)
            found = re.fullmatch(r"\$\(cat (\S+)\)", value)
            env[name] = Path(found.group(1)).read_text().strip() if found else value
            continue
        run = subprocess.run(["bash", "-c", step], capture_output=True, text=True, env=env,
                             timeout=120, check=False)
        outputs.append((step, run))
    checks = [(step, run) for step, run in outputs if " check " in step]
    assert len(checks) == 2, [step for step, _ in outputs]
    (_, accepted), (_, refused) = checks
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert "ACCEPTED" in accepted.stdout and "Hangzhou" in accepted.stdout
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "ISSUER_SUSPENDED" in refused.stdout + refused.stderr
    for step, run in outputs:
        if " check " not in step:
            assert run.returncode == 0, f"{step}\n{run.stdout}{run.stderr}"
