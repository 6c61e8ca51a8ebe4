"""The browser's preferred language from an ``Accept-Language`` header (RFC 9110 12.5.4),
for every page that speaks more than one language (the console, the phone page).

Example::

    best_language("zh-CN,zh;q=0.9,en;q=0.8", {"en", "zh"})   # 'zh'
    best_language("fr", {"en", "zh"})                          # None
"""

from __future__ import annotations

from collections.abc import Collection

__all__ = ["best_language"]

_MAX_RANGES = 20  # a header is the client's to choose: read only its start


def best_language(unverified_header: str | None, supported: Collection[str]) -> str | None:
    """The supported primary tag of highest weight (the earlier one on a tie), or None."""
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate((unverified_header or "").split(",")[:_MAX_RANGES]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in supported and quality > 0:
            ranked.append((-quality, position, primary))
    return min(ranked)[2] if ranked else None
