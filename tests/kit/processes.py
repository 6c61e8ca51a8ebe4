"""The project's own processes: console scripts and ``cardsvc serve``.

Everything runs through this interpreter's environment (``sys.executable``), never a
hard-coded ``.venv``, so a clone, a worktree or CI's fresh checkout tests its own code."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from kit.net import free_port

__all__ = [
    "BIN",
    "PYTHON",
    "CardsvcServer",
    "clean_env",
    "run_cli",
    "stop_process",
    "wait_until_serving",
]

PYTHON = Path(sys.executable)
BIN = PYTHON.parent
_PROJECT_PREFIXES = ("CARDSVC_", "FMC_", "VERIFIER_")


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any project setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_PROJECT_PREFIXES)}
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """One of the project's console scripts (``cardsvc``, ``wallet-sim``, ``verifier``)."""
    return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True,
                          env=env if env is not None else clean_env(), timeout=timeout,
                          check=False)


def wait_until_serving(url: str, process: subprocess.Popen[bytes], *,
                       seconds: float = 60) -> None:
    """Poll ``url`` until it answers 200 (after redirects); fail if the process exits or
    time runs out."""
    deadline = time.monotonic() + seconds
    while True:
        assert process.poll() is None, f"the server for {url} exited ({process.returncode})"
        try:
            if httpx.get(url, timeout=1, follow_redirects=True).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{url} did not answer"
        time.sleep(0.05)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it does not exit within 15 s."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)


class CardsvcServer:
    """``cardsvc serve`` in its own process on a free port, its log in a file."""

    def __init__(self, data_dir: Path, env: dict[str, str], log_path: Path | None = None,
                 *, port: int | None = None, start_timeout: float = 60,
                 args: tuple[str, ...] = ()) -> None:
        self.data_dir, self.env, self.args = data_dir, env, args
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = log_path or data_dir / f"serve-{self.port}.log"
        self.start_timeout = start_timeout

    def start(self) -> CardsvcServer:
        # The log goes to a file: an unread pipe fills up (64 KiB) and blocks the server.
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(PYTHON), "-m", "cardsvc", "serve", "--data-dir", str(self.data_dir),
                 "--port", str(self.port), *self.args],
                env=self.env, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"cardsvc serve exited: {self.log_tail()}")
            try:
                if httpx.get(self.url + "/v1/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise AssertionError(f"cardsvc serve did not start: {self.log_tail()}")

    def log_tail(self, size: int = 4000) -> str:
        try:
            return self.log_path.read_bytes()[-size:].decode(errors="replace")
        except OSError:
            return ""

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM (a graceful stop), then SIGKILL after 15 s."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
