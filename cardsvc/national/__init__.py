"""The national root's tooling: register city issuers and sign the federation list.

The national root is an offline key; this package needs no database and no server. See
docs/FEDERATION.md for the design and ``cardsvc national --help`` for the commands.

Example::

    fingerprint, _ = init_registry(directory, passphrase=b"...", name="CN")
    claims, jwt = publish(directory, passphrase=b"...", now=now)
"""

from cardsvc.national.registry import (
    NationalError,
    add_issuer,
    grant_block,
    init_registry,
    load_registry,
    publish,
    set_issuer_state,
    update_issuer,
)

__all__ = [
    "NationalError",
    "add_issuer",
    "grant_block",
    "init_registry",
    "load_registry",
    "publish",
    "set_issuer_state",
    "update_issuer",
]
