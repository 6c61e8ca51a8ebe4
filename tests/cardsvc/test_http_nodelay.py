"""``cardsvc serve`` answers without Nagle's delay also with ``--workers N``: uvicorn then
binds a socket whose accepted connections asyncio leaves without TCP_NODELAY (proto 0),
and h11's two writes per response waited ~40 ms for the client's delayed ACK."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from cardsvc.api._http import NoDelayH11Protocol


class _Transport(asyncio.Transport):
    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"socket": self.sock, "sockname": self.sock.getsockname(),
                "peername": self.sock.getpeername()}.get(name, default)


def test_an_accepted_connection_of_a_proto_0_socket_gets_tcp_nodelay() -> None:
    with socket.socket(socket.AF_INET) as listener:  # as uvicorn binds for --workers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with socket.create_connection(listener.getsockname()):
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.proto == 0  # asyncio's own _set_nodelay skips it
                assert not accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)

                async def connect() -> None:
                    config = Config(app=lambda *_: None, http=NoDelayH11Protocol)
                    config.load()
                    protocol = NoDelayH11Protocol(config=config, server_state=ServerState(),
                                                  app_state={})
                    protocol.connection_made(_Transport(accepted))

                asyncio.run(connect())
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_serve_runs_the_nodelay_protocol() -> None:
    from inspect import getsource

    from cardsvc import cli

    assert "cardsvc.api._http:NoDelayH11Protocol" in getsource(cli.serve)
