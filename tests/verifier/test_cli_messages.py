"""Every result code and tool code has a plain-words reason in English and in Chinese."""

from __future__ import annotations

import re

import pytest

from schemas.codes import ResultCode
from schemas.credential import Entitlement
from verifier.messages import (
    ENTITLEMENT_NAMES,
    RESULT_REASONS,
    SERVICE_NAMES,
    TOOL_REASONS,
    reason,
    verdict,
)
from verifier.policy import POLICIES

CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.mark.parametrize("code", list(ResultCode))
def test_every_result_code_has_both_languages(code: ResultCode) -> None:
    text = RESULT_REASONS[code]
    assert text.en and not CJK.search(text.en)
    assert CJK.search(text.zh)
    assert reason(code.value) == text


def test_reasons_are_distinct() -> None:
    english = [text.en for text in RESULT_REASONS.values()]
    chinese = [text.zh for text in RESULT_REASONS.values()]
    assert len(set(english)) == len(english) and len(set(chinese)) == len(chinese)


@pytest.mark.parametrize("code", sorted(TOOL_REASONS))
def test_tool_codes_have_both_languages(code: str) -> None:
    assert TOOL_REASONS[code].en and CJK.search(TOOL_REASONS[code].zh)


def test_names_for_every_service_and_entitlement() -> None:
    assert set(SERVICE_NAMES) == set(POLICIES)
    assert set(ENTITLEMENT_NAMES) == {e.value for e in Entitlement}


def test_verdict_words_and_unknown_codes() -> None:
    assert (verdict(True).en, verdict(True).zh) == ("ACCEPTED", "通过")
    assert (verdict(False).en, verdict(False).zh) == ("REFUSED", "拒绝")
    assert reason("NO_SUCH_CODE").en  # never a KeyError on a new code
    assert reason("OK").pick("en") == RESULT_REASONS[ResultCode.OK].en
    assert "\n" in reason("OK").pick(None)
