"""The terminal's service with its outside world injected: an HTTP client on a
MockTransport and a fixed clock, no command line and no network."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from support import NOW
from verifier.terminal import Terminal, TerminalConfig, TerminalError


def _terminal(directory: Path, handler: httpx.MockTransport) -> Terminal:
    return Terminal(directory, http=httpx.Client(transport=handler), clock=lambda: NOW,
                    pause=lambda seconds: None)


def test_setup_keeps_what_the_authority_said(tmp_path: Path) -> None:
    def authority(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/terminal"
        return httpx.Response(200, json={"terminal_id": 7, "name": "till 1", "merchant_id": 3,
                                         "merchant_name": "Stall 12", "offline_floor_fen": 500})

    config = _terminal(tmp_path, httpx.MockTransport(authority)).setup("http://authority")
    assert config == TerminalConfig("http://authority", 7, "till 1", 3, "Stall 12", 500)
    assert TerminalConfig.load(tmp_path) == config


@pytest.mark.parametrize(("answer", "code", "usage"), [
    (httpx.Response(403, json={"code": "NOT_A_TERMINAL", "detail": "no merchant"}),
     "NOT_A_TERMINAL", True),
    (httpx.Response(200, content=b"<html>captive portal</html>"), "BAD_ANSWER", False),
    (httpx.Response(200, json={"terminal_id": "seven"}), "BAD_ANSWER", False),
], ids=["refused", "not-json", "not-a-terminal"])
def test_setup_refusals_carry_the_server_s_code_and_words(
        tmp_path: Path, answer: httpx.Response, code: str, usage: bool) -> None:
    with pytest.raises(TerminalError) as refused:
        _terminal(tmp_path, httpx.MockTransport(lambda request: answer)).setup("http://a")
    assert (refused.value.code, refused.value.usage) == (code, usage)
    if code == "NOT_A_TERMINAL":
        assert refused.value.detail == "no merchant"  # the authority's words, shown
    assert TerminalConfig.load(tmp_path) is None  # a refusal keeps nothing


def test_an_unreachable_authority_without_a_cache_is_refused_offline(tmp_path: Path) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("down", request=request)

    answer = _terminal(tmp_path, httpx.MockTransport(down)).charge(
        "FMC1:123", amount_fen=100, server="http://a")
    assert (answer.ok, answer.mode) == (False, "offline")
    assert json.loads(json.dumps(answer.to_json()))["code"] == answer.code


def test_a_pending_cross_city_charge_is_asked_again_with_the_same_key(tmp_path: Path) -> None:
    keys: list[str] = []

    def acquirer(request: httpx.Request) -> httpx.Response:
        keys.append(json.loads(request.content)["idempotency_key"])
        return httpx.Response(202, headers={"Retry-After": "1"},
                              json={"status": "pending", "forward_id": "CN-YW:7:k"})

    answer = _terminal(tmp_path, httpx.MockTransport(acquirer)).charge(
        "FMC1:123", amount_fen=100, server="http://a")
    assert (answer.ok, answer.mode, answer.code) == (False, "online", "PENDING")
    assert len(keys) == 6 and len(set(keys)) == 1  # one key: never a second charge


def test_issuer_unreachable_goes_offline_like_an_unreachable_authority(tmp_path: Path) -> None:
    def acquirer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"code": "ISSUER_UNREACHABLE", "offline_allowed": True})

    answer = _terminal(tmp_path, httpx.MockTransport(acquirer)).charge(
        "FMC1:123", amount_fen=100, server="http://a")
    assert answer.mode == "offline"  # decided offline (here: no cache, so refused)
