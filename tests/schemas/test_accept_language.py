"""schemas._accept_language: the one Accept-Language reader (console and phone page)."""

from __future__ import annotations

import pytest

from schemas._accept_language import best_language

SUPPORTED = frozenset({"en", "zh"})


@pytest.mark.parametrize(("header", "expected"), [
    (None, None),
    ("", None),
    ("fr, de", None),
    ("zh-CN,zh;q=0.9,en;q=0.8", "zh"),
    ("en-GB", "en"),
    ("fr, en;q=0.2, zh;q=0.7", "zh"),       # weight beats order
    ("en;q=0.5, zh;q=0.5", "en"),            # a tie: the earlier one
    ("zh;q=0, en;q=0.1", "en"),              # q=0 means "not this one"
    ("zh;q=abc, en;q=0.1", "en"),            # an unreadable weight counts as 0
    ("ZH-hant", "zh"),
    (",".join(["fr"] * 20) + ",zh", None),   # only the first 20 ranges are read
])
def test_best_language(header: str | None, expected: str | None) -> None:
    assert best_language(header, SUPPORTED) == expected
