"""Concurrent clients for the benchmarks: start them all, release them at once, time them;
and a light HTTP client for load that must leave the cores to the server.

Example::

    barrier = threading.Barrier(concurrency + 1)      # the clients and this thread
    def client(i: int) -> None:
        barrier.wait()
        ...                                           # the timed work of client i
    seconds = run_released(concurrency, client, barrier)
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

__all__ = ["KeepAliveClient", "run_released"]


class KeepAliveClient:
    """One keep-alive HTTP/1.1 connection through the standard library. It costs ~0.4 ms
    of CPU a request where httpx costs ~1.2 ms (measured on the 2-core bench machine):
    load that measures how a server scales with its workers must not spend the cores
    those workers need. ``get`` and ``post_json`` answer ``(status, body)``; ``fetch`` also
    the answer's headers."""

    def __init__(self, url: str, headers: Mapping[str, str] | None = None) -> None:
        parts = urlsplit(url)
        self._connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1",
                                                      parts.port, timeout=60)
        self._headers = dict(headers or {})

    def get(self, path: str) -> tuple[int, bytes]:
        status, body, _headers = self.fetch("GET", path)
        return status, body

    def post_json(self, path: str, body: object) -> tuple[int, bytes]:
        status, answer, _headers = self.fetch("POST", path, json.dumps(body).encode(),
                                              {"Content-Type": "application/json"})
        return status, answer

    def fetch(self, method: str, path: str, body: bytes | None = None,
              headers: Mapping[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
        """(status, body, the answer's headers with lower-case names)."""
        self._connection.request(method, path, body=body,
                                 headers={**self._headers, **(headers or {})})
        answer = self._connection.getresponse()
        return (answer.status, answer.read(),
                {name.lower(): value for name, value in answer.getheaders()})

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> KeepAliveClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def run_released(concurrency: int, client: Callable[[int], None],
                 barrier: threading.Barrier) -> float:
    """Seconds from releasing the barrier to the last client's end. Each client must wait
    on ``barrier`` (made for ``concurrency + 1`` parties) before its timed work."""
    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started
