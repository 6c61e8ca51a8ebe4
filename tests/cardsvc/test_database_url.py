"""Database URLs: plain ``postgresql://`` goes to psycopg 3, and libpq's multi-host form
(a primary and its standby) is written as SQLAlchemy reads it, with nothing else changed."""

from __future__ import annotations

import pytest
from sqlalchemy import make_url

from cardsvc.db import normalize_url

CASES = [
    ("postgresql://cardsvc@db:5432/cardsvc", "postgresql+psycopg://cardsvc@db:5432/cardsvc"),
    ("postgres://cardsvc@db/cardsvc", "postgresql+psycopg://cardsvc@db/cardsvc"),
    ("postgresql://cardsvc@db1:5432,db2:5433/cardsvc?target_session_attrs=read-write",
     "postgresql+psycopg://cardsvc@/cardsvc?host=db1:5432&host=db2:5433"
     "&target_session_attrs=read-write"),
    ("postgresql+psycopg://u:p%40ss@db1,db2/cardsvc",
     "postgresql+psycopg://u:p%40ss@/cardsvc?host=db1&host=db2"),
    ("postgresql+psycopg://u@/cardsvc?host=db1:1&host=db2:2&target_session_attrs=read-write",
     "postgresql+psycopg://u@/cardsvc?host=db1:1&host=db2:2&target_session_attrs=read-write"),
    ("sqlite:////var/lib/cardsvc/a,b.db", "sqlite:////var/lib/cardsvc/a,b.db"),
]


@pytest.mark.parametrize(("given", "expected"), CASES)
def test_normalize_url(given: str, expected: str) -> None:
    assert normalize_url(given) == expected


def test_multi_host_url_reaches_psycopg_as_a_host_list() -> None:
    url = make_url(normalize_url("postgresql://u@db1:5432,db2:5433/cardsvc"
                                 "?target_session_attrs=read-write"))
    assert url.query["host"] == ("db1:5432", "db2:5433")
    assert url.database == "cardsvc"
