"""Crash-safe file replacement (POSIX): the one way every package writes a file in place.

A reader sees either the old file or the new one, never a mix: the new content goes to
a temporary file with a unique name in the same directory, is flushed and fsynced, then
renamed over the old one, and the directory is fsynced so the rename itself survives a
power cut. Here, in the lowest package that writes files (the key store), so that
verifier, wallet_sim and cardsvc share it.

Example::

    write_atomically(directory / "k1.pem", pem, mode=0o600)
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "WRITE_STEPS",
    "atomic_writer",
    "fsync_directory",
    "remove_stale_temporaries",
    "write_atomically",
]

CHUNK_BYTES = 4096
# Names of the points between write steps, in order ("wrote" repeats once per chunk).
WRITE_STEPS = ("created", "wrote", "flushed", "synced", "renamed", "directory_synced")


def _no_step(step: str) -> None:
    return None


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}."


@contextlib.contextmanager
def atomic_writer(
    path: Path, *, mode: int = 0o600, on_step: Callable[[str], None] = _no_step
) -> Iterator[BinaryIO]:
    """A stream whose content replaces ``path`` when the block ends without an exception
    (and is thrown away when it raises): for content too big to hold in memory."""
    directory = path.parent
    fd, temporary = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=directory)
    renamed = False
    try:
        with os.fdopen(fd, "wb", closefd=True) as stream:
            os.fchmod(stream.fileno(), mode)  # before any byte: never readable by others
            on_step("created")
            yield stream
            stream.flush()
            on_step("flushed")
            os.fsync(stream.fileno())
            on_step("synced")
        os.replace(temporary, path)
        renamed = True
        on_step("renamed")
        fsync_directory(directory)
        on_step("directory_synced")
    finally:
        if not renamed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)


def write_atomically(
    path: Path, content: bytes, *, on_step: Callable[[str], None] = _no_step, mode: int = 0o600
) -> None:
    """Replace ``path`` by ``content`` so that a crash at any point leaves old or new.

    ``on_step`` is called after each step (tests kill the process there).
    """
    with atomic_writer(path, mode=mode, on_step=on_step) as stream:
        view = memoryview(content)
        for start in range(0, len(view), CHUNK_BYTES):
            stream.write(view[start : start + CHUNK_BYTES])
            stream.flush()  # make each chunk a separate write so crashes can split them
            on_step("wrote")


def fsync_directory(directory: Path) -> None:
    """Make a rename or unlink in ``directory`` survive a power cut."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temporaries(path: Path) -> None:
    """Delete temporaries left by writers that were killed (call under the lock)."""
    prefix = _temporary_prefix(path)
    for leftover in path.parent.glob(prefix + "*.tmp"):
        if leftover.name.startswith(prefix):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
