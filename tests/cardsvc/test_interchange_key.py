"""The interchange key (P10): created at init, published as ``ik`` in the root-signed
trust list and never among the credential keys; rotation keeps the old key published
(retired) and the signer follows what the national list already names."""

from __future__ import annotations

from dataclasses import replace

import pytest
from cardsvc_kit import Authority
from federation_kit import NATIONAL_FINGERPRINT, federation, federation_jwt, hangzhou, yiwu

from cardsvc.federation.state import accept_federation_list
from cardsvc.services.audit import Actor
from cardsvc.services.errors import DomainError
from cardsvc.services.interchange import interchange_signer, rotate_interchange_key
from cardsvc.services.trust import published_interchange_keys
from schemas import IssuerKey, KeyState
from verifier.trust import verify_trust_list


def _trust_list(authority: Authority):  # type: ignore[no-untyped-def]
    return verify_trust_list(authority.client.get("/v1/trust-list").text,
                             root_fingerprint=authority.root_fingerprint)


def _signer_kid(authority: Authority) -> str:
    return authority.database.transact(lambda session: interchange_signer(
        session, keyring=authority.client.app.state.context.keyring,  # type: ignore[attr-defined]
        issuer="CN-YW", now=authority.clock()).kid, readonly=True)


def _rotate(authority: Authority) -> str:
    keyring = authority.client.app.state.context.keyring  # type: ignore[attr-defined]
    return authority.database.transact(lambda session: rotate_interchange_key(
        session, keyring=keyring, kid_prefix="k", actor=Actor.cli(), now=authority.clock()))


def _hold_entry_with(authority: Authority, *keys: IssuerKey, version: int = 1) -> None:
    jwt = federation_jwt(federation(replace(yiwu(), interchange_keys=keys), hangzhou(),
                                    version=version))
    authority.database.transact(lambda session: accept_federation_list(
        session, unverified_jwt=jwt, pinned_root=NATIONAL_FINGERPRINT,
        now=authority.clock.epoch))


def test_init_creates_one_published_apart_from_the_credential_keys(
        authority: Authority) -> None:
    trust = _trust_list(authority)
    assert [key.kid for key in trust.interchange_keys] == ["ki1"]
    assert "ki1" not in trust.keys_by_kid
    assert {key.public_key for key in trust.keys}.isdisjoint(
        {key.public_key for key in trust.interchange_keys})
    assert _signer_kid(authority) == "ki1"  # no federation held: the newest usable


def test_rotation_keeps_the_old_key_until_the_national_list_names_the_new(
        authority: Authority) -> None:
    before = _trust_list(authority).version
    assert _rotate(authority) == "ki2"
    trust = _trust_list(authority)
    assert trust.version > before
    assert [(k.kid, k.state) for k in trust.interchange_keys] == [
        ("ki1", KeyState.RETIRED), ("ki2", KeyState.ACTIVE)]
    keys = authority.database.transact(lambda session: published_interchange_keys(
        session, now=authority.clock.epoch), readonly=True)
    _hold_entry_with(authority, keys[0])  # the national list knows only ki1 yet
    assert _signer_kid(authority) == "ki1"
    _hold_entry_with(authority, *keys, version=2)  # national update-issuer + publish: ki2 signs
    assert _signer_kid(authority) == "ki2"


def test_a_city_the_national_list_gives_no_interchange_key_cannot_sign(
        authority: Authority) -> None:
    _hold_entry_with(authority)
    with pytest.raises(DomainError) as refused:
        _signer_kid(authority)
    assert refused.value.code == "INTERAUTH_NO_KEY"
