"""Real processes for the end-to-end stories: the installed CLIs, a cardsvc server."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from kit.net import free_port
from kit.processes import CardsvcServer, clean_env, run_cli

PIN = "482913"


@dataclass
class Authority:
    """`cardsvc serve` on a free port, with the admin token printed by `cardsvc init`."""

    data_dir: Path
    port: int
    root_fingerprint: str
    admin: dict[str, str]
    passphrase: str
    process: CardsvcServer | None = None

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
        self.process = CardsvcServer(
            self.data_dir, clean_env(CARDSVC_KEY_PASSPHRASE=self.passphrase),
            self.data_dir.parent / f"serve-{self.port}.log", port=self.port).start()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def post(self, path: str, body: dict[str, Any], expect: int = 201) -> dict[str, Any]:
        answer = httpx.post(self.url + path, headers=self.admin, json=body)
        assert answer.status_code == expect, answer.text
        return dict(answer.json())

    def get(self, path: str, **params: str) -> dict[str, Any]:
        answer = httpx.get(self.url + path, headers=self.admin, params=params)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())
