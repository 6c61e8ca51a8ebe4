"""QR size budget of docs/DESIGN.md section 5, computed with the QR library at error
correction M."""

from __future__ import annotations

import pytest
import qrcode
import qrcode.constants
import zxingcpp

from schemas import Entitlement, Purpose, StatusRef
from schemas.qr import presentation_qr
from support import LONG_GIVEN, LONG_SURNAME, present

BUDGET = {Purpose.PAY: 13, Purpose.ID: 15, Purpose.SVC: 16}


def worst_case(purpose: Purpose) -> str:
    # 40-character surname and given names, portrait digest, every entitlement, the
    # largest index of a 131,072-entry list, a 16-digit card number.
    extra: dict[str, object] = {"status": StatusRef("9", 131_071)}
    if purpose is Purpose.SVC:
        extra["entitlements"] = tuple(Entitlement)
    return present(purpose, **extra)


def test_names_are_the_long_realistic_ones() -> None:
    assert len(LONG_SURNAME) == 40 and len(LONG_GIVEN) == 40


@pytest.mark.parametrize("purpose", list(Purpose))
def test_presentation_fits_budget(purpose: Purpose) -> None:
    code = presentation_qr(worst_case(purpose))
    assert code.version <= BUDGET[purpose]


@pytest.mark.parametrize("purpose", list(Purpose))
def test_qr_decodes_back_to_the_same_text(purpose: Purpose) -> None:
    text = worst_case(purpose)
    image = presentation_qr(text, box_size=4).make_image().get_image().convert("L")
    decoded = zxingcpp.read_barcodes(image)
    assert [d.text for d in decoded] == [text]


def test_explicit_segments_beat_the_automatic_ones() -> None:
    text = worst_case(Purpose.ID)
    automatic = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M)
    automatic.add_data(text)
    automatic.make(fit=True)
    assert presentation_qr(text).version <= automatic.version


def test_prefix_and_digits_use_qr_text_modes() -> None:
    text = present(Purpose.ID)
    assert text.startswith("FMC1:") and text[5:].isdigit()
