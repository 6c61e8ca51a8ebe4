"""No hard-coded city (P10): an authority set up as Hangzhou (``CARDSVC_ISSUER=CN-HZ``,
``CARDSVC_KID_PREFIX=h``) names CN-HZ and signs with h1 in everything it publishes, and
a second city initialises beside the first on the same machine (own data dir, own
PostgreSQL database)."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cardsvc_kit import INIT_TIME, provision_request
from fastapi.testclient import TestClient
from kit.clock import Clock
from kit.postgres import pg_create, pg_drop, pg_url, unique_name
from payments_kit import PayCard, bearer
from pydantic import ValidationError
from typer.testing import CliRunner

from cardsvc.api import create_app
from cardsvc.cli import app as cli_app
from cardsvc.db import Database
from cardsvc.services.audit import Actor
from cardsvc.services.bootstrap import initialise, open_keyring
from cardsvc.services.trust import issuer_keys, rotate_keys
from cardsvc.settings import Settings, get_settings
from keys import Ed25519Signer
from schemas import b64url_decode
from schemas._jose import inflate_capped
from verifier import TrustedSet
from verifier.receipts import verify_receipt


def _parts(jwt: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header_text, payload_text, _ = jwt.split(".")
    header = json.loads(b64url_decode(header_text))
    payload = b64url_decode(payload_text)
    if header.get("zip") == "DEF":
        payload = inflate_capped(payload, 64 * 1024)
    return header, json.loads(payload)


@pytest.fixture
def hangzhou(tmp_path: Path) -> Iterator[tuple[Settings, TestClient, str, Clock]]:
    settings = get_settings(data_dir=tmp_path / "hz", issuer="CN-HZ", kid_prefix="h",
                            key_passphrase="test-pass", public_url="http://testserver")
    result = initialise(settings, now=INIT_TIME)
    assert result.admin_token is not None
    database = Database.from_settings(settings)
    clock = Clock()
    try:
        with TestClient(create_app(settings, database=database, clock=clock)) as client:
            yield settings, client, result.admin_token, clock
    finally:
        database.dispose()


def test_hangzhou_names_itself_everywhere(
    hangzhou: tuple[Settings, TestClient, str, Clock]
) -> None:
    settings, client, admin_token, clock = hangzhou
    admin = bearer(admin_token)
    trust_jwt = client.get("/v1/trust-list").text
    _, trust = _parts(trust_jwt)
    assert trust["iss"] == "CN-HZ"
    assert [key["kid"] for key in trust["keys"]] == ["h1", "h2"]

    person = client.post("/v1/persons", headers=admin, json={
        "surname": "OKAFOR", "given_names": "Chinedu", "nationality": "NGA",
        "birth_date": "1985-03-02", "sex": "M", "confirm_new": True,
        "passport": {"number": "A1234567", "country": "NGA", "expires": "2031-01-01"}})
    assert person.status_code == 201, person.text
    issued = client.post("/v1/cards", headers=admin, json={
        "foreigner_code": person.json()["foreigner_code"],
        "entitlements": ["healthcare", "payment"], "valid_until": "2030-12-31"})
    assert issued.status_code == 201, issued.text
    device = Ed25519Signer(bytes(range(40, 72)), kid="device")
    bundle = client.post("/v1/provision",
                         json=provision_request(issued.json()["provisioning_code"], device))
    assert bundle.status_code == 200, bundle.text
    for credential in bundle.json()["credentials"].values():
        header, claims = _parts(credential)
        assert (header["kid"], claims["iss"]) == ("h1", "CN-HZ")

    lists = client.get("/v1/status-lists").json()["status_lists"]
    assert lists
    for entry in lists:
        header, _ = _parts(client.get(f"/v1/status-lists/{entry['id']}").text)
        assert header["kid"] == "h1"  # status lists carry no iss: the key names the city
    _, stamp = _parts(client.get("/v1/timestamp").text)
    assert stamp["iss"] == "CN-HZ"

    # A receipt: a merchant's till charges the card.
    card = PayCard(bundle.json()["card_number"], device, bundle.json()["credentials"]["pay"],
                   bundle.json())
    topup = client.post(f"/v1/accounts/{card.card_number}/topups", headers=admin,
                        json={"amount_fen": 5_000, "idempotency_key": secrets.token_hex(8)})
    assert topup.status_code == 201, topup.text
    merchant = client.post("/v1/merchants", headers=admin, json={"name": "West Lake Tea"})
    assert merchant.status_code == 201, merchant.text
    till = client.post(f"/v1/merchants/{merchant.json()['merchant_id']}/terminals",
                       headers=admin, json={"name": "till", "offline_floor_fen": 20_000})
    assert till.status_code == 201, till.text
    charge = client.post("/v1/payments", headers=bearer(till.json()["token"]), json={
        "pay_code": card.pay_code(clock.epoch), "amount_fen": 1_250,
        "idempotency_key": secrets.token_hex(8)})
    assert charge.status_code == 201, charge.text
    receipt_jwt = charge.json()["receipt"]
    assert _parts(receipt_jwt)[0]["kid"] == "h1"
    trusted = TrustedSet(root_fingerprint=_fingerprint(settings))
    receipt = verify_receipt(receipt_jwt, trust_list=trusted.update_trust_list(
        trust_jwt, now=clock.epoch))
    assert receipt.issuer == "CN-HZ"

    # Rotation keeps the prefix and the numbering.
    database = Database.from_settings(settings)
    try:
        keyring = open_keyring(settings)
        database.transact(lambda session: rotate_keys(
            session, keyring=keyring, kid_prefix=settings.kid_prefix, actor=Actor.cli(),
            now=clock()))
        kids = database.transact(lambda session: [k.kid for k in issuer_keys(session)],
                                 readonly=True)
    finally:
        database.dispose()
    assert kids == ["h1", "h2", "h3"]


def _fingerprint(settings: Settings) -> str:
    database = Database.from_settings(settings)
    try:
        from cardsvc.services.trust import root_fingerprint
        return database.transact(root_fingerprint, readonly=True)
    finally:
        database.dispose()


@pytest.mark.parametrize(("field", "value"), [
    ("kid_prefix", ""), ("kid_prefix", "K"), ("kid_prefix", "abcd"), ("kid_prefix", "h1"),
    ("kid_prefix", "ts"), ("kid_prefix", "hi"), ("issuer", "Yiwu"), ("issuer", "cn-yw"),
    ("federation_root", "not-a-fingerprint"),
])
def test_bad_city_settings_are_refused(field: str, value: str) -> None:
    with pytest.raises(ValidationError):
        get_settings(**{field: value})


@pytest.mark.postgres
def test_two_cities_initialise_side_by_side(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cardsvc init` twice on one machine: separate data dirs and PostgreSQL databases,
    each city with its own code, kids and root."""
    for name in ("CARDSVC_DATA_DIR", "CARDSVC_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CARDSVC_KEY_PASSPHRASE", "two cities")
    names = [unique_name("city_yw"), unique_name("city_hz")]
    for name in names:
        pg_create(name)
    try:
        fingerprints = []
        for (code, prefix), name in zip((("CN-YW", "k"), ("CN-HZ", "h")), names, strict=True):
            monkeypatch.setenv("CARDSVC_ISSUER", code)
            monkeypatch.setenv("CARDSVC_KID_PREFIX", prefix)
            monkeypatch.setenv("CARDSVC_DATABASE_URL", pg_url(name))
            result = CliRunner().invoke(cli_app, ["init", "--data-dir", str(tmp_path / code)])
            assert result.exit_code == 0, result.output
            found = re.search(r"root fingerprint:\s+(\S+)", result.output)
            assert found is not None
            fingerprints.append(found.group(1))
            keys = CliRunner().invoke(cli_app, ["keys", "list", "--data-dir",
                                                str(tmp_path / code)])
            assert keys.exit_code == 0, keys.output
            assert re.findall(r"^(\w+)\s+(?:active|next)", keys.output, re.M) == [
                f"{prefix}1", f"{prefix}2"]
        assert fingerprints[0] != fingerprints[1]
    finally:
        for name in names:
            pg_drop(name)
