"""IETF Token Status List vectors and the bit packing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import StatusList
from schemas.codes import Malformed, ResultCode


def _vectors(vectors: Path) -> list[dict]:
    return json.loads((vectors / "status-list-json.json").read_text())["vectors"]  # type: ignore[no-any-return]


def _expected(vector: dict) -> dict[int, int]:
    if "statuses" in vector:
        return dict(enumerate(vector["statuses"]))
    return {int(i): v for i, v in vector["nonzero"].items()}


def test_vectors_decode_to_listed_statuses(public_vectors: Path) -> None:
    vectors = _vectors(public_vectors)
    assert len(vectors) >= 3
    for vector in vectors:
        statuses = StatusList.decode_lst(vector["lst"], vector["bits"])
        assert statuses.size >= vector["size"]
        expected = _expected(vector)
        if "statuses" in vector:
            assert [statuses.get(i) for i in range(vector["size"])] == vector["statuses"]
        else:
            nonzero = {i: statuses.get(i) for i in range(vector["size"]) if statuses.get(i)}
            assert nonzero == expected


def test_vectors_reencode_to_lists_that_decode_the_same(public_vectors: Path) -> None:
    for vector in _vectors(public_vectors):
        original = StatusList.decode_lst(vector["lst"], vector["bits"])
        rebuilt = StatusList.empty(vector["size"], vector["bits"])
        for index, status in _expected(vector).items():
            rebuilt.set(index, status)
        again = StatusList.decode_lst(rebuilt.encode_lst(), vector["bits"])
        assert again.raw == original.raw


@given(st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 3)), max_size=200))
def test_set_get_roundtrip_two_bits(changes: list[tuple[int, int]]) -> None:
    statuses = StatusList.empty(4096, bits=2)
    expected: dict[int, int] = {}
    for index, status in changes:
        statuses.set(index, status)
        expected[index] = status
    decoded = StatusList.decode_lst(statuses.encode_lst(), bits=2)
    for index in range(4096):
        assert decoded.get(index) == expected.get(index, 0)


def test_lsb_first_layout() -> None:
    statuses = StatusList.empty(8, bits=2)
    statuses.set(0, 1)
    statuses.set(3, 2)
    assert statuses.raw[0] == 0b10_00_00_01


@pytest.mark.parametrize("bad", ["", "!!!", "eNo", "AAAA"])
def test_garbage_lst_is_malformed(bad: str) -> None:
    with pytest.raises(Malformed) as caught:
        StatusList.decode_lst(bad, bits=2)
    assert caught.value.code is ResultCode.MALFORMED


def test_zlib_bomb_capped() -> None:
    import zlib

    from schemas import b64url_encode

    bomb = b64url_encode(zlib.compress(bytes(64 * 1024 * 1024), 9))
    with pytest.raises(Malformed):
        StatusList.decode_lst(bomb, bits=2)
