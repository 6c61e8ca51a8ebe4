"""QR decoding for the counter and the till: :mod:`schemas.scan`, which the phone uses too
(a till's sale challenge), so it lives below both.

Example::

    from verifier.qr import ScanError, decode_qr
    text = decode_qr(Path("photo.jpg").read_bytes())    # 'FMC1:1234...'
"""

from schemas.scan import (
    ACCEPTED_FORMATS,
    MAX_IMAGE_BYTES,
    MAX_IMAGE_PIXELS,
    ScanError,
    decode_qr,
    decode_qr_image,
)

__all__ = [
    "ACCEPTED_FORMATS",
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_PIXELS",
    "ScanError",
    "decode_qr",
    "decode_qr_image",
]
