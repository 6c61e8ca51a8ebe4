"""Portraits: JPEG or PNG in, decoded and re-encoded by Pillow, JPEG out with its digest.

Re-encoding drops metadata and anything hidden in the file; other formats are refused.

Example::

    portrait = normalize_portrait(unverified_bytes, max_bytes=2_000_000)
    portrait.digest          # base64url of schemas.credential.portrait_digest(portrait.jpeg)
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from cardsvc.services.errors import Invalid
from schemas import b64url_encode
from schemas.credential import portrait_digest

__all__ = ["MAX_PIXELS", "NormalizedPortrait", "normalize_portrait"]

MAX_PIXELS = 40_000_000  # a larger image is a decompression bomb, not a photo
_BOX = (480, 640)  # what a counter screen shows; keeps the stored JPEG around 30-60 KB
_ACCEPTED = {"JPEG", "PNG"}


@dataclass(frozen=True, slots=True)
class NormalizedPortrait:
    jpeg: bytes
    digest: str
    width: int
    height: int


def normalize_portrait(unverified_image: bytes, *, max_bytes: int) -> NormalizedPortrait:
    if not unverified_image:
        raise Invalid("PORTRAIT_INVALID", "the portrait is empty")
    if len(unverified_image) > max_bytes:
        raise Invalid("PORTRAIT_TOO_LARGE", f"portraits are at most {max_bytes} bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(unverified_image), formats=sorted(_ACCEPTED)) as image:
                if image.format not in _ACCEPTED:
                    raise Invalid("PORTRAIT_FORMAT", "portraits are JPEG or PNG")
                width, height = image.size
                if width < 16 or height < 16 or width * height > MAX_PIXELS:
                    raise Invalid("PORTRAIT_INVALID", "the portrait's size is not plausible")
                image.load()
                rgb = image.convert("RGB")
    except Invalid:
        raise
    except UnidentifiedImageError as exc:
        raise Invalid("PORTRAIT_FORMAT", "portraits are JPEG or PNG") from exc
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning, EOFError, MemoryError) as exc:
        raise Invalid("PORTRAIT_INVALID", "the portrait could not be decoded") from exc
    rgb.thumbnail(_BOX, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=85, optimize=True)
    jpeg = out.getvalue()
    return NormalizedPortrait(jpeg, b64url_encode(portrait_digest(jpeg)), rgb.width, rgb.height)
