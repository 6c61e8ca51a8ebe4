"""``cardsvc serve`` answers without Nagle's delay also with ``--workers N``: uvicorn then
binds a socket whose accepted connections asyncio leaves without TCP_NODELAY (proto 0),
and h11's two writes per response waited ~40 ms for the client's delayed ACK. The same for the
httptools protocol ``serve`` runs when the optional package is installed."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from cardsvc.api import _http
from cardsvc.api._http import NoDelayH11Protocol


class _Transport(asyncio.Transport):
    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"socket": self.sock, "sockname": self.sock.getsockname(),
                "peername": self.sock.getpeername()}.get(name, default)


def _protocol(name: str) -> Any:
    if name == "httptools" and not _http.has_httptools():
        pytest.skip("the optional httptools package is not installed")
    return NoDelayH11Protocol if name == "h11" else _http.NoDelayHttpToolsProtocol


@pytest.mark.parametrize("name", ["h11", "httptools"])
def test_an_accepted_connection_of_a_proto_0_socket_gets_tcp_nodelay(name: str) -> None:
    protocol_class = _protocol(name)
    with socket.socket(socket.AF_INET) as listener:  # as uvicorn binds for --workers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with socket.create_connection(listener.getsockname()):
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.proto == 0  # asyncio's own _set_nodelay skips it
                assert not accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)

                async def connect() -> None:
                    config = Config(app=lambda *_: None, http=protocol_class)
                    config.load()
                    protocol = protocol_class(config=config, server_state=ServerState(),
                                              app_state={})
                    protocol.connection_made(_Transport(accepted))

                asyncio.run(connect())
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_serve_runs_the_nodelay_protocol() -> None:
    from inspect import getsource

    from cardsvc import cli

    assert "http=HTTP_PROTOCOL" in getsource(cli.serve)
    expected = "NoDelayHttpToolsProtocol" if _http.has_httptools() else "NoDelayH11Protocol"
    assert f"cardsvc.api._http:{expected}" == _http.HTTP_PROTOCOL
