"""QR decoding of pictures: a saved PNG from the wallet or a photo of a phone screen.

In ``schemas`` because both ends scan: the counter and the till read pay and identity
codes, the phone reads a till's sale challenge (``verifier.qr`` re-exports it).

zxing-cpp does the decoding. Camera photos get a few cheap retries (contrast
stretch, other binarizers, rescaling, denoise, sharpen) until an ``FMC1:`` text is
found. Oversized pictures are refused before their pixels are decoded: the byte count
first, then the pixel count read from the header (a 190 KB PNG can hold a 7000x7000
image that takes a gigabyte to decode). Only the formats a camera, a scanner or a
screenshot produce are opened, and only the first frame of an animation is decoded.

Example::

    from schemas.scan import ScanError, decode_qr
    try:
        text = decode_qr(Path("photo.jpg").read_bytes())    # 'FMC1:1234...'
    except ScanError as error:
        print(error.code)      # QR_NOT_FOUND, IMAGE_TOO_LARGE or IMAGE_UNREADABLE
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterator

import zxingcpp
from PIL import Image, ImageFilter, ImageOps

from schemas.presentation import BOUND_PREFIX, PREFIX

__all__ = [
    "ACCEPTED_FORMATS",
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_PIXELS",
    "ScanError",
    "decode_qr",
    "decode_qr_image",
]

MAX_IMAGE_BYTES = 12 * 1024 * 1024  # a 12 MP camera JPEG is 3-6 MB, a phone screenshot < 2 MB
# Decoded pixels, checked from the header before any pixel is decoded. 16 MP holds a 12 MP
# phone photo; a JPEG above it is decoded at 1/2..1/8 scale (draft mode), so only formats
# that cannot shrink while decoding are refused. A 7000x7000 PNG (49 MP, 1 GB of working
# memory) is IMAGE_TOO_LARGE in microseconds.
MAX_IMAGE_PIXELS = 16_000_000
MAX_JPEG_PIXELS = 64_000_000  # before draft scaling; a 48 MP camera photo fits
# What cameras, scanners and screenshots produce; TIFF, PSD, ICO, PDF, ... are refused
# (every extra decoder is attack surface).
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
_WORKING_SIDE = 1600  # photos are decoded at about this size first (QR modules stay > 3 px)


class ScanError(Exception):
    """No presentation could be read from a picture; ``code`` says why."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def decode_qr(unverified_image: bytes) -> str:
    """The QR text in an encoded picture (PNG, JPEG, WebP, GIF, BMP), ``FMC1:`` texts first.

    Size is bounded before decoding: bytes first, then the pixel count from the header
    (JPEGs are decoded scaled down), and only the first frame of an animation is read."""
    if len(unverified_image) > MAX_IMAGE_BYTES:
        raise ScanError("IMAGE_TOO_LARGE", f"picture larger than {MAX_IMAGE_BYTES} bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(unverified_image), formats=ACCEPTED_FORMATS)
            _bound_before_decoding(image)
            image.load()
    except ScanError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ScanError("IMAGE_TOO_LARGE", "picture is too large") from None
    except Exception as error:  # PIL raises many types for damaged files
        raise ScanError("IMAGE_UNREADABLE",
                        f"not a readable picture ({type(error).__name__})") from None
    return decode_qr_image(image)


def _bound_before_decoding(image: Image.Image) -> None:
    """Refuse, or scale down while decoding, a picture whose header promises too many pixels."""
    width, height = image.size
    if image.format == "JPEG" and width * height <= MAX_JPEG_PIXELS:
        # libjpeg decodes at 1/2, 1/4 or 1/8 scale at a fraction of the cost.
        image.draft("L", (_WORKING_SIDE, _WORKING_SIDE))
        width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        raise ScanError("IMAGE_TOO_LARGE", f"picture of {width}x{height} pixels is too large")


def decode_qr_image(image: Image.Image) -> str:
    """The QR text in a decoded picture; tries camera-photo fallbacks before giving up."""
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        raise ScanError("IMAGE_TOO_LARGE", f"picture of {width}x{height} pixels is too large")
    if width < 21 or height < 21:
        raise ScanError("QR_NOT_FOUND", "picture too small to hold a QR code")
    other_text: str | None = None
    try:
        gray = _grayscale(image)
        for variant, binarizer in _attempts(gray):
            for barcode in zxingcpp.read_barcodes(
                variant, formats=zxingcpp.BarcodeFormat.QRCode, binarizer=binarizer,
                try_rotate=True, try_downscale=True,
            ):
                if barcode.text.startswith((PREFIX, BOUND_PREFIX)):
                    return str(barcode.text)
                other_text = other_text or str(barcode.text)
    except (OSError, ValueError) as error:
        raise ScanError("IMAGE_UNREADABLE",
                        f"picture could not be processed ({type(error).__name__})") from None
    if other_text is not None:
        return other_text  # some other QR code: the check says it is not a card
    raise ScanError("QR_NOT_FOUND", "no QR code found in the picture")


def _grayscale(image: Image.Image) -> Image.Image:
    image = ImageOps.exif_transpose(image) or image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # A transparent PNG: put it on white so the quiet zone stays light.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("L")


def _fit(gray: Image.Image, side: int) -> Image.Image:
    scale = side / max(gray.size)
    if scale >= 1:
        return gray
    size = (max(1, round(gray.width * scale)), max(1, round(gray.height * scale)))
    return gray.resize(size, Image.Resampling.BOX)


def _attempts(gray: Image.Image) -> Iterator[tuple[Image.Image, zxingcpp.Binarizer]]:
    """Variants from cheapest to dearest; each is only computed if the ones before failed."""
    local, histogram, fixed = (zxingcpp.Binarizer.LocalAverage,
                               zxingcpp.Binarizer.GlobalHistogram,
                               zxingcpp.Binarizer.FixedThreshold)
    working = _fit(gray, _WORKING_SIDE)
    yield working, local
    stretched = ImageOps.autocontrast(working, cutoff=2)
    yield stretched, histogram
    steps: list[Callable[[], Image.Image]] = [
        lambda: ImageOps.autocontrast(working.filter(ImageFilter.MedianFilter(3)), cutoff=2),
        lambda: stretched.filter(ImageFilter.UnsharpMask(radius=2, percent=150, threshold=2)),
        lambda: _fit(stretched, 900),
    ]
    if max(gray.size) < 900:
        steps.insert(0, lambda: stretched.resize((gray.width * 2, gray.height * 2),
                                                 Image.Resampling.LANCZOS))
    if gray is not working:
        steps.append(lambda: ImageOps.autocontrast(gray, cutoff=2))  # full resolution
    for step in steps:
        variant = step()
        yield variant, local
        yield variant, histogram
    yield stretched, fixed
