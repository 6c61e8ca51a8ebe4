"""QR decoding of wallet PNGs and camera-like photos of phone screens, and refusals."""

from __future__ import annotations

import contextlib
import io
import json
import random
import struct
import zlib
from pathlib import Path

import pytest
import qrcode
import zxingcpp
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from schemas import Purpose
from schemas.qr import presentation_qr
from support import NOW, present
from verifier.qr import MAX_IMAGE_BYTES, ScanError, decode_qr, decode_qr_image

PHOTOS_PER_PURPOSE = 24
OUTPUT = Path(__file__).resolve().parents[2] / "test-output"


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _perspective_coefficients(source: list[tuple[float, float]],
                              target: list[tuple[float, float]]) -> list[float]:
    """PIL PERSPECTIVE data mapping output corners ``target`` to input corners ``source``."""
    rows: list[list[float]] = []
    for (x, y), (u, v) in zip(target, source, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y, u])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y, v])
    n = 8
    for col in range(n):  # Gauss-Jordan with partial pivoting
        pivot = max(range(col, n), key=lambda r: abs(rows[r][col]))
        rows[col], rows[pivot] = rows[pivot], rows[col]
        for r in range(n):
            if r != col:
                factor = rows[r][col] / rows[col][col]
                rows[r] = [a - factor * b for a, b in zip(rows[r], rows[col], strict=True)]
    return [rows[i][n] / rows[i][i] for i in range(n)]


def _noise(size: tuple[int, int], rng: random.Random) -> Image.Image:
    """Sensor noise from the seeded generator (PIL's effect_noise is not reproducible)."""
    return Image.frombytes("L", size, rng.randbytes(size[0] * size[1]))


