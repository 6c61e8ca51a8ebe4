"""A directory lock for the wallet file (POSIX); crash-safe writes are ``keys._atomic``'s."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from keys._atomic import WRITE_STEPS, remove_stale_temporaries, write_atomically

__all__ = ["WRITE_STEPS", "directory_lock", "remove_stale_temporaries", "write_atomically"]


@contextlib.contextmanager
def directory_lock(directory: Path) -> Iterator[None]:
    """An exclusive advisory lock on the directory: one writer at a time, no lock file.

    The wallet file itself cannot carry the lock because each write replaces its inode.
    """
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
