"""Portraits: JPEG or PNG in, decoded and re-encoded by Pillow, JPEG out with its digest.

Re-encoding drops metadata and anything hidden in the file; other formats are refused.

Example::

    portrait = normalize_portrait(unverified_bytes, max_bytes=2_000_000)
    portrait.digest          # base64url of schemas.credential.portrait_digest(portrait.jpeg)

A portrait another city normalized (a person moving here) is kept as it is, once
:func:`check_normalized_portrait` has decoded it under the same limits and computed its
digest here.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from cardsvc.services.errors import Invalid
from schemas import b64url_encode
from schemas.credential import portrait_digest

__all__ = ["MAX_PIXELS", "NormalizedPortrait", "check_normalized_portrait",
           "normalize_portrait"]

MAX_PIXELS = 40_000_000  # a larger image is a decompression bomb, not a photo
_BOX = (480, 640)  # what a counter screen shows; keeps the stored JPEG around 30-60 KB
_ACCEPTED = frozenset({"JPEG", "PNG"})


@dataclass(frozen=True, slots=True)
class NormalizedPortrait:
    jpeg: bytes
    digest: str
    width: int
    height: int


def _decoded(unverified_image: bytes, *, max_bytes: int, formats: frozenset[str]
             ) -> Image.Image:
    """The image decoded to RGB within the limits (Invalid otherwise)."""
    if not unverified_image:
        raise Invalid("PORTRAIT_INVALID", "the portrait is empty")
    if len(unverified_image) > max_bytes:
        raise Invalid("PORTRAIT_TOO_LARGE", f"portraits are at most {max_bytes} bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(unverified_image), formats=sorted(formats)) as image:
                if image.format not in formats:
                    raise Invalid("PORTRAIT_FORMAT", "portraits are JPEG or PNG")
                width, height = image.size
                if width < 16 or height < 16 or width * height > MAX_PIXELS:
                    raise Invalid("PORTRAIT_INVALID", "the portrait's size is not plausible")
                image.load()
                rgb: Image.Image = image.convert("RGB")
                return rgb
    except Invalid:
        raise
    except UnidentifiedImageError as exc:
        raise Invalid("PORTRAIT_FORMAT", "portraits are JPEG or PNG") from exc
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning, EOFError, MemoryError) as exc:
        raise Invalid("PORTRAIT_INVALID", "the portrait could not be decoded") from exc


def normalize_portrait(unverified_image: bytes, *, max_bytes: int) -> NormalizedPortrait:
    rgb = _decoded(unverified_image, max_bytes=max_bytes, formats=_ACCEPTED)
    rgb.thumbnail(_BOX, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=85, optimize=True)
    jpeg = out.getvalue()
    return NormalizedPortrait(jpeg, b64url_encode(portrait_digest(jpeg)), rgb.width, rgb.height)


def check_normalized_portrait(unverified_jpeg: bytes, *, unverified_digest: object,
                              max_bytes: int) -> NormalizedPortrait:
    """A portrait normalized elsewhere, kept byte for byte: a JPEG that decodes within the
    limits, no larger than :func:`normalize_portrait` makes, whose digest computed here is
    ``unverified_digest`` (PORTRAIT_FORMAT, PORTRAIT_TOO_LARGE, PORTRAIT_INVALID)."""
    rgb = _decoded(unverified_jpeg, max_bytes=max_bytes, formats=frozenset({"JPEG"}))
    if rgb.width > _BOX[0] or rgb.height > _BOX[1]:
        raise Invalid("PORTRAIT_INVALID", "the portrait is larger than a normalized one")
    digest = b64url_encode(portrait_digest(unverified_jpeg))
    if digest != unverified_digest:
        raise Invalid("PORTRAIT_INVALID", "the portrait's digest is not its own")
    return NormalizedPortrait(unverified_jpeg, digest, rgb.width, rgb.height)
