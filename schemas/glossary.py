"""The one vocabulary of the project, in English and Chinese (``glossary.json``).

Every surface (verifier messages and counter page, wallet, console locales, CLI texts,
README and docs) uses these words; a test refuses the known wrong variants of each.
``docs/GLOSSARY.md`` is generated from the same file.

Example::

    from schemas.glossary import term
    term("card").zh                  # '外籍商友卡'
    term("foreigner_code").en        # 'foreigner code'
    term("revoked").wrong_zh         # ('注销', '作废')

Write the Markdown page::

    python -m schemas.glossary > docs/GLOSSARY.md
"""

from __future__ import annotations

import json
from importlib.resources import files
from types import MappingProxyType
from typing import NamedTuple

__all__ = ["GLOSSARY", "Term", "markdown", "term"]


class Term(NamedTuple):
    id: str
    en: str
    zh: str
    wrong_en: tuple[str, ...]
    wrong_zh: tuple[str, ...]
    note: str


def _load() -> MappingProxyType[str, Term]:
    raw = json.loads(files("schemas").joinpath("glossary.json").read_text(encoding="utf-8"))
    terms = (Term(id=t["id"], en=t["en"], zh=t["zh"], wrong_en=tuple(t["wrong_en"]),
                  wrong_zh=tuple(t["wrong_zh"]), note=t.get("note", ""))
             for t in raw["terms"])
    return MappingProxyType({t.id: t for t in terms})


GLOSSARY: MappingProxyType[str, Term] = _load()


def term(term_id: str) -> Term:
    """The glossary entry ``term_id`` (KeyError for a term that is not in the glossary)."""
    return GLOSSARY[term_id]


def markdown() -> str:
    """``docs/GLOSSARY.md``: one table row per term, the wrong variants named."""
    lines = [
        "# Glossary",
        "",
        "One vocabulary for every surface, in English and Chinese. Generated from",
        "`schemas/glossary.json` by `python -m schemas.glossary > docs/GLOSSARY.md`;",
        "`tests/schemas/test_glossary.py` fails when this page, or any page, locale,",
        "template, message or CLI text, differs from it or uses a wrong variant.",
        "",
        "| Term | English | 中文 | Not (wrong variants) | Note |",
        "|---|---|---|---|---|",
    ]
    for t in GLOSSARY.values():
        wrong = ", ".join(f"~~{w}~~" for w in (*t.wrong_en, *t.wrong_zh))
        lines.append(f"| `{t.id}` | {t.en} | {t.zh} | {wrong} | {t.note} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
