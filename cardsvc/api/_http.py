"""The HTTP/1.1 protocol ``cardsvc serve`` runs: uvicorn's h11 one with ``TCP_NODELAY`` on
every accepted connection.

Why (P11): with ``--workers N`` uvicorn binds the listening socket itself as
``socket.socket(family)``, whose ``proto`` is 0, and asyncio only sets ``TCP_NODELAY`` on
sockets whose ``proto`` is ``IPPROTO_TCP``. h11 writes a response's head and body in two
writes, so Nagle's algorithm held the body back until the client's delayed ACK (~40 ms):
health at 8 clients fell from ~700 to ~180 requests/s with 2 workers. With one worker
uvicorn binds through ``create_server(host, port)`` and the flag was already set.
"""

from __future__ import annotations

import asyncio
import socket

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["NoDelayH11Protocol"]


class NoDelayH11Protocol(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
