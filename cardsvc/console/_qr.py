"""The provisioning code as a QR code, drawn server-side as inline SVG (no script, no CDN).

The code (Crockford base32 with dashes) is all in QR's alphanumeric set, so it is encoded
as one alphanumeric segment at error correction M.
"""

from __future__ import annotations

import qrcode
import qrcode.constants
import qrcode.util

__all__ = ["qr_matrix", "qr_svg"]

_QUIET_ZONE = 4  # ISO/IEC 18004 quiet zone, in modules


def qr_matrix(text: str) -> list[list[bool]]:
    """Modules of the symbol, quiet zone included (True is dark)."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M,
                         border=_QUIET_ZONE)
    mode = (qrcode.util.MODE_ALPHA_NUM
            if text and set(text) <= set(qrcode.util.ALPHA_NUM.decode("ascii"))
            else qrcode.util.MODE_8BIT_BYTE)
    code.add_data(qrcode.util.QRData(text.encode(), mode=mode))
    code.make(fit=True)
    return [[bool(module) for module in row] for row in code.get_matrix()]


def qr_svg(text: str, *, pixels: int = 240, label: str = "") -> str:
    """An SVG element, one path for the dark modules, crisp at any zoom."""
    matrix = qr_matrix(text)
    size = len(matrix)
    runs = []
    for y, row in enumerate(matrix):
        x = 0
        while x < size:
            if row[x]:
                start = x
                while x < size and row[x]:
                    x += 1
                runs.append(f"M{start} {y}h{x - start}v1h-{x - start}z")
            else:
                x += 1
    title = f"<title>{_escape(label)}</title>" if label else ""
    aria = f' aria-label="{_escape(label)}"' if label else ""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" '
        f'width="{pixels}" height="{pixels}" shape-rendering="crispEdges" role="img"'
        f"{aria}>{title}"
        f'<rect width="{size}" height="{size}" fill="#fff"/>'
        f'<path fill="#000" d="{"".join(runs)}"/></svg>'
    )


def _escape(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))
