"""The JSON Schemas in schemas/json describe exactly what the encoders produce."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from schemas import Purpose, b64url_decode
from schemas._jose import inflate_capped, parse_json_object, split_compact
from schemas.credential import Credential
from support import World, credential, present

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "json"


def schema(name: str) -> dict[str, object]:
    loaded = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(loaded)
    return loaded  # type: ignore[no-any-return]


@pytest.mark.parametrize("purpose", list(Purpose))
def test_credential_payload(purpose: Purpose) -> None:
    jsonschema.validate(credential(purpose).to_payload(), schema("credential"))


def test_credential_schema_refuses_unregistered_claim() -> None:
    payload = credential(Purpose.PAY).to_payload() | {"sn": "X"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(payload, schema("credential"))


def test_credential_header_and_presentation() -> None:
    from keys import sign_credential
    from support import ISSUER_KEY

    token = sign_credential(credential(Purpose.ID), ISSUER_KEY)
    _, header, payload, _ = split_compact(token)
    jsonschema.validate(parse_json_object(header), schema("credential-header"))
    claims = parse_json_object(inflate_capped(payload, 4096))
    assert Credential.from_payload(claims) == credential(Purpose.ID)
    jsonschema.validate(present(Purpose.ID), schema("presentation"))


def test_trust_list() -> None:
    _, header, payload, _ = split_compact(World().trust_list_jwt())
    jsonschema.validate(parse_json_object(header), schema("trust-list-header"))
    jsonschema.validate(parse_json_object(payload), schema("trust-list"))


def test_status_list() -> None:
    _, header, payload, _ = split_compact(World().status_list_jwt())
    jsonschema.validate(parse_json_object(header), schema("status-list-header"))
    jsonschema.validate(parse_json_object(payload), schema("status-list"))
    assert b64url_decode(parse_json_object(payload)["status_list"]["lst"])


def test_timestamp_and_the_trust_list_that_delegates_it() -> None:
    from support import TIMESTAMP_KEYS, timestamp_jwt

    trust_list = World().trust_list_jwt(timestamp_keys=TIMESTAMP_KEYS)
    jsonschema.validate(parse_json_object(split_compact(trust_list)[2]), schema("trust-list"))
    token = timestamp_jwt(trust_list, status_lists={"1": World().status_list_jwt()})
    _, header, payload, _ = split_compact(token)
    assert parse_json_object(header) == {"alg": "Ed25519", "kid": "ts1",
                                         "typ": "fmc-timestamp+jwt"}
    jsonschema.validate(parse_json_object(payload), schema("timestamp"))
