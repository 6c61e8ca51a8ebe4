"""The QR code of a presentation: ``FMC1:`` in alphanumeric mode, the digits in numeric mode.

qrcode's automatic segmentation puts a short alphanumeric run such as ``FMC1:`` in byte
mode, which costs a whole version for an id card; building the two segments explicitly
keeps pay <= version 13, id <= 15 and svc <= 16 at error correction M.

Example::

    code = presentation_qr(text)
    code.make_image().save("card.png")
    assert code.version <= 15
"""

from __future__ import annotations

import qrcode
import qrcode.constants
import qrcode.util

from schemas.challenge import CHALLENGE_PREFIX
from schemas.presentation import BOUND_PREFIX, PREFIX

__all__ = ["presentation_qr"]

# Texts made of a prefix and decimal digits: pay/id codes, bound pay codes, sale challenges.
_DIGIT_PREFIXES = frozenset({PREFIX, BOUND_PREFIX, CHALLENGE_PREFIX})


def presentation_qr(text: str, *, box_size: int = 10, border: int = 4) -> qrcode.QRCode:
    """A fitted QRCode (error correction M) for presentation text."""
    code = qrcode.QRCode(
        error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=box_size, border=border
    )
    head, colon, digits = text.partition(":")
    if head + colon in _DIGIT_PREFIXES and digits.isdigit():
        code.add_data(qrcode.util.QRData(head + colon, mode=qrcode.util.MODE_ALPHA_NUM))
        code.add_data(qrcode.util.QRData(digits, mode=qrcode.util.MODE_NUMBER))
    else:
        code.add_data(text)
    code.make(fit=True)
    return code
