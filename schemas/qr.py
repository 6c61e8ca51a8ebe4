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

from schemas.presentation import PREFIX

__all__ = ["presentation_qr"]


def presentation_qr(text: str, *, box_size: int = 10, border: int = 4) -> qrcode.QRCode:
    """A fitted QRCode (error correction M) for presentation text."""
    code = qrcode.QRCode(
        error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=box_size, border=border
    )
    if text.startswith(PREFIX) and text[len(PREFIX):].isdigit():
        code.add_data(qrcode.util.QRData(PREFIX, mode=qrcode.util.MODE_ALPHA_NUM))
        code.add_data(qrcode.util.QRData(text[len(PREFIX):], mode=qrcode.util.MODE_NUMBER))
    else:
        code.add_data(text)
    code.make(fit=True)
    return code
