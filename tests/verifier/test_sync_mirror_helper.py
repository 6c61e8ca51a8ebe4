"""The reusable fetch-from-mirrors helper of verifier.sync: bases tried in order, the
caller's verification decides, an unreachable or refused mirror moves on to the next."""

from __future__ import annotations

import httpx
import pytest

from schemas.codes import FmcError, Malformed
from verifier.sync import SyncError, fetch_from_mirrors, mirror_bodies

_BODIES = {
    "http://down.example": None,  # connection refused
    "http://broken.example": (500, b"oops"),
    "http://garbage.example": (200, b"garbage"),
    "http://good.example": (200, b"good"),
    "http://huge.example": (200, b"x" * 200),
}


def _client() -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        answer = _BODIES[f"{request.url.scheme}://{request.url.host}"]
        if answer is None:
            raise httpx.ConnectError("refused", request=request)
        assert request.url.path == "/v1/federation-list"
        return httpx.Response(answer[0], content=answer[1])

    return httpx.Client(transport=httpx.MockTransport(handler))


def _accept(body: bytes) -> str:
    if body != b"good":
        raise Malformed("not the good list")
    return body.decode()


@pytest.mark.parametrize(("bases", "expected"), [
    (["http://good.example"], "good"),
    (["http://down.example", "http://broken.example", "http://garbage.example",
      "http://huge.example", "http://good.example"], "good"),
])
def test_the_first_body_the_caller_accepts_wins(bases: list[str], expected: str) -> None:
    with _client() as http:
        assert fetch_from_mirrors(http, bases, "/v1/federation-list", cap=100,
                                  accept=_accept) == expected


def test_every_mirror_failing_is_one_error_naming_the_last() -> None:
    with _client() as http, pytest.raises(SyncError) as raised:
        fetch_from_mirrors(http, ["http://down.example", "http://garbage.example"],
                           "/v1/federation-list", cap=100, accept=_accept)
    assert raised.value.code == "MIRRORS_EXHAUSTED"
    assert "garbage.example" in raised.value.detail


def test_bodies_come_in_order_and_skip_what_cannot_be_fetched() -> None:
    with _client() as http:
        got = [base for base, _ in mirror_bodies(
            http, ["http://broken.example", "http://garbage.example", "http://good.example"],
            "/v1/federation-list", cap=100)]
    assert got == ["http://garbage.example", "http://good.example"]
    assert issubclass(Malformed, FmcError)
