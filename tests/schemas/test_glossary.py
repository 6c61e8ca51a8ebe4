"""One vocabulary (P16.4): every surface uses the glossary's words and none of its known
wrong variants; docs/GLOSSARY.md is the glossary's own rendering."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas.credential import Entitlement
from schemas.glossary import GLOSSARY, markdown, term
from verifier.messages import ENTITLEMENT_NAMES, FIELD_LABELS, SERVICE_NAMES
from verifier.policy import POLICIES
from wallet_sim._i18n import translations

REPO = Path(__file__).resolve().parents[2]
# The glossary names the wrong variants: the only files allowed to.
_GLOSSARY_FILES = {REPO / "schemas" / "glossary.json", REPO / "schemas" / "glossary.py",
                   REPO / "docs" / "GLOSSARY.md"}
_SURFACE_SUFFIXES = {".py", ".html", ".json", ".js", ".md"}


def _surfaces() -> Iterator[Path]:
    """What a user reads: messages, templates, locales, CLI texts, README and docs."""
    yield REPO / "README.md"
    yield from sorted((REPO / "docs").glob("*.md"))
    for package in ("schemas", "verifier", "wallet_sim", "cardsvc"):
        yield from sorted(path for path in (REPO / package).rglob("*")
                          if path.suffix in _SURFACE_SUFFIXES and path.is_file())


def _console(lang: str) -> dict[str, str]:
    path = REPO / "cardsvc" / "console" / "locales" / f"{lang}.json"
    table: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
    return table


def _wrong_variant_pattern() -> re.Pattern[str]:
    english = [rf"\b{re.escape(w)}\b" for t in GLOSSARY.values() for w in t.wrong_en]
    chinese = [re.escape(w) for t in GLOSSARY.values() for w in t.wrong_zh]
    return re.compile("|".join(english + chinese), re.IGNORECASE)


def test_no_surface_uses_a_wrong_variant() -> None:
    pattern = _wrong_variant_pattern()
    found = [f"{path.relative_to(REPO)}:{number}: {match.group(0)}"
             for path in _surfaces() if path not in _GLOSSARY_FILES
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             for match in pattern.finditer(line)]
    assert found == []


def test_the_wrong_variant_check_can_fail() -> None:
    pattern = _wrong_variant_pattern()
    assert pattern.search("无法识别的外国人商户卡二维码")
    assert pattern.search("外国人编码")
    assert pattern.search("Enter the Activation Code")
    assert not pattern.search("外籍商友卡 外国人识别码 provisioning code")


def test_no_term_is_its_own_wrong_variant_and_ids_are_unique() -> None:
    raw = json.loads((REPO / "schemas" / "glossary.json").read_text(encoding="utf-8"))
    assert len({t["id"] for t in raw["terms"]}) == len(raw["terms"])
    for t in GLOSSARY.values():
        for wrong in t.wrong_zh:
            assert wrong not in t.zh, t.id
        for wrong in t.wrong_en:
            assert wrong.lower() not in t.en.lower(), t.id


def test_docs_glossary_is_generated_from_the_glossary() -> None:
    page = (REPO / "docs" / "GLOSSARY.md").read_text(encoding="utf-8")
    assert page == markdown(), "run: python -m schemas.glossary > docs/GLOSSARY.md"


# (surface, the words it shows, glossary term, language)
_SAME_WORDS = [
    ("wallet title", translations("zh")["title"], "card", "zh"),
    ("wallet title", translations("en")["title"], "card", "en"),
    ("console app name", _console("zh")["app.name"], "card", "zh"),
    ("console app name", _console("en")["app.name"], "card", "en"),
    ("counter field", FIELD_LABELS["foreigner_code"].zh, "foreigner_code", "zh"),
    ("wallet field", translations("zh")["foreigner_code"], "foreigner_code", "zh"),
    ("console field", _console("zh")["person.code"], "foreigner_code", "zh"),
    ("counter field", FIELD_LABELS["foreigner_code"].en, "foreigner_code", "en"),
    ("wallet field", translations("en")["foreigner_code"], "foreigner_code", "en"),
    ("console field", _console("en")["person.code"], "foreigner_code", "en"),
    ("wallet field", translations("en")["card_number"], "card_number", "en"),
    ("console field", _console("en")["card.number"], "card_number", "en"),
    ("console field", _console("en")["card.holder"], "holder", "en"),
    ("wallet field", translations("zh")["card_number"], "card_number", "zh"),
    ("console field", _console("zh")["card.number"], "card_number", "zh"),
    ("console field", _console("zh")["card.holder"], "holder", "zh"),
    ("console field", _console("zh")["prov.code"], "provisioning_code", "zh"),
    ("console field", _console("en")["prov.code"], "provisioning_code", "en"),
    ("console field", _console("zh")["keys.trust_list"], "trust_list", "zh"),
    ("console field", _console("en")["keys.trust_list"], "trust_list", "en"),
    ("console field", _console("zh")["card.entitlements"], "entitlement", "zh"),
    ("counter field", FIELD_LABELS["entitlements"].zh, "entitlement", "zh"),
    ("counter field", FIELD_LABELS["portrait"].zh, "portrait", "zh"),
    ("console field", _console("zh")["person.portrait"], "portrait", "zh"),
    *[(f"console state {state}", _console("en")[f"state.{state}"], state, "en")
      for state in ("active", "revoked", "suspended")],
    ("console state", _console("zh")["state.active"], "active", "zh"),
    ("console state", _console("zh")["state.revoked"], "revoked", "zh"),
    ("console state", _console("zh")["state.suspended"], "suspended", "zh"),
    ("console notice", _console("zh")["notice.reinstated"], "reinstated", "zh"),
    *[(f"console role {role}", _console(lang)[f"role.{role}"], role, lang)
      for role in ("registrar", "supervisor", "auditor", "cashier", "terminal", "verifier")
      for lang in ("en", "zh")],
    *[(f"counter entitlement {e}", getattr(ENTITLEMENT_NAMES[e], lang), f"entitlement.{e}",
       lang) for e in Entitlement for lang in ("en", "zh")],
    *[(f"console entitlement {e}", _console(lang)[f"entitlement.{e}"], f"entitlement.{e}",
       lang) for e in Entitlement for lang in ("en", "zh")],
    *[(f"counter service {s}", getattr(SERVICE_NAMES[s], lang), f"service.{s}", lang)
      for s in POLICIES for lang in ("en", "zh")],
]


@pytest.mark.parametrize(("surface", "shown", "term_id", "lang"), _SAME_WORDS,
                         ids=[f"{row[0]}-{row[3]}" for row in _SAME_WORDS])
def test_every_surface_shows_the_glossary_word(
    surface: str, shown: str, term_id: str, lang: str
) -> None:
    # A label may carry a few words around the term ("此卡已恢复。"), or a capital.
    assert getattr(term(term_id), lang).casefold() in shown.casefold(), surface


@pytest.mark.parametrize("path", [
    "verifier/web/templates/counter.html", "verifier/cli.py", "wallet_sim/_i18n.py",
    "cardsvc/console/locales/zh.json", "README.md",
])
def test_the_card_is_named_in_chinese_as_the_glossary_says(path: str) -> None:
    assert term("card").zh in (REPO / path).read_text(encoding="utf-8")
