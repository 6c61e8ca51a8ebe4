"""The console's words in English and Chinese, and the choice of language.

The officers read Chinese; many foreigners at the counter read English, so the console
switches at a click (``?lang=zh``, remembered in a cookie) and otherwise follows the
browser's Accept-Language. The words live in ``locales/<lang>.json``; every key exists
in every language (a test checks it). A language is one more file and one more entry in
``LANGUAGES`` and ``LANGUAGE_NAMES``.
"""

from __future__ import annotations

import json
from pathlib import Path

from cardsvc._countries import COUNTRIES
from cardsvc.console._country_names_zh import COUNTRY_NAMES_ZH
from schemas._accept_language import best_language

__all__ = [
    "CATALOGUE",
    "FREQUENT_COUNTRIES",
    "LANGUAGES",
    "LANGUAGE_NAMES",
    "choose_language",
    "country_name",
    "country_options",
    "error_message",
    "has_key",
    "translate",
]

LANGUAGES = ("en", "zh")
LANGUAGE_NAMES = [("en", "English"), ("zh", "中文")]
DEFAULT_LANGUAGE = "en"
# Nationalities most often seen in Yiwu's market, first in every country list.
FREQUENT_COUNTRIES = ("AFG", "DZA", "EGY", "IND", "IRN", "IRQ", "JOR", "KOR", "MAR", "NGA",
                      "PAK", "RUS", "SYR", "TUR", "UKR", "USA", "YEM")

_LOCALES = Path(__file__).resolve().parent / "locales"


def _load_catalogue() -> dict[str, dict[str, str]]:
    """Each language's ``locales/<lang>.json`` (key -> text), read once at import."""
    catalogue = {}
    for lang in LANGUAGES:
        table = json.loads((_LOCALES / f"{lang}.json").read_text(encoding="utf-8"))
        if not isinstance(table, dict) or not all(
                isinstance(key, str) and isinstance(text, str) for key, text in table.items()):
            raise ValueError(f"locales/{lang}.json is not an object of strings")
        catalogue[lang] = table
    return catalogue


CATALOGUE: dict[str, dict[str, str]] = _load_catalogue()
_EN = CATALOGUE[DEFAULT_LANGUAGE]


def choose_language(*, cookie: str | None, accept_language: str | None) -> str:
    """The remembered choice, else the browser's first supported language, else English."""
    if cookie in LANGUAGES:
        return cookie
    return best_language(accept_language, LANGUAGES) or DEFAULT_LANGUAGE


def has_key(key: str) -> bool:
    return key in _EN


def translate(lang: str, key: str, **params: object) -> str:
    """The text for ``key``; English if the language lacks it; the key itself if unknown."""
    text = CATALOGUE.get(lang, _EN).get(key) or _EN.get(key, key)
    return text.format(**params) if params else text


def error_message(lang: str, code: str) -> str:
    key = "err." + code
    return translate(lang, key if has_key(key) else "err._other")


def country_name(lang: str, alpha3: str) -> str:
    country = COUNTRIES.get(alpha3)
    if country is None:
        return alpha3
    return COUNTRY_NAMES_ZH.get(alpha3, country.name) if lang == "zh" else country.name


def country_options(lang: str, *, frequent: bool) -> list[tuple[str, str]]:
    """(code, "NGA — Nigeria") pairs: the code first, as in the passport's machine zone."""
    codes = FREQUENT_COUNTRIES if frequent else tuple(sorted(COUNTRIES))
    return [(code, f"{code} — {country_name(lang, code)}") for code in codes]
