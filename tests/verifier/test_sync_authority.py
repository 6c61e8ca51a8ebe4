"""A small fake authority (the cardsvc routes verifier sync uses) over tests/support's World.

Other verifier test modules import :class:`FakeAuthority` from here. It serves

    GET /v1/trust-list            application/jwt, ETag, 304 on If-None-Match
    GET /v1/status-lists          {"status_lists": [{"id", "uri"}]}
    GET /v1/status-lists/{id}     application/statuslist+jwt, ETag, 304
    GET /v1/timestamp             override["timestamp"] when set (P8.5), else 404 (an
                                  authority that publishes no timestamp)

with uvicorn on 127.0.0.1 (a free port), counting requests and body bytes. The tests at
the bottom check the fake itself (ETag and 304), so the sync tests rest on it.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from kit.net import serving

from support import World


@dataclass
class FakeAuthority:
    world: World = field(default_factory=World)
    list_ids: tuple[str, ...] = ("1",)
    # Replace what is served (e.g. a tampered JWT): name -> body; names "trust-list", "1", ...
    override: dict[str, str] = field(default_factory=dict)
    down: bool = False  # answer 503 to everything
    # GET /v1/portraits/{pd} with "Authorization: Bearer <portrait_token>": pd -> image
    portraits: dict[str, bytes] = field(default_factory=dict)
    portrait_token: str = "verifier-token"
    requests: list[tuple[str, int, int]] = field(default_factory=list)  # path, status, bytes
    url: str = ""
    not_modified: bool = False  # answer 304 to every If-None-Match (a lying cache or MITM)

    def body(self, name: str) -> str:
        if name in self.override:
            return self.override[name]
        if name == "trust-list":
            return self.world.trust_list_jwt()
        return self.world.status_list_jwt(list_id=name)

    def app(self) -> FastAPI:
        app = FastAPI()

        def signed(request: Request, name: str, media_type: str) -> Response:
            if self.down:
                return self._log(request, Response("down", status_code=503))
            jwt = self.body(name).encode()
            etag = '"' + hashlib.sha256(jwt).hexdigest()[:32] + '"'
            headers = {"ETag": etag, "Cache-Control": "max-age=60"}
            if self.not_modified and request.headers.get("if-none-match"):
                return self._log(request, Response(status_code=304, headers=headers))
            if request.headers.get("if-none-match") == etag:
                return self._log(request, Response(status_code=304, headers=headers))
            return self._log(request, Response(jwt, media_type=media_type, headers=headers))

        @app.get("/v1/trust-list")
        def trust_list(request: Request) -> Response:
            return signed(request, "trust-list", "application/jwt")

        @app.get("/v1/status-lists")
        def index(request: Request) -> Response:
            if self.down:
                return self._log(request, Response("down", status_code=503))
            entries = [{"id": i, "uri": f"{self.url}/v1/status-lists/{i}"} for i in self.list_ids]
            return self._log(request, JSONResponse({"status_lists": entries}))

        @app.get("/v1/status-lists/{list_id}")
        def status_list(request: Request, list_id: str) -> Response:
            if list_id not in self.list_ids:
                return self._log(request, Response(status_code=404))
            return signed(request, list_id, "application/statuslist+jwt")

        @app.get("/v1/timestamp")
        def timestamp(request: Request) -> Response:
            if "timestamp" not in self.override:  # not logged: as if the route did not exist
                return Response(status_code=404)
            return signed(request, "timestamp", "application/jwt")

        @app.get("/v1/portraits/{digest}")
        def portrait(request: Request, digest: str) -> Response:
            if request.headers.get("authorization") != f"Bearer {self.portrait_token}":
                return self._log(request, Response(status_code=401))
            image = self.portraits.get(digest)
            if image is None:
                return self._log(request, Response(status_code=404))
            return self._log(request, Response(image, media_type="image/jpeg"))

        return app

    def _log(self, request: Request, response: Response) -> Response:
        self.requests.append((request.url.path, response.status_code, len(response.body)))
        return response

    def bytes_sent(self) -> int:
        return sum(size for _, _, size in self.requests)


@contextmanager
def running(authority: FakeAuthority) -> Iterator[FakeAuthority]:
    with serving(authority.app(), lifespan="off") as url:
        authority.url = url
        yield authority


def unused_url() -> str:
    """A URL where nothing listens (the network is gone)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def flip_one_byte(jwt: str, part: int = 1, offset: int = 10) -> str:
    """Change one character of a compact JWT's header (0), payload (1) or signature (2)."""
    pieces = jwt.split(".")
    text = pieces[part]
    position = min(offset, len(text) - 2)
    replacement = "A" if text[position] != "A" else "B"
    pieces[part] = text[:position] + replacement + text[position + 1:]
    return ".".join(pieces)


# -- the fake itself ----------------------------------------------------------------------



def test_fake_authority_serves_etag_and_304() -> None:
    with running(FakeAuthority()) as authority, httpx.Client() as http:
        first = http.get(f"{authority.url}/v1/trust-list")
        assert first.status_code == 200
        assert first.headers["content-type"].startswith("application/jwt")
        again = http.get(f"{authority.url}/v1/trust-list",
                         headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        index = http.get(f"{authority.url}/v1/status-lists").json()
        assert [entry["id"] for entry in index["status_lists"]] == ["1"]
        status = http.get(f"{authority.url}/v1/status-lists/1")
        assert status.headers["content-type"].startswith("application/statuslist+jwt")


def test_flip_one_byte_changes_exactly_one_character() -> None:
    jwt = World().trust_list_jwt()
    tampered = flip_one_byte(jwt)
    assert len(tampered) == len(jwt)
    assert sum(a != b for a, b in zip(jwt, tampered, strict=True)) == 1
