"""Replay caches: a holder proof is accepted once.

The key of a proof is SHA-256(issuer signature || proof time): Ed25519 proofs are
deterministic and checked strictly, so one credential at one second has one proof.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Protocol

__all__ = ["MemoryReplayCache", "ReplayCache", "replay_key"]


def replay_key(credential_signature: bytes, proof_time: int) -> bytes:
    return hashlib.sha256(credential_signature + proof_time.to_bytes(8, "big")).digest()


class ReplayCache(Protocol):
    def check_and_add(self, key: bytes, *, expires_at: int, now: int) -> bool:
        """Record ``key`` until ``expires_at``; return False if it was already there."""
        ...


class MemoryReplayCache:
    """A process-local cache; entries past their expiry are dropped as new ones arrive."""

    def __init__(self) -> None:
        self._entries: dict[bytes, int] = {}
        self._lock = threading.Lock()
        self._next_purge = 0

    def check_and_add(self, key: bytes, *, expires_at: int, now: int) -> bool:
        with self._lock:
            if now >= self._next_purge:
                self._entries = {k: e for k, e in self._entries.items() if e > now}
                self._next_purge = now + 30
            seen = self._entries.get(key)
            if seen is not None and seen > now:
                return False
            self._entries[key] = expires_at
            return True

    def __len__(self) -> int:
        return len(self._entries)
