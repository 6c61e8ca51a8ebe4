"""The console's parts on their own: the catalogue, language choice, session cookies."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cardsvc._countries import COUNTRIES
from cardsvc.console import _forms, _i18n
from cardsvc.console._auth import SessionKeys, load_session_key, token_binding
from cardsvc.console._country_names_zh import COUNTRY_NAMES_ZH
from schemas import Entitlement

CONSOLE = Path(_i18n.__file__).resolve().parent
KEY_IN_TEMPLATE = re.compile(r"""\bt\(\s*'([a-z_.]+)'\s*[,)]""")
PREFIX_IN_TEMPLATE = re.compile(r"""\bt\(\s*'([a-z_.]+\.)'\s*[~+]""")


def test_every_locale_file_is_a_language_with_the_same_keys_and_placeholders() -> None:
    files = {path.stem: json.loads(path.read_text(encoding="utf-8"))
             for path in (CONSOLE / "locales").glob("*.json")}
    assert set(files) == set(_i18n.LANGUAGES) == set(_i18n.CATALOGUE)
    english = files["en"]
    for lang, table in files.items():
        assert table == _i18n.CATALOGUE[lang]
        assert set(table) == set(english), lang
        assert all(isinstance(text, str) and text.strip() for text in table.values()), lang
        for key, text in english.items():  # the same placeholders in every language
            assert set(re.findall(r"\{(\w+)\}", text)) == set(
                re.findall(r"\{(\w+)\}", table[key])), (lang, key)


def test_every_key_the_templates_use_exists() -> None:
    used: set[str] = set()
    prefixes: set[str] = set()
    for template in (CONSOLE / "templates").glob("*.html"):
        text = template.read_text(encoding="utf-8")
        used |= set(KEY_IN_TEMPLATE.findall(text))
        prefixes |= set(PREFIX_IN_TEMPLATE.findall(text))
    assert used and prefixes
    missing = sorted(key for key in used if not _i18n.has_key(key))
    assert missing == []
    for prefix in prefixes:
        assert any(key.startswith(prefix) for key in _i18n.CATALOGUE["en"]), prefix


def test_every_key_the_routes_name_exists() -> None:
    source = "\n".join(path.read_text(encoding="utf-8")
                       for path in sorted((CONSOLE / "routes").glob("*.py")))
    named = set(re.findall(r'"((?:keys|officers|prov|notice)\.[a-z_]+)"', source)) - {
        "keys.html", "officers.html"}
    named |= {"notice." + notice for notice in re.findall(
        r'notice=(\w+)', source) if notice.isalpha()}
    assert named and sorted(key for key in named if not _i18n.has_key(key)) == []


@pytest.mark.parametrize("family", [
    [f"entitlement.{entitlement.value}" for entitlement in Entitlement],
    [f"state.{state}" for state in ("active", "suspended", "revoked")],
    [f"{kind}.{action}" for kind in ("action", "change.explain", "confirm.question",
                                     "confirm.effect", "confirm.yes")
     for action in ("revoke", "suspend", "reinstate")],
    [f"sex.{sex}" for sex in "MFX"],
    [f"keystate.{state}" for state in ("next", "active", "retired", "compromised")],
    [f"role.{role}" for role in ("registrar", "supervisor", "auditor", "cashier", "terminal",
                                 "verifier")],
])
def test_keys_built_from_values_exist(family: list[str]) -> None:
    assert [key for key in family if not _i18n.has_key(key)] == []


def test_every_form_error_code_has_a_message() -> None:
    codes = {"REQUIRED", "INVALID_DATE", "PASSPORT_EXPIRED", "PORTRAIT_REQUIRED",
             "NO_ENTITLEMENT", "INVALID_AMOUNT", "CSRF_FAILED", "FORBIDDEN",
             "NO_CONSOLE_ROLE", "UNAUTHENTICATED"}
    for table in _forms._FIELD_OF_CODE.values():
        codes |= set(table)
    assert sorted(code for code in codes if not _i18n.has_key("err." + code)) == []
    assert _i18n.error_message("zh", "SOMETHING_NEW") == _i18n.CATALOGUE["zh"]["err._other"]


def test_every_country_has_a_chinese_name() -> None:
    assert set(COUNTRY_NAMES_ZH) == set(COUNTRIES)
    assert _i18n.country_name("zh", "NGA") == "尼日利亚"
    assert _i18n.country_name("en", "NGA") == "Nigeria"
    assert set(_i18n.FREQUENT_COUNTRIES) <= set(COUNTRIES)


@pytest.mark.parametrize(("cookie", "header", "expected"), [
    (None, None, "en"),
    (None, "zh-CN,zh;q=0.9,en;q=0.8", "zh"),
    (None, "en-GB,en;q=0.9,zh;q=0.8", "en"),
    (None, "fr-FR,fr;q=0.9,zh-TW;q=0.5", "zh"),
    (None, "en;q=0.2, zh;q=0.9", "zh"),
    (None, "zh;q=0, en", "en"),
    (None, "garbage;;q=x,,", "en"),
    ("zh", "en", "zh"),
    ("xx", "zh", "zh"),
])
def test_choose_language(cookie: str | None, header: str | None, expected: str) -> None:
    assert _i18n.choose_language(cookie=cookie, accept_language=header) == expected


# --- sessions -----------------------------------------------------------------------------

NOW = 1_800_000_000


def test_session_cookie_round_trip_and_refusals() -> None:
    keys = SessionKeys(b"k" * 32)
    claims = keys.new_session(officer_id=7, token_hash="ab" * 32, now=NOW)
    cookie = keys.seal(claims)
    assert keys.open(cookie, now=NOW) == claims
    assert claims.binding == token_binding("ab" * 32) and "ab" * 32 not in cookie
    body, _, mac = cookie.rpartition(".")
    other_mac = ("A" if mac[0] != "A" else "B") + mac[1:]
    for forged in [cookie.replace("7.", "1.", 1), body + "." + other_mac, body, "",
                   "a" * 1000]:
        assert keys.open(forged, now=NOW) is None, forged
    assert keys.open(cookie, now=claims.expires) is None  # expired
    assert SessionKeys(b"z" * 32).open(cookie, now=NOW) is None  # another key


def test_csrf_tokens_belong_to_one_session() -> None:
    keys = SessionKeys(b"k" * 32)
    one, two = (keys.new_session(officer_id=1, token_hash="c" * 64, now=NOW)
                for _ in range(2))
    token = keys.csrf_token(one.session_id)
    assert keys.check_csrf(one.session_id, token)
    assert not keys.check_csrf(two.session_id, token)
    assert not keys.check_csrf(one.session_id, "")
    assert not keys.check_csrf(one.session_id, "ü" + token)
    assert keys.check_pre_token("n" * 24, keys.pre_token("n" * 24))
    assert not keys.check_pre_token("", keys.pre_token(""))


def test_session_key_file_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    key = load_session_key(tmp_path)
    assert len(key) == 32 and load_session_key(tmp_path) == key
    assert (tmp_path / "console-session.key").stat().st_mode & 0o777 == 0o600
    missing = tmp_path / "no" / "such" / "dir"
    assert len(load_session_key(missing)) == 32  # process-local, with a warning


# --- forms --------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "fen", "problem"), [
    ("200", 20_000, None), ("150.5", 15_050, None), ("0", 0, None), ("1,000.25", 100_025, None),
    ("", 20_000, None), ("abc", None, "INVALID_AMOUNT"), ("1e3", None, "INVALID_AMOUNT"),
    ("-1", None, "INVALID_AMOUNT"), ("0.001", None, "INVALID_AMOUNT"),
])
def test_offline_limit_in_yuan(text: str, fen: int | None, problem: str | None) -> None:
    _, card, problems = _forms.read_card(
        {"valid_until": "2030-01-01", "offline_limit": text}, ["payment"],
        default_offline_limit_fen=20_000)
    if problem is None:
        assert card is not None and card.offline_limit_fen == fen
    else:
        assert problems == {"offline_limit": problem}
