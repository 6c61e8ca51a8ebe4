"""A payment terminal: a shop's till that charges pay codes online, or offline when the
authority cannot be reached, and uploads what it took offline.

- :mod:`verifier.terminal.service` -- :class:`Terminal` (setup, charge, upload) over an
  injected HTTP client and clock; answers are values, nothing prints
- :mod:`verifier.terminal.offline` -- the pure offline decision (floor, offline limit)
- :mod:`verifier.terminal.queue` -- the durable SQLite queue of offline payments
- :mod:`verifier.terminal.config` -- what ``terminal setup`` learnt from the authority
- :mod:`verifier.terminal.cli` -- the ``verifier terminal`` commands (imported only by the
  CLI: nothing else needs Typer)

Receipts are wire format (:mod:`schemas.receipt`); their check and its binding to the
sale are :mod:`verifier.receipts`.

Example::

    export FMC_TERMINAL_TOKEN=...            # the terminal's token, never on the command line
    verifier --cache DIR sync --server https://authority.example --root kPrK_qmx...
    verifier --cache DIR terminal setup
    verifier --cache DIR terminal charge --image scan.jpg --amount 1250
    verifier --cache DIR terminal upload
"""

from verifier.terminal.config import CONFIG_FILE, TerminalConfig
from verifier.terminal.offline import offline_decision
from verifier.terminal.queue import QUEUE_DB, OfflineQueue, QueuedPayment
from verifier.terminal.service import (
    ChargeAnswer,
    Terminal,
    TerminalError,
    UploadSummary,
    format_fen,
)

__all__ = [
    "CONFIG_FILE",
    "QUEUE_DB",
    "ChargeAnswer",
    "OfflineQueue",
    "QueuedPayment",
    "Terminal",
    "TerminalConfig",
    "TerminalError",
    "UploadSummary",
    "format_fen",
    "offline_decision",
]
