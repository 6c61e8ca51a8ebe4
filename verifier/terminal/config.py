"""What ``terminal setup`` learnt from the authority, kept in the cache directory."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from keys._atomic import write_atomically

__all__ = ["CONFIG_FILE", "TerminalConfig"]

CONFIG_FILE = "terminal.json"


@dataclass(frozen=True, slots=True)
class TerminalConfig:
    """This terminal as the authority knows it (``GET /v1/terminal``)."""

    server: str
    terminal_id: int
    name: str
    merchant_id: int
    merchant_name: str
    offline_floor_fen: int

    @staticmethod
    def load(directory: Path) -> TerminalConfig | None:
        try:
            raw = json.loads((directory / CONFIG_FILE).read_text("utf-8"))
            return TerminalConfig(**{name: raw[name] for name in TerminalConfig.__slots__})
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def store(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        write_atomically(directory / CONFIG_FILE,
                         json.dumps(asdict(self), indent=1, sort_keys=True).encode("utf-8"))
