"""The federation list format: a round trip, the JSON Schema, and every malformed field."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from federation_kit import federation, federation_jwt, hangzhou, yiwu

from schemas._jose import parse_json_object, split_compact
from schemas.codes import Malformed
from schemas.federation import MAX_ISSUERS, FederationClaims, SequenceBlock

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "json"
Payload = dict[str, Any]


def _schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(loaded)
    return loaded


def test_round_trip() -> None:
    claims = federation()
    assert FederationClaims.from_payload(claims.to_payload()) == claims
    assert claims.issuers_by_code["CN-HZ"].owns_sequence(150)
    assert not claims.issuers_by_code["CN-YW"].owns_sequence(150)


def test_json_schemas_describe_what_is_signed() -> None:
    _, header, payload, _ = split_compact(federation_jwt())
    jsonschema.validate(parse_json_object(header), _schema("federation-header"))
    jsonschema.validate(parse_json_object(payload), _schema("federation"))


def _entry(mutate: Callable[[Payload], object]) -> Callable[[Payload], object]:
    """Apply ``mutate`` to the first issuer entry."""
    return lambda payload: mutate(payload["issuers"][0])


def _set(member: str, value: object) -> Callable[[Payload], object]:
    return lambda payload: payload.__setitem__(member, value)


def _drop(member: str) -> Callable[[Payload], object]:
    return lambda payload: payload.pop(member)


def _many_issuers(payload: Payload) -> None:
    payload["issuers"] = [copy.deepcopy(payload["issuers"][0]) for _ in range(MAX_ISSUERS + 1)]


def _second_entry_like_first(member: str) -> Callable[[Payload], object]:
    return lambda payload: payload["issuers"][1].__setitem__(
        member, copy.deepcopy(payload["issuers"][0][member]))


MALFORMED: list[tuple[str, Callable[[Payload], object]]] = [
    ("iss missing", _drop("iss")),
    ("iss empty", _set("iss", "")),
    ("iss with a hidden character", _set("iss", "CN\u202e")),
    ("ver a string", _set("ver", "2")),
    ("ver a boolean", _set("ver", True)),
    ("ver negative", _set("ver", -1)),
    ("iat a float", _set("iat", 1.5)),
    ("exp not after iat", lambda p: p.__setitem__("exp", p["iat"])),
    ("issuers missing", _drop("issuers")),
    ("issuers empty", _set("issuers", [])),
    ("issuers not a list", _set("issuers", {"CN-YW": {}})),
    ("too many issuers", _many_issuers),
    ("entry not an object", _set("issuers", ["CN-YW"])),
    ("entry without code", _entry(_drop("code"))),
    ("code lower case", _entry(_set("code", "cn-yw"))),
    ("code without a city", _entry(_set("code", "CN"))),
    ("code too long", _entry(_set("code", "CN-ABCDEFGHI"))),
    ("code with a space", _entry(_set("code", "CN-Y W"))),
    ("duplicate code", _second_entry_like_first("code")),
    ("name_en empty", _entry(_set("name_en", ""))),
    ("name_en padded", _entry(_set("name_en", " Yiwu"))),
    ("name_en too long", _entry(_set("name_en", "Y" * 65))),
    ("name_en with bidi override", _entry(_set("name_en", "Yi\u202ewu"))),
    ("name_zh not a string", _entry(_set("name_zh", 7))),
    ("name_zh too long", _entry(_set("name_zh", "义" * 33))),
    ("unknown state", _entry(_set("state", "paused"))),
    ("root missing", _entry(_drop("root"))),
    ("root not OKP", _entry(lambda e: e["root"].__setitem__("kty", "EC"))),
    ("root short", _entry(lambda e: e["root"].__setitem__("x", "AAAA"))),
    ("root shared by two cities", _second_entry_like_first("root")),
    ("keys empty", _entry(_set("keys", []))),
    ("keys too many", _entry(lambda e: e.__setitem__("keys", [
        {**e["keys"][0], "kid": f"k{n}"} for n in range(65)]))),
    ("key of another curve", _entry(lambda e: e["keys"][0].__setitem__("crv", "X25519"))),
    ("key of unknown state", _entry(lambda e: e["keys"][0].__setitem__("state", "spare"))),
    ("duplicate kid within an issuer", _entry(lambda e: e["keys"].append(e["keys"][0]))),
    ("kid used by two issuers", lambda p: p["issuers"][1]["keys"][0].__setitem__("kid", "k1")),
    ("status_url ftp", _entry(_set("status_url", "ftp://yw.example.cn/s"))),
    ("status_url javascript", _entry(_set("status_url", "javascript:alert(1)"))),
    ("status_url without host", _entry(_set("status_url", "https:///s"))),
    ("status_url with credentials", _entry(_set("status_url", "https://u:p@yw.example.cn"))),
    ("status_url with a query", _entry(_set("status_url", "https://yw.example.cn/s?x=1"))),
    ("status_url with a space", _entry(_set("status_url", "https://yw.example.cn/a b"))),
    ("status_url non-ASCII", _entry(_set("status_url", "https://义乌.cn/s"))),
    ("status_url too long", _entry(_set("status_url", "https://yw.cn/" + "a" * 600))),
    ("api_url missing", _entry(_drop("api_url"))),
    ("api_url bad port", _entry(_set("api_url", "https://yw.example.cn:99999"))),
    ("seq empty", _entry(_set("seq", []))),
    ("seq block reversed", _entry(_set("seq", [[100, 1]]))),
    ("seq block from zero", _entry(_set("seq", [[0, 10]]))),
    ("seq block past 999", _entry(_set("seq", [[900, 1000]]))),
    ("seq block of three", _entry(_set("seq", [[1, 2, 3]]))),
    ("seq block of strings", _entry(_set("seq", [["1", "9"]]))),
    ("seq blocks too many", _entry(_set("seq", [[n, n] for n in range(1, 10)]))),
    ("seq blocks overlap within an issuer", _entry(_set("seq", [[1, 50], [50, 60]]))),
    ("seq blocks overlap between issuers", _entry(_set("seq", [[150, 160]]))),
    ("tl_ver negative", _entry(_set("tl_ver", -1))),
    ("tl_ver missing", _entry(_drop("tl_ver"))),
]


@pytest.mark.parametrize(("name", "mutate"), MALFORMED, ids=[name for name, _ in MALFORMED])
def test_malformed_field_is_refused(name: str, mutate: Callable[[Payload], object]) -> None:
    payload = federation().to_payload()
    mutate(payload)
    with pytest.raises(Malformed):
        FederationClaims.from_payload(payload)


def test_blocks_may_touch_but_not_share_a_number() -> None:
    touching = federation(yiwu(sequence_blocks=(SequenceBlock(1, 100),)),
                          hangzhou(sequence_blocks=(SequenceBlock(101, 200),)))
    assert FederationClaims.from_payload(touching.to_payload()) == touching
    assert SequenceBlock(1, 100).overlaps(SequenceBlock(100, 200))
