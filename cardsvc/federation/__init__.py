"""The authority in a federation of cities (P10, docs/FEDERATION.md).

``state`` holds the national federation list this authority accepted last (table
``federation_state``), verified against the pinned national root; ``fetch`` brings a new
one over HTTP and keeps it fresh while serving. Other modules of this package (signed
requests between authorities, ...) build on the held list.

Example::

    federation = database.transact(held_federation, readonly=True)   # None: no federation
    entry = database.transact(lambda s: own_entry(s, settings=settings), readonly=True)
"""

from __future__ import annotations

from cardsvc.federation.state import (
    accept_federation_list,
    held_federation,
    held_federation_jwt,
    own_entry,
    own_sequence_blocks,
)

__all__ = [
    "accept_federation_list",
    "held_federation",
    "held_federation_jwt",
    "own_entry",
    "own_sequence_blocks",
]
