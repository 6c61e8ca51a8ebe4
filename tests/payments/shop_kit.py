"""A shop's terminal for payment tests: one cache directory and token driving
``verifier terminal`` in process (shared by test_terminal and test_one_use_pay)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from payments_kit import PayWorld, TerminalHandle
from typer.testing import CliRunner

from verifier.cli import app
from verifier.terminal import QUEUE_DB, OfflineQueue, QueuedPayment

AT = "2027-01-15T08:00:00Z"  # payments_kit.NOW
runner = CliRunner()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


class Shop:
    """One terminal's cache directory and token, driving ``verifier terminal``."""

    def __init__(self, world: PayWorld, directory: Path, terminal: TerminalHandle) -> None:
        self.world, self.directory, self.terminal = world, directory, terminal
        assert self.run("sync", "--server", world.url, "--root", world.root_fingerprint,
                        "--at", AT)[0] == 0
        assert self.run("terminal", "setup", "--server", world.url)[0] == 0

    def run(self, *args: str, stdin: bytes | None = None) -> tuple[int, str]:
        result = runner.invoke(app, ["--cache", str(self.directory), *args], input=stdin,
                               env={"FMC_TERMINAL_TOKEN": self.terminal.token})
        return result.exit_code, result.output

    def charge(self, code: str, amount: int, *extra: str, offline: bool = False) -> Any:
        server = closed_port_url() if offline else self.world.url
        exit_code, output = self.run("terminal", "charge", "--text", code, "--amount",
                                     str(amount), "--server", server, "--at", AT, "--json",
                                     *extra)
        return exit_code, json.loads(output)

    def upload(self) -> Any:
        exit_code, output = self.run("terminal", "upload", "--at", AT, "--json")
        return exit_code, json.loads(output)

    def queue(self) -> list[QueuedPayment]:
        with OfflineQueue(self.directory / QUEUE_DB) as queue:
            return queue.items()
