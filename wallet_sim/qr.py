"""QR codes for presentations: PNG for screens and files, half blocks for terminals.

``FMC1:`` text is encoded by ``schemas.qr.presentation_qr``: the prefix in alphanumeric
mode and the digits in numeric mode, at error correction M, here with the standard
4-module quiet zone. That keeps pay within version 13, id 15 and svc 16.

Example::

    code = qr_code(text)                  # code.version, code.modules
    png = qr_png(text)                    # at least 600 px wide, scans from a screen
    print("\\n".join(qr_halfblocks(text)))
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from schemas import Purpose
from schemas.qr import presentation_qr

__all__ = [
    "MAX_QR_VERSION",
    "QUIET_ZONE_MODULES",
    "QrCode",
    "qr_code",
    "qr_halfblocks",
    "qr_png",
]

QUIET_ZONE_MODULES = 4  # ISO/IEC 18004: four light modules around the symbol
MAX_QR_VERSION = {Purpose.PAY: 13, Purpose.ID: 15, Purpose.SVC: 16}  # docs/DESIGN.md section 5
_MIN_PNG_PIXELS = 600


@dataclass(frozen=True, slots=True)
class QrCode:
    """A QR symbol with its quiet zone: ``modules[row][col]`` is True for dark."""

    version: int
    modules: tuple[tuple[bool, ...], ...]

    @property
    def size(self) -> int:
        """Modules per side, quiet zone included."""
        return len(self.modules)


def qr_code(text: str) -> QrCode:
    """Encode ``text`` at error correction M with the smallest version that fits."""
    qr = presentation_qr(text, border=QUIET_ZONE_MODULES)
    matrix = qr.get_matrix()  # includes the quiet zone
    return QrCode(int(qr.version), tuple(tuple(bool(m) for m in row) for row in matrix))


def qr_png(text: str, *, min_pixels: int = _MIN_PNG_PIXELS) -> bytes:
    """A black-on-white PNG, whole pixels per module, at least ``min_pixels`` wide."""
    code = qr_code(text)
    scale = max(1, -(-min_pixels // code.size))
    image = Image.new("1", (code.size, code.size), 1)
    image.putdata([0 if dark else 1 for row in code.modules for dark in row])
    image = image.resize((code.size * scale, code.size * scale), Image.Resampling.NEAREST)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def qr_halfblocks(text: str) -> list[str]:
    """Lines of half-block characters, two module rows per line (quiet zone included).

    A character's foreground is a dark module: print it dark on a light background
    (the CLI does), or a camera sees an inverted code.
    """
    code = qr_code(text)
    rows = list(code.modules)
    if len(rows) % 2:
        rows.append(tuple(False for _ in rows[0]))
    glyphs = {(False, False): " ", (True, False): "▀", (False, True): "▄", (True, True): "█"}
    return [
        "".join(glyphs[(top, bottom)] for top, bottom in zip(upper, lower, strict=True))
        for upper, lower in zip(rows[0::2], rows[1::2], strict=True)
    ]
