"""Concurrent clients for the benchmarks: start them all, release them at once, time them.

Example::

    barrier = threading.Barrier(concurrency + 1)      # the clients and this thread
    def client(i: int) -> None:
        barrier.wait()
        ...                                           # the timed work of client i
    seconds = run_released(concurrency, client, barrier)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["run_released"]


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
