"""The authority's held federation list (P10, contract 3): accept, refuse, serve, sync.

Every refusal (another root, rollback, fork, freeze, garbage, a forged signature) answers
with the verifier's code and changes nothing; the identical list again is harmless.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import httpx
import pytest
from cardsvc_kit import Authority
from federation_kit import (
    NATIONAL_FINGERPRINT,
    OTHER_NATIONAL_ROOT,
    federation,
    federation_jwt,
    yiwu,
)
from sqlalchemy import select, update

from cardsvc.federation import (
    accept_federation_list,
    held_federation,
    held_federation_jwt,
    own_entry,
    own_sequence_blocks,
)
from cardsvc.federation.fetch import sync_federation
from cardsvc.models import AuditEntry, FederationState
from cardsvc.services.audit import verify_chain
from cardsvc.services.errors import DomainError
from keys import jwk_thumbprint, public_jwk
from schemas import b64url_encode
from schemas.federation import SequenceBlock
from support import DAY

OTHER_FINGERPRINT = jwk_thumbprint(public_jwk(OTHER_NATIONAL_ROOT.public_key))


def _accept(authority: Authority, jwt: str, *, root: str = NATIONAL_FINGERPRINT,
            now: int | None = None) -> None:
    at = authority.clock.epoch if now is None else now
    authority.database.transact(lambda session: accept_federation_list(
        session, unverified_jwt=jwt, pinned_root=root, now=at))


def _held(authority: Authority) -> str | None:
    return authority.database.transact(held_federation_jwt, readonly=True)


def _alg_none(jwt: str) -> str:
    header = b64url_encode(b'{"alg":"none","typ":"fmc-federation+jwt"}')
    return f"{header}.{jwt.split('.')[1]}."


def _forged(jwt: str) -> str:
    head, body, signature = jwt.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    return f"{head}.{body}.{flipped}"


def test_without_a_federation_nothing_is_held_and_the_route_says_so(
        authority: Authority) -> None:
    assert authority.database.transact(held_federation, readonly=True) is None
    assert _held(authority) is None
    assert authority.database.transact(
        lambda session: own_sequence_blocks(session, issuer="CN-YW"), readonly=True) is None
    answer = authority.client.get("/v1/federation-list")
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["code"] == "FEDERATION_NOT_CONFIGURED"


def test_an_accepted_list_is_held_and_served(authority: Authority) -> None:
    jwt = federation_jwt()
    _accept(authority, jwt)
    _accept(authority, jwt)  # the identical list again: harmless
    assert _held(authority) == jwt
    claims = authority.database.transact(held_federation, readonly=True)
    assert claims is not None and claims.version == 1
    entry = authority.database.transact(
        lambda session: own_entry(session, settings=authority.settings), readonly=True)
    assert entry is not None and entry.code == "CN-YW"
    assert authority.database.transact(
        lambda session: own_sequence_blocks(session, issuer="CN-YW"),
        readonly=True) == (SequenceBlock(1, 100),)
    assert authority.database.transact(
        lambda session: own_sequence_blocks(session, issuer="CN-SX"), readonly=True) == ()
    answer = authority.client.get("/v1/federation-list")
    assert answer.status_code == 200 and answer.text == jwt
    assert answer.headers["content-type"].startswith("application/jwt")
    again = authority.client.get("/v1/federation-list",
                                 headers={"If-None-Match": answer.headers["etag"]})
    assert again.status_code == 304

    newer = federation_jwt(federation(version=2))
    _accept(authority, newer)
    assert _held(authority) == newer


_HELD = federation(version=5)


@pytest.mark.parametrize(("unverified_jwt", "root", "code"), [
    (federation_jwt(federation(version=6), OTHER_NATIONAL_ROOT), NATIONAL_FINGERPRINT,
     "UNKNOWN_KEY"),  # signed by another national root
    (federation_jwt(federation(version=4)), NATIONAL_FINGERPRINT, "TRUST_LIST_ROLLBACK"),
    (federation_jwt(replace(_HELD, issuers=(yiwu(),))), NATIONAL_FINGERPRINT,
     "TRUST_LIST_ROLLBACK"),  # a fork: same version, other contents
    (federation_jwt(federation(version=6, issued_at=1_700_000_000,
                               expires_at=1_700_000_000 + DAY)), NATIONAL_FINGERPRINT,
     "TRUST_LIST_STALE"),  # a freeze: an expired list
    ("<html>not a list</html>", NATIONAL_FINGERPRINT, "MALFORMED"),
    ("", NATIONAL_FINGERPRINT, "MALFORMED"),
    (_alg_none(federation_jwt(federation(version=6))), NATIONAL_FINGERPRINT,
     "ALGORITHM_NOT_ALLOWED"),
    (_forged(federation_jwt(federation(version=6))), NATIONAL_FINGERPRINT, "BAD_SIGNATURE"),
    (federation_jwt(federation(version=6), OTHER_NATIONAL_ROOT), OTHER_FINGERPRINT,
     "FEDERATION_ROOT_MISMATCH"),  # the held list is under another root
], ids=["other root", "rollback", "fork", "stale", "garbage", "empty", "alg none",
        "bad signature", "pinned root changed"])
def test_a_refused_list_changes_nothing(
    authority: Authority, unverified_jwt: str, root: str, code: str
) -> None:
    held = federation_jwt(_HELD)
    _accept(authority, held)
    with pytest.raises(DomainError) as refused:
        _accept(authority, unverified_jwt, root=root)
    assert refused.value.code == code
    assert _held(authority) == held


def test_a_row_edited_behind_our_back_is_not_trusted(authority: Authority) -> None:
    _accept(authority, federation_jwt())
    forged = _forged(federation_jwt(federation(version=9)))
    authority.database.transact(lambda session: session.execute(
        update(FederationState).values(signed_jwt=forged)))
    with pytest.raises(DomainError) as refused:
        authority.database.transact(held_federation, readonly=True)
    assert refused.value.code == "FEDERATION_STATE_INVALID"


def _transport(answers: dict[str, Callable[[], httpx.Response]]) -> httpx.Client:
    def handle(request: httpx.Request) -> httpx.Response:
        answer = answers.get(str(request.url))
        if answer is None:
            raise httpx.ConnectError("refused", request=request)
        return answer()

    return httpx.Client(transport=httpx.MockTransport(handle))


def test_sync_tries_each_url_in_order(authority: Authority) -> None:
    good, stale_mirror = federation_jwt(federation(version=3)), federation_jwt()
    settings = authority.settings.model_copy(update={
        "federation_root": NATIONAL_FINGERPRINT,
        "federation_url": "http://down.example/fl, http://national.example/fl,"
                          "http://old.example/fl"})
    answers = {"http://old.example/fl": lambda: httpx.Response(200, text=stale_mirror),
               "http://national.example/fl": lambda: httpx.Response(200, text=good)}
    with _transport(answers) as http:
        claims = sync_federation(authority.database, settings=settings, http=http,
                                 now=authority.clock.epoch)
        assert claims.version == 3 and _held(authority) == good
        # Now the mirror is behind the held list: its rollback is the answer when nothing
        # else is reachable, and the held copy stays.
        with pytest.raises(DomainError) as refused:
            sync_federation(authority.database, settings=settings, http=http,
                            now=authority.clock.epoch, urls=("http://down.example/fl",
                                                             "http://old.example/fl"))
        assert refused.value.code == "TRUST_LIST_ROLLBACK"
        with pytest.raises(DomainError) as refused:
            sync_federation(authority.database, settings=settings, http=http,
                            now=authority.clock.epoch, urls=("http://down.example/fl",))
        assert refused.value.code == "FEDERATION_UNREACHABLE"
    assert _held(authority) == good


def test_sync_refuses_without_settings_and_oversized_answers(authority: Authority) -> None:
    with _transport({}) as http:
        with pytest.raises(DomainError) as refused:
            sync_federation(authority.database, settings=authority.settings, http=http,
                            now=authority.clock.epoch)
        assert refused.value.code == "FEDERATION_NOT_CONFIGURED"
    settings = authority.settings.model_copy(update={
        "federation_root": NATIONAL_FINGERPRINT, "federation_url": "http://big.example/fl"})
    with _transport({"http://big.example/fl": lambda: httpx.Response(
            200, content=b"a" * (600 * 1024))}) as http:
        with pytest.raises(DomainError) as refused:
            sync_federation(authority.database, settings=settings, http=http,
                            now=authority.clock.epoch)
        assert refused.value.code == "FEDERATION_UNREACHABLE"
    assert _held(authority) is None




def test_each_new_version_is_audited_once(authority: Authority) -> None:
    def accepted() -> list[tuple[str, str]]:
        return authority.database.transact(lambda session: [
            (entry.subject, entry.actor) for entry in session.scalars(
                select(AuditEntry).where(AuditEntry.action == "federation.list_accepted")
                .order_by(AuditEntry.seq))], readonly=True)

    _accept(authority, federation_jwt())
    _accept(authority, federation_jwt())
    with pytest.raises(DomainError):
        _accept(authority, federation_jwt(federation(version=0)))
    _accept(authority, federation_jwt(federation(version=2)))
    assert accepted() == [("federation:1", "federation"), ("federation:2", "federation")]
    assert authority.database.transact(verify_chain, readonly=True).ok
