"""The receiving side of signed requests between authorities over the app: the
dependency checks against the held federation list, replays are refused (401
problem+json, nothing changes), an officer's bearer token is no substitute."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from cardsvc_kit import Authority
from federation_kit import NATIONAL_FINGERPRINT, federation_jwt
from interauth_kit import HANGZHOU_IK, YW_API, two_cities
from sqlalchemy import func, select

from cardsvc.federation.interauth import (
    MAX_ANSWER_BYTES,
    InterauthAnswerTooLarge,
    InterauthClient,
    InterauthReplay,
    remember_interauth,
    sign_interauth_request,
    verify_interauth_request,
)
from cardsvc.federation.state import accept_federation_list
from cardsvc.models import InterauthSeen
from schemas.federation import IssuerState

PING = "/v1/interauth/ping"


def _hold(authority: Authority, **states: IssuerState) -> None:
    jwt = federation_jwt(two_cities(**states))
    authority.database.transact(lambda session: accept_federation_list(
        session, unverified_jwt=jwt, pinned_root=NATIONAL_FINGERPRINT,
        now=authority.clock.epoch))


def _token(authority: Authority, *, body: bytes = b"", path: str = PING,
           jti: str | None = None) -> str:
    return sign_interauth_request(signer=HANGZHOU_IK, caller="CN-HZ", callee="CN-YW",
                                  method="POST", url=YW_API + path, body=body, officer_id=3,
                                  reason="test", now=authority.clock.epoch, jti=jti)


def _post(authority: Authority, token: str, body: bytes = b"") -> httpx.Response:
    return authority.client.post(PING, content=body,
                                 headers={"Authorization": f"FMC-Interauth {token}"})


def test_a_signed_request_from_a_listed_city_is_answered(authority: Authority) -> None:
    _hold(authority)
    answer = _post(authority, _token(authority))
    assert answer.status_code == 200, answer.text
    assert answer.json()["caller"] == "CN-HZ" and answer.json()["officer"] == 3


def test_a_replayed_request_is_refused_and_counted_once(authority: Authority) -> None:
    _hold(authority)
    token = _token(authority)
    assert _post(authority, token).status_code == 200
    again = _post(authority, token)
    assert again.status_code == 401
    assert again.headers["content-type"].startswith("application/problem+json")
    assert again.json()["code"] == "INTERAUTH_REPLAY"
    seen = authority.database.transact(
        lambda session: session.scalar(select(func.count()).select_from(InterauthSeen)))
    assert seen == 1


@pytest.mark.parametrize(("headers", "code", "status"), [
    ({}, "INTERAUTH_MISSING", 401),
    ({"Authorization": "Bearer abc"}, "INTERAUTH_MISSING", 401),
    ({"Authorization": "FMC-Interauth x.y.z"}, "INTERAUTH_MALFORMED", 401),
])
def test_no_or_a_wrong_authorization_is_refused(
        authority: Authority, headers: dict[str, str], code: str, status: int) -> None:
    _hold(authority)
    answer = authority.client.post(PING, headers=headers)
    assert (answer.status_code, answer.json()["code"]) == (status, code)


def test_an_officer_token_is_no_interauth_request(authority: Authority) -> None:
    _hold(authority)
    answer = authority.client.post(PING, headers=authority.admin)
    assert (answer.status_code, answer.json()["code"]) == (401, "INTERAUTH_MISSING")


def test_without_a_federation_the_routes_are_unavailable(authority: Authority) -> None:
    answer = _post(authority, _token(authority))
    assert (answer.status_code, answer.json()["code"]) == (503, "INTERAUTH_NOT_FEDERATED")


def test_a_suspended_caller_city_is_refused_at_the_next_sync(authority: Authority) -> None:
    _hold(authority, hangzhou_state=IssuerState.SUSPENDED)
    answer = _post(authority, _token(authority))
    assert (answer.status_code, answer.json()["code"]) == (403, "INTERAUTH_CALLER_SUSPENDED")


def test_the_body_is_bound(authority: Authority) -> None:
    _hold(authority)
    answer = _post(authority, _token(authority, body=b'{"a":1}'), body=b'{"a":2}')
    assert (answer.status_code, answer.json()["code"]) == (401, "INTERAUTH_BODY_MISMATCH")


def test_remember_refuses_the_same_jti_from_the_same_city(authority: Authority) -> None:
    token = _token(authority, jti="fixed")
    claims = verify_interauth_request(token, federation=two_cities(), receiver="CN-YW",
                                      method="POST", url=YW_API + PING, body=b"",
                                      now=authority.clock.epoch)
    authority.database.transact(lambda session: remember_interauth(session, claims))
    with pytest.raises(InterauthReplay):
        authority.database.transact(lambda session: remember_interauth(session, claims))


def test_the_client_signs_what_the_receiver_checks(authority: Authority) -> None:
    """The client over the app's test client (an httpx.Client that serves any host)."""
    _hold(authority)
    client = InterauthClient(authority.client, signer=HANGZHOU_IK, federation=two_cities(),
                             caller="CN-HZ", clock=lambda: authority.clock.epoch)
    answer = client.post("CN-YW", PING, {"hello": "yiwu"}, reason="link check",
                         officer_id=9)
    assert answer.status_code == 200, answer.text
    assert answer.json()["officer"] == 9


@pytest.mark.parametrize(("case", "answer"), [
    ("an endless answer", lambda: httpx.Response(
        200, stream=httpx.ByteStream(b"{" * (MAX_ANSWER_BYTES + 1)))),
    ("an answer announcing a small length but sending more", lambda: httpx.Response(
        200, headers={"Content-Length": "2"},
        stream=httpx.ByteStream(b"x" * (MAX_ANSWER_BYTES + 1)))),
])
def test_another_citys_answer_is_read_to_a_cap(case: str, answer: Any) -> None:
    """A federation member is authenticated, not trusted with this process's memory: an
    oversized answer is a transport failure every caller already retries or reports."""
    http = httpx.Client(transport=httpx.MockTransport(lambda request: answer()))
    client = InterauthClient(http, signer=HANGZHOU_IK, federation=two_cities(),
                             caller="CN-HZ", clock=lambda: 1_800_000_000)
    with pytest.raises(httpx.HTTPError) as refused:
        client.post("CN-YW", PING, {}, reason="link check")
    assert isinstance(refused.value, InterauthAnswerTooLarge), case


def test_a_small_answer_reads_as_before() -> None:
    http = httpx.Client(transport=httpx.MockTransport(
        lambda request: httpx.Response(200, json={"ok": True})))
    client = InterauthClient(http, signer=HANGZHOU_IK, federation=two_cities(),
                             caller="CN-HZ", clock=lambda: 1_800_000_000)
    answer = client.post("CN-YW", PING, {}, reason="link check")
    assert answer.json() == {"ok": True}
    assert "interauth_jti" in answer.request.extensions
