"""The HTTP/1.1 protocol ``cardsvc serve`` runs: uvicorn's, with ``TCP_NODELAY`` on every
accepted connection; httptools' parser when the optional ``httptools`` package is
installed (``pip install 'fmc[speed]'``), else h11's.

Why TCP_NODELAY (P11): with ``--workers N`` uvicorn binds the listening socket itself as
``socket.socket(family)``, whose ``proto`` is 0, and asyncio only sets ``TCP_NODELAY`` on
sockets whose ``proto`` is ``IPPROTO_TCP``. h11 writes a response's head and body in two
writes, so Nagle's algorithm held the body back until the client's delayed ACK (~40 ms):
health at 8 clients fell from ~700 to ~180 requests/s with 2 workers. With one worker
uvicorn binds through ``create_server(host, port)`` and the flag was already set. The
httptools protocol gets the same flag: the bytes it writes must not wait either.

Why httptools (P11): h11 parses in pure Python; httptools is llhttp in C. Both protocols
behave the same for the app (uvicorn's own two implementations of one ASGI server).
"""

from __future__ import annotations

import asyncio
import importlib.util
import socket

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["HTTP_PROTOCOL", "NoDelayH11Protocol", "has_httptools", "set_nodelay"]


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """``TCP_NODELAY`` on the transport's TCP socket (a Unix socket is left alone)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class NoDelayH11Protocol(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        set_nodelay(transport)
        super().connection_made(transport)


def has_httptools() -> bool:
    return importlib.util.find_spec("httptools") is not None


if has_httptools():
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class NoDelayHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(  # type: ignore[override]
            self, transport: asyncio.Transport
        ) -> None:
            set_nodelay(transport)
            super().connection_made(transport)

    __all__ += ["NoDelayHttpToolsProtocol"]

# What ``cardsvc serve`` hands uvicorn (an import string: each worker imports it).
HTTP_PROTOCOL = ("cardsvc.api._http:NoDelayHttpToolsProtocol" if has_httptools()
                 else "cardsvc.api._http:NoDelayH11Protocol")
