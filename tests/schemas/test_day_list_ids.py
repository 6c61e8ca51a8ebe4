"""Day list ids (P13.3): the day they serve, within the id pattern every verifier accepts,
and when they retire. Other ids (the numbered card lists) never retire."""

from __future__ import annotations

import re

import pytest

from schemas.status_list import (
    DAY_LIST_GRACE_SECONDS,
    day_list_day,
    day_list_id,
    day_list_retired,
)

DAY = 1_795_910_400  # 2026-11-29T00:00:00Z
LIST_ID = re.compile(r"^[0-9A-Za-z_-]{1,32}$")  # schemas/credential.py, verifier/sync.py


@pytest.mark.parametrize(("number", "expected"), [
    (1, "p20261129"), (2, "p20261129-2"), (10, "p20261129-10"), (999_999, "p20261129-999999"),
])
def test_a_day_list_id_names_its_day_and_fits_everywhere(number: int, expected: str) -> None:
    list_id = day_list_id(DAY, number)
    assert list_id == expected and len(list_id) <= 16 and LIST_ID.fullmatch(list_id)
    assert day_list_day(list_id) == DAY


@pytest.mark.parametrize("list_id", [
    "1", "12", "p", "p2026112", "p202611290", "p20261129-1", "p20261129-02", "p20261129-",
    "p20261340", "P20261129", "x20261129", "p20261129-2x",
])
def test_other_ids_are_no_day_list_and_never_retire(list_id: str) -> None:
    assert day_list_day(list_id) is None
    assert not day_list_retired(list_id, DAY + 10 * 86_400)


def test_a_day_list_retires_when_the_day_and_the_grace_are_over() -> None:
    end = DAY + 86_400 + DAY_LIST_GRACE_SECONDS
    assert [day_list_retired("p20261129-2", t) for t in (DAY, end - 1, end)] == [
        False, False, True]
