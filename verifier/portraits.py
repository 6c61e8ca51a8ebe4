"""Portraits fetched online from the authority, checked against the credential's digest.

A credential carries only its portrait's digest (``pd``: SHA-256, first 16 bytes). When a
counter has a token with the ``verifier`` role, the portrait can be fetched from
``GET {server}/v1/portraits/{pd}``; it is shown only if its digest matches, and kept in
the cache for next time. Offline, nothing waits: after a failed fetch the fetcher rests
for a minute, and the counter says plainly that no portrait is available.

Example::

    fetcher = PortraitFetcher("https://authority.example", token=Path(f).read_text().strip())
    checkpoint = Checkpoint(cache, portrait_fetcher=fetcher)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx

from schemas._jose import b64url_encode
from schemas.credential import portrait_digest

__all__ = ["MAX_PORTRAIT_BYTES", "PortraitFetcher"]

MAX_PORTRAIT_BYTES = 2 * 1024 * 1024
_REST_AFTER_FAILURE = 60.0  # seconds without trying after the authority could not be reached


class PortraitFetcher:
    """Fetches portraits by digest; returns None (never raises) when it cannot."""

    def __init__(
        self,
        server: str,
        token: str,
        *,
        timeout: float = 2.0,
        client: httpx.Client | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._base = server.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "image/jpeg, image/png"}
        self._client = client or httpx.Client(timeout=timeout, follow_redirects=False)
        self._monotonic = monotonic
        self._resting_until = 0.0
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # the token stays out of logs and tracebacks
        return f"PortraitFetcher({self._base!r})"

    def fetch(self, digest: bytes) -> bytes | None:
        with self._lock:
            if self._monotonic() < self._resting_until:
                return None
        url = f"{self._base}/v1/portraits/{b64url_encode(digest)}"
        try:
            with self._client.stream("GET", url, headers=self._headers) as response:
                if response.status_code != 200:
                    return None
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > MAX_PORTRAIT_BYTES:
                        return None
                    chunks.append(chunk)
        except httpx.HTTPError:
            with self._lock:
                self._resting_until = self._monotonic() + _REST_AFTER_FAILURE
            return None
        image = b"".join(chunks)
        return image if portrait_digest(image) == digest else None

    def close(self) -> None:
        self._client.close()
