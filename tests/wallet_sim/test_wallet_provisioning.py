"""Provisioning and refresh over HTTP, against the fake authority and hostile answers."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from wallet_testkit import FakeAuthority, portrait_png, verify

from keys import sign_credential
from schemas import Purpose, b64url_encode
from schemas.codes import ResultCode
from support import DAY, ISSUER_KEY, NOW, OTHER_DEVICE, credential
from wallet_sim import WalletError, WalletErrorCode, present, provision, refresh


def test_provision_binds_credentials_to_a_key_made_on_the_phone(
    authority: FakeAuthority,
) -> None:
    code = authority.issue_code(portrait=portrait_png())
    card = provision(authority.url, code, now=NOW)
    assert card.card_number == "3300012345678901"
    assert card.purposes == (Purpose.PAY, Purpose.ID, Purpose.SVC)
    assert card.portrait == portrait_png()
    assert card.holder.foreigner_code == "933566199001010017"
    for purpose in Purpose:
        assert card.claims(purpose).holder_key == card.device_public_key
        assert verify(present(card, purpose, now=NOW), purpose, now=NOW).code is ResultCode.OK
    # Only the public key and the proof went out; never the seed.
    ((route, raw),) = authority.requests
    sent = json.loads(raw)
    assert route == "provision"
    assert set(sent) == {"provisioning_code", "device_key", "proof"}
    assert sent["device_key"] == b64url_encode(card.device_public_key)
    for secret in (card.device_seed, b64url_encode(card.device_seed).encode(),
                   base64.b64encode(card.device_seed), card.device_seed.hex().encode()):
        assert secret not in raw


def test_each_provisioning_makes_a_new_device_key(authority: FakeAuthority) -> None:
    first = provision(authority.url, authority.issue_code("3300000000000017"), now=NOW)
    second = provision(authority.url, authority.issue_code("3300000000000025"), now=NOW)
    assert first.device_public_key != second.device_public_key


@pytest.mark.parametrize(
    ("code", "server_code"),
    [("ZZZZ-ZZZZ-ZZZZ", "PROVISIONING_CODE_UNKNOWN")],
)
def test_unknown_code_is_refused(authority: FakeAuthority, code: str, server_code: str) -> None:
    with pytest.raises(WalletError) as caught:
        provision(authority.url, code, now=NOW)
    assert caught.value.code is WalletErrorCode.SERVER_REFUSED
    assert caught.value.server_code == server_code
    assert not caught.value.is_usage_error


def test_code_is_single_use(authority: FakeAuthority) -> None:
    code = authority.issue_code()
    provision(authority.url, code, now=NOW)
    with pytest.raises(WalletError) as caught:
        provision(authority.url, code.lower(), now=NOW)
    assert caught.value.server_code == "PROVISIONING_CODE_USED"


def test_server_down() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(WalletError) as caught:
        provision(f"http://127.0.0.1:{port}", "ABCD-EFGH-JKLM", now=NOW)
    assert caught.value.code is WalletErrorCode.SERVER_UNREACHABLE


@pytest.mark.parametrize(
    ("server", "code"),
    [("ftp://example.org", "ABCD-EFGH"), ("not a url", "ABCD-EFGH"),
     ("http://", "ABCD-EFGH"), ("http://127.0.0.1:9/?x=1", "ABCD-EFGH"),
     ("http://127.0.0.1:9", ""), ("http://127.0.0.1:9", "AB"),
     ("http://127.0.0.1:9", "ABCD/../x"), ("http://127.0.0.1:9", "A" * 80)],
)
def test_bad_arguments(server: str, code: str) -> None:
    with pytest.raises(WalletError) as caught:
        provision(server, code, now=NOW)
    assert caught.value.code is WalletErrorCode.BAD_ARGUMENT


# --- hostile or broken answers (httpx.MockTransport) -----------------------------------


def _answer_with(make: Callable[[bytes], Any], status: int = 200) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        device_key = base64.urlsafe_b64decode(json.loads(request.content)["device_key"] + "=")
        answer = make(device_key)
        if isinstance(answer, bytes):
            return httpx.Response(status, content=answer)
        return httpx.Response(status, json=answer)

    return httpx.Client(transport=httpx.MockTransport(handler))


def _bundle(device_key: bytes, **per_purpose: dict[str, Any]) -> dict[str, Any]:
    return {"card_number": "3300012345678901", "credentials": {
        p.value: sign_credential(credential(p, holder_key=device_key,
                                            **per_purpose.get(p.value, {})), ISSUER_KEY)
        for p in Purpose}}


HOSTILE: list[tuple[str, Callable[[bytes], Any], int]] = [
    ("bound to another phone", lambda k: _bundle(OTHER_DEVICE.public_key), 200),
    ("mixed card numbers", lambda k: _bundle(k, svc={"card_number": "3300000000000099"}), 200),
    ("stated number differs", lambda k: {**_bundle(k), "card_number": "3300000000000099"}, 200),
    ("purpose swapped", lambda k: {"credentials": {
        "pay": _bundle(k)["credentials"]["id"]}}, 200),
    ("garbage credential", lambda k: {"credentials": {"pay": "a.b.c"}}, 200),
    ("credential not a string", lambda k: {"credentials": {"pay": 5}}, 200),
    ("no credentials", lambda k: {"card_number": "3300012345678901"}, 200),
    ("only unknown purposes", lambda k: {"credentials": {"xyz": "a.b.c"}}, 200),
    ("not JSON", lambda k: b"<html>hello</html>", 200),
    ("JSON list", lambda k: [1, 2], 200),
]


@pytest.mark.parametrize(("case", "make", "status"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_answers_are_refused(case: str, make: Callable[[bytes], Any], status: int
                                     ) -> None:
    with _answer_with(make, status) as client, pytest.raises(WalletError) as caught:
        provision("http://authority.test", "ABCD-EFGH-JKLM", now=NOW, client=client)
    assert caught.value.code is WalletErrorCode.BAD_SERVER_RESPONSE


@pytest.mark.parametrize(
    ("status", "body", "server_code"),
    [(500, b"Internal Server Error", None),
     (422, {"code": "PROOF_INVALID", "title": "bad proof"}, "PROOF_INVALID"),
     (410, {"code": "PROVISIONING_CODE_EXPIRED", "detail": "expired\x1b[31m"},
      "PROVISIONING_CODE_EXPIRED"),
     (400, {"code": "lower-case not a code"}, None)],
)
def test_server_errors_are_shown_plainly(status: int, body: Any, server_code: str | None
                                         ) -> None:
    with _answer_with(lambda k: body, status) as client, pytest.raises(WalletError) as caught:
        provision("http://authority.test", "ABCD-EFGH-JKLM", now=NOW, client=client)
    assert caught.value.code is WalletErrorCode.SERVER_REFUSED
    assert caught.value.server_code == server_code
    assert "\x1b" not in caught.value.message  # the server cannot drive the user's terminal


def test_unknown_extra_purpose_is_ignored() -> None:
    def make(k: bytes) -> dict[str, Any]:
        bundle = _bundle(k)
        bundle["credentials"]["future"] = "x.y.z"
        return bundle

    with _answer_with(make) as client:
        card = provision("http://authority.test", "ABCD-EFGH-JKLM", now=NOW, client=client)
    assert card.purposes == tuple(Purpose)


@pytest.mark.parametrize(
    ("portrait_field", "kept"),
    [(lambda p: base64.b64encode(p).decode(), True),
     (lambda p: base64.urlsafe_b64encode(p).decode().rstrip("="), True),
     (lambda p: base64.b64encode(p + b"x").decode(), False),  # digest does not match
     (lambda p: "%%%not base64", False),
     (lambda p: 42, False)],
)
def test_portrait_kept_only_when_it_matches_the_signed_digest(
    portrait_field: Callable[[bytes], Any], kept: bool
) -> None:
    from schemas.credential import portrait_digest

    portrait = portrait_png()

    def make(k: bytes) -> dict[str, Any]:
        digest = {"portrait_digest": portrait_digest(portrait)}
        return {**_bundle(k, id=digest, svc=digest), "portrait": portrait_field(portrait)}

    with _answer_with(make) as client:
        card = provision("http://authority.test", "ABCD-EFGH-JKLM", now=NOW, client=client)
    assert (card.portrait == portrait) is kept


# --- refresh ---------------------------------------------------------------------------


def test_refresh_renews_credentials_with_the_same_device_key(authority: FakeAuthority) -> None:
    card = provision(authority.url, authority.issue_code(lifetime=10 * DAY), now=NOW)
    later = NOW + 9 * DAY
    authority.clock = lambda: later
    fresh = refresh(card, now=later)
    assert fresh.device_seed == card.device_seed and fresh.card_number == card.card_number
    assert fresh.expires_at == later - 60 + 10 * DAY > card.expires_at
    assert fresh.refreshed_at == later
    route, raw = authority.requests[-1]
    assert route == "refresh" and set(json.loads(raw)) == {"card_number", "device_key", "time",
                                                           "proof"}
    assert b64url_encode(card.device_seed).encode() not in raw


def test_refresh_not_offered(authority: FakeAuthority) -> None:
    card = provision(authority.url, authority.issue_code(), now=NOW)
    authority.refresh_enabled = False
    with pytest.raises(WalletError) as caught:
        refresh(card, now=NOW)
    assert caught.value.code is WalletErrorCode.REFRESH_UNSUPPORTED


def test_refresh_refused_with_a_code(authority: FakeAuthority) -> None:
    card = provision(authority.url, authority.issue_code(), now=NOW)
    authority.clock = lambda: NOW + 3600  # the phone's clock is an hour behind
    with pytest.raises(WalletError) as caught:
        refresh(card, now=NOW)
    assert caught.value.code is WalletErrorCode.SERVER_REFUSED
    assert caught.value.server_code == "PROOF_STALE"


def test_refresh_for_another_card_is_refused(authority: FakeAuthority) -> None:
    card = provision(authority.url, authority.issue_code(), now=NOW)
    other_card = {"card_number": "3300000000000099"}
    hostile = _answer_with(lambda k: _bundle(k, pay=other_card, id=other_card, svc=other_card))
    with hostile as client, pytest.raises(WalletError) as caught:
        refresh(card, now=NOW, client=client)
    assert caught.value.code is WalletErrorCode.BAD_SERVER_RESPONSE
