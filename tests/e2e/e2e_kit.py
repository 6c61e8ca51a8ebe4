"""Real processes for the end-to-end stories: the installed CLIs, a cardsvc server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

BIN = Path(sys.executable).parent
PIN = "482913"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any project settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CARDSVC_", "FMC_", "VERIFIER_"))}
    env.update(extra)
    return env


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


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """One of the project's console scripts (cardsvc, wallet-sim, verifier)."""
    return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True,
                          env=env or clean_env(), timeout=120, check=False)


@dataclass
class Authority:
    """`cardsvc serve` on a free port, with the admin token printed by `cardsvc init`."""

    data_dir: Path
    port: int
    root_fingerprint: str
    admin: dict[str, str]
    passphrase: str
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def init(cls, data_dir: Path, *, passphrase: str) -> Authority:
        init = run_cli("cardsvc", "init", "--data-dir", str(data_dir),
                       env=clean_env(CARDSVC_KEY_PASSPHRASE=passphrase))
        assert init.returncode == 0, init.stderr
        printed = dict(line.split(":", 1) for line in init.stdout.splitlines() if ":" in line)
        return cls(data_dir, free_port(), printed["root fingerprint"].strip(),
                   {"Authorization": f"Bearer {printed['admin token'].strip()}"}, passphrase)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [str(BIN / "cardsvc"), "serve", "--data-dir", str(self.data_dir),
             "--port", str(self.port)],
            env=clean_env(CARDSVC_KEY_PASSPHRASE=self.passphrase),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until_serving(self.url + "/v1/health", self.process)

    def stop(self) -> None:
        if self.process is None:
            return
        stop_process(self.process)
        self.process = None

    def post(self, path: str, body: dict[str, Any], expect: int = 201) -> dict[str, Any]:
        answer = httpx.post(self.url + path, headers=self.admin, json=body)
        assert answer.status_code == expect, answer.text
        return dict(answer.json())

    def get(self, path: str, **params: str) -> dict[str, Any]:
        answer = httpx.get(self.url + path, headers=self.admin, params=params)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())
