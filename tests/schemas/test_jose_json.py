"""The strict JSON layer under every signed object (schemas._jose.parse_json_object)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas._jose import parse_json_object
from schemas.codes import Malformed

# Compact text takes the direct scanner; everything else falls back to the full decoder.
# Both must answer exactly as the strict rules say.
ACCEPTED = [
    (b'{"a":1}', {"a": 1}),
    (b' {"a":1}', {"a": 1}),
    (b'{"a":1}\n', {"a": 1}),
    (b'{ "a" : [1, {"b": null}] }', {"a": [1, {"b": None}]}),
    ('{"sn":"ÖZDEMİR 王"}'.encode(), {"sn": "ÖZDEMİR 王"}),
]
REFUSED = [
    b"",
    b" ",
    b"\xff{}",
    b'{"a":1}x',
    b'{"a":1}{}',
    b'{"a":1',
    b'{"a":1,"a":2}',
    b'{"a":{"b":1,"b":1}}',
    b'{"a":NaN}',
    b'{"a":-Infinity}',
    b"[1]",
    b'"text"',
    b"1",
    b"[" * 100_000,
]


@pytest.mark.parametrize(("unverified", "expected"), ACCEPTED)
def test_accepted(unverified: bytes, expected: dict[str, object]) -> None:
    assert parse_json_object(unverified) == expected


@pytest.mark.parametrize("unverified", REFUSED)
def test_refused_as_malformed(unverified: bytes) -> None:
    with pytest.raises(Malformed):
        parse_json_object(unverified)


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=8,
)


@given(st.dictionaries(st.text(max_size=6), _JSON_VALUES, max_size=5), st.booleans())
def test_same_objects_as_the_standard_library(document: dict[str, object], spaced: bool) -> None:
    separators = (", ", ": ") if spaced else (",", ":")
    text = json.dumps(document, separators=separators, ensure_ascii=False).encode()
    assert parse_json_object(text) == json.loads(text)
