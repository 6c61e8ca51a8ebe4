"""Foreigner code layout and check character, card numbers, names, countries (no database)."""

from __future__ import annotations

import pytest

from cardsvc._countries import COUNTRIES, numeric_code
from cardsvc.services._foreigner_code import check_character, is_valid_foreigner_code
from cardsvc.services._names import name_key, name_similarity
from cardsvc.services._validate import clean_name
from cardsvc.services.cards import luhn_check_digit, normalize_provisioning_code
from cardsvc.services.errors import Invalid
from cardsvc.services.persons import DUPLICATE_THRESHOLD


@pytest.mark.parametrize(("body", "check"), [
    ("11010519491231002", "X"),  # the GB 11643 example in docs/DESIGN.md section 3
    ("44052419800101001", "3"),  # the often-cited 440524198001010013
    ("93356619850302001", "1"),
])
def test_iso7064_mod11_2_check_character(body: str, check: str) -> None:
    assert check_character(body) == check


@pytest.mark.parametrize(("code", "valid"), [
    ("933566198503020011", True),
    ("933566198503020012", False),  # wrong check character
    ("833566198503020011", False),  # not a foreigner code
    ("93356619850302001", False),
    ("93356619850302001X", False),
    ("９33566198503020011", False),  # full-width digit
])
def test_foreigner_code_validation(code: str, valid: bool) -> None:
    assert is_valid_foreigner_code(code) is valid


@pytest.mark.parametrize(("body", "digit"), [("7992739871", "3"), ("331234567890123", "8")])
def test_luhn(body: str, digit: str) -> None:
    assert luhn_check_digit(body) == digit


@pytest.mark.parametrize(("typed", "normalized"), [
    ("abcd-efgh-jkmn-pqrs", "ABCDEFGHJKMNPQRS"),
    (" ABCD EFGH JKMN PQRS ", "ABCDEFGHJKMNPQRS"),
    ("OIL0-0000-0000-0000", "0110000000000000"),  # Crockford reads O as 0, I and L as 1
    ("ABCD-EFGH-JKMN", None),
    ("ABCD-EFGH-JKMN-PQR!", None),
])
def test_provisioning_code_normalization(typed: str, normalized: str | None) -> None:
    assert normalize_provisioning_code(typed) == normalized


@pytest.mark.parametrize("printed", [
    "Nguyễn Thị", "李 小龙", "玛丽·居里", "MUTHU A/L SAMY", "O'Brien-Née", "O’Neill",
    "St. John", "Ṣàlàkọ́", "अनिल", "สมชาย", "Иванова", "محمد", "ʻAkau", "García (de León)",
])
def test_names_as_printed_in_any_script_are_kept(printed: str) -> None:
    assert clean_name(printed, field="surname") == printed


@pytest.mark.parametrize("slip", [
    "OKONKWO<<CHIAMAKA",  # the machine-readable line, not the printed name
    "Holder 12", "Lan٣",  # digits, in any script
    "<b>Lan</b>", "Ali&Co", "x@y", "a_b", "a;b", 'a"b', "a=b", "a\\b", "a{b}", "a*", "a#1",
])
def test_digits_symbols_and_markup_in_a_name_are_refused(slip: str) -> None:
    with pytest.raises(Invalid) as refused:
        clean_name(slip, field="given_names")
    assert refused.value.code == "INVALID_GIVEN_NAMES"


@pytest.mark.parametrize(("a", "b", "alike"), [
    (("Mohammed", "Ali"), ("MUHAMMAD", "ALI"), True),
    (("AL-HASHIMI", "Mohamed Ibrahim"), ("Al Hashimi", "Muhammad"), True),
    (("Nguyễn", "Văn An"), ("NGUYEN", "VAN AN"), True),
    (("Müller", "Jürgen"), ("MULLER", "JURGEN"), True),
    (("Hussein", "Ahmed"), ("Ahmad", "Husain"), True),  # order swapped
    (("Okafor", "Chinedu"), ("Okonkwo", "Chiamaka"), False),
    (("Ivanova", "Olga"), ("Petrova", "Olga"), False),
])
def test_name_similarity(a: tuple[str, str], b: tuple[str, str], alike: bool) -> None:
    score = name_similarity(name_key(*a), name_key(*b))
    assert (score >= DUPLICATE_THRESHOLD) is alike, score


def test_country_table_is_complete_and_unambiguous() -> None:
    assert len(COUNTRIES) >= 249
    numerics = [country.numeric for country in COUNTRIES.values()]
    assert len(set(numerics)) == len(numerics)
    assert numeric_code("CHN") == "156" and numeric_code("NGA") == "566"
    assert numeric_code("AFG") == "004" and numeric_code("ZWE") == "716"