def camera_photo(text: str, rng: random.Random) -> bytes:
    """A phone screen showing the QR, photographed: tilt, rotation, blur, glare, noise, JPEG."""
    qr = presentation_qr(text, box_size=rng.randint(4, 8)).make_image().get_image().convert("L")
    # The phone: a light screen with some app chrome around the code, in a dark bezel.
    screen = Image.new("L", (int(qr.width * 1.15), int(qr.height * 1.6)), rng.randint(235, 255))
    screen.paste(qr, ((screen.width - qr.width) // 2, int(qr.height * 0.35)))
    ImageDraw.Draw(screen).rectangle((0, 0, screen.width, int(qr.height * 0.12)), fill=90)
    phone = Image.new("L", (screen.width + 40, screen.height + 80), 20)
    phone.paste(screen, (20, 40))
    # The desk and the counter's camera frame.
    frame = Image.new("L", (int(phone.width * 1.7), int(phone.height * 1.25)), rng.randint(60, 170))
    frame.paste(phone, ((frame.width - phone.width) // 2 + rng.randint(-30, 30),
                        (frame.height - phone.height) // 2 + rng.randint(-20, 20)))
    frame = frame.rotate(rng.uniform(-15, 15), resample=Image.Resampling.BICUBIC,
                         fillcolor=rng.randint(60, 170))
    w, h = frame.size
    jitter = 0.07
    corners = [(0.0, 0.0), (w, 0.0), (w, h), (0.0, h)]
    moved = [(x + rng.uniform(-jitter, jitter) * w, y + rng.uniform(-jitter, jitter) * h)
             for x, y in corners]
    frame = frame.transform((w, h), Image.Transform.PERSPECTIVE,
                            _perspective_coefficients(moved, corners),
                            resample=Image.Resampling.BICUBIC, fillcolor=100)
    # Camera resolution: the code ends up between ~2.5 and ~5 pixels per module.
    scale = rng.uniform(0.55, 0.95)
    frame = frame.resize((int(w * scale), int(h * scale)), Image.Resampling.BILINEAR)
    frame = frame.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.3)))
    frame = ImageEnhance.Contrast(frame).enhance(rng.uniform(0.45, 0.95))
    frame = ImageEnhance.Brightness(frame).enhance(rng.uniform(0.75, 1.25))
    glare = (Image.linear_gradient("L")
             .rotate(rng.uniform(0, 360), resample=Image.Resampling.BICUBIC)
             .resize(frame.size, Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(8)))
    frame = Image.composite(Image.new("L", frame.size, 255), frame,
                            glare.point(lambda p: int(p * rng.uniform(0.1, 0.3))))
    frame = Image.blend(frame, _noise(frame.size, rng), rng.uniform(0.06, 0.12))
    tint = (rng.uniform(0.85, 1.0), rng.uniform(0.9, 1.0), 1.0)  # a bluish screen
    color = Image.merge("RGB", [frame.point(lambda p, t=t: int(p * t)) for t in tint])
    out = io.BytesIO()
    color.save(out, "JPEG", quality=rng.randint(50, 70))
    return out.getvalue()


@pytest.mark.parametrize("purpose", list(Purpose))
def test_camera_photos_decode(purpose: Purpose) -> None:
    rng = random.Random(f"camera-{purpose.value}")
    decoded = 0
    for i in range(PHOTOS_PER_PURPOSE):
        text = present(purpose, proof_time=NOW + i)
        photo = camera_photo(text, rng)
        if i == 0:
            OUTPUT.mkdir(exist_ok=True)
            (OUTPUT / f"camera-{purpose.value}.jpg").write_bytes(photo)
        with contextlib.suppress(ScanError):
            decoded += decode_qr(photo) == text
    rate = decoded / PHOTOS_PER_PURPOSE
    OUTPUT.mkdir(exist_ok=True)
    (OUTPUT / f"qr-decode-rate-{purpose.value}.json").write_text(
        json.dumps({"purpose": purpose.value, "photos": PHOTOS_PER_PURPOSE, "decoded": decoded}))
    assert rate >= 0.95, f"{purpose}: {decoded}/{PHOTOS_PER_PURPOSE}"


@pytest.mark.parametrize("purpose", list(Purpose))
def test_wallet_png_decodes(purpose: Purpose) -> None:
    text = present(purpose)
    png = _png(presentation_qr(text).make_image().get_image())
    assert decode_qr(png) == text


@pytest.mark.parametrize("angle", [90, 180, 270])
def test_turned_pictures_decode(angle: int) -> None:
    text = present(Purpose.ID)
    image = presentation_qr(text, box_size=4).make_image().get_image().convert("L")
    assert decode_qr(_png(image.rotate(angle, expand=True))) == text


def test_transparent_png_decodes() -> None:
    text = present(Purpose.PAY)
    mask = presentation_qr(text, box_size=4).make_image().get_image().convert("L")
    # Black modules on a fully transparent background (how some apps export codes).
    rgba = Image.new("RGBA", mask.size, (0, 0, 0, 0))
    rgba.putalpha(mask.point(lambda p: 255 - p))
    assert decode_qr(_png(rgba)) == text


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


@pytest.mark.parametrize(("picture", "code"), [
    pytest.param(_png_header_only(20_000, 20_000), "IMAGE_TOO_LARGE", id="400-megapixel-header"),
    pytest.param(_png_header_only(9000, 6000), "IMAGE_TOO_LARGE", id="54-megapixel-header"),
    pytest.param(b"\x89PNG" + b"\x00" * (MAX_IMAGE_BYTES), "IMAGE_TOO_LARGE", id="too-many-bytes"),
    pytest.param(b"this is not a picture", "IMAGE_UNREADABLE", id="text"),
    pytest.param(b"\xff\xd8\xff\xe0" + b"\x00" * 40, "IMAGE_UNREADABLE", id="truncated-jpeg"),
    pytest.param(_png(Image.new("L", (400, 300), 255)), "QR_NOT_FOUND", id="blank"),
    pytest.param(_png(Image.new("L", (10, 10), 0)), "QR_NOT_FOUND", id="tiny"),
])
def test_refusals_have_codes(picture: bytes, code: str) -> None:
    with pytest.raises(ScanError) as refused:
        decode_qr(picture)
    assert refused.value.code == code


def test_another_qr_code_is_returned_for_the_check_to_refuse() -> None:
    image = qrcode.make("https://example.com/not-a-card").get_image()
    assert decode_qr(_png(image)) == "https://example.com/not-a-card"


def _low_contrast_picture(text: str, rng: random.Random) -> bytes:
    image = presentation_qr(text, box_size=rng.randint(3, 6)).make_image().get_image().convert("L")
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0)))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.1, 0.4))
    image = Image.blend(image, _noise(image.size, rng), rng.uniform(0.1, 0.3))
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=40)
    return out.getvalue()


def test_the_fallbacks_read_what_one_plain_pass_misses() -> None:
    rng = random.Random(1)
    plain = ours = 0
    for i in range(24):
        text = present(Purpose.SVC, proof_time=NOW + i)
        picture = _low_contrast_picture(text, rng)
        plain += any(barcode.text == text for barcode in zxingcpp.read_barcodes(
            Image.open(io.BytesIO(picture)), formats=zxingcpp.BarcodeFormat.QRCode))
        with contextlib.suppress(ScanError):
            ours += decode_qr(picture) == text
    assert ours >= plain + 2


def test_the_card_code_wins_over_another_code_in_the_picture() -> None:
    text = present(Purpose.ID)
    card = presentation_qr(text, box_size=4).make_image().get_image().convert("L")
    other = qrcode.make("WIFI:S:counter;;", box_size=4).get_image().convert("L")
    both = Image.new("L", (card.width + other.width + 40, card.height), 255)
    both.paste(other, (0, 0))
    both.paste(card, (other.width + 40, 0))
    assert decode_qr_image(both) == text
