"""QR output: sizes within budget, PNG geometry, camera-degraded PNGs, terminal drawing."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageFilter
from typer.testing import CliRunner
from wallet_testkit import (
    PIN,
    FakeAuthority,
    assert_fresh_then_stale,
    decode_qr,
    halfblocks_to_image,
)

from keys import Ed25519Signer
from schemas import Purpose
from support import LONG_GIVEN, LONG_SURNAME, NOW
from wallet_sim import MAX_QR_VERSION, Card, Wallet, present, provision, qr_code, qr_png
from wallet_sim.cli import make_app
from wallet_sim.qr import QUIET_ZONE_MODULES, qr_halfblocks

RUNNER = CliRunner()


def long_name_card(authority: FakeAuthority) -> Card:
    code = authority.issue_code(surname=LONG_SURNAME, given_names=LONG_GIVEN)
    return provision(authority.url, code, now=NOW, device=Ed25519Signer.generate())


@pytest.mark.parametrize("purpose", list(Purpose))
def test_versions_within_budget_with_40_character_names(
    authority: FakeAuthority, purpose: Purpose
) -> None:
    text = present(long_name_card(authority), purpose, now=NOW)
    version = qr_code(text).version
    print(f"{purpose.value}: {len(text)} characters, QR version {version} at M")
    assert version <= MAX_QR_VERSION[purpose]


def test_png_geometry_and_quiet_zone(provisioned: tuple[Wallet, Card]) -> None:
    _, card = provisioned
    text = present(card, Purpose.SVC, now=NOW)
    code = qr_code(text)
    image = Image.open(io.BytesIO(qr_png(text)))
    assert image.width == image.height >= 600
    scale = image.width // code.size
    assert image.width == code.size * scale  # whole pixels per module
    quiet = QUIET_ZONE_MODULES * scale
    gray = image.convert("L")
    for box in ((0, 0, image.width, quiet), (0, 0, quiet, image.height),
                (image.width - quiet, 0, image.width, image.height),
                (0, image.height - quiet, image.width, image.height)):
        assert gray.crop(box).getextrema() == (255, 255)  # the quiet zone is all light
    assert gray.getpixel((quiet, quiet)) == 0  # the finder pattern starts right after it
    assert decode_qr(image) == [text]


def degrade(png: bytes, *, angle: float, scale: float, blur: float) -> Image.Image:
    """What a phone camera makes of a screen: smaller, tilted, soft, JPEG at quality 60."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image = image.resize((round(image.width * scale), round(image.height * scale)),
                         Image.Resampling.BILINEAR)
    image = image.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True,
                         fillcolor=(235, 235, 228))
    image = image.filter(ImageFilter.GaussianBlur(blur))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=60)
    return Image.open(io.BytesIO(out.getvalue()))


@pytest.mark.parametrize(
    ("purpose", "angle", "scale", "blur"),
    [(Purpose.PAY, 3.0, 0.7, 1.0), (Purpose.ID, -4.0, 0.8, 1.2), (Purpose.SVC, 5.0, 0.9, 1.5)],
)
def test_show_png_survives_a_camera(
    provisioned: tuple[Wallet, Card], tmp_path: Path, output_dir: Path,
    purpose: Purpose, angle: float, scale: float, blur: float,
) -> None:
    wallet, _ = provisioned
    out = tmp_path / f"{purpose.value}.png"
    result = RUNNER.invoke(make_app(clock=lambda: NOW),
                           ["--wallet", str(wallet.path), "show", "--purpose", purpose.value,
                            "--png", str(out)], env={"FMC_WALLET_PIN": PIN})
    assert result.exit_code == 0, result.output
    seen = degrade(out.read_bytes(), angle=angle, scale=scale, blur=blur)
    seen.save(output_dir / f"degraded-{purpose.value}.jpg")
    (text,) = decode_qr(seen)
    assert_fresh_then_stale(text, purpose, proof_time=NOW)


def test_terminal_drawing_decodes(provisioned: tuple[Wallet, Card]) -> None:
    _, card = provisioned
    text = present(card, Purpose.PAY, now=NOW)
    lines = qr_halfblocks(text)
    size = qr_code(text).size
    assert len(lines) == (size + 1) // 2 and all(len(line) == size for line in lines)
    assert decode_qr(halfblocks_to_image(lines)) == [text]


def test_non_presentation_text_still_encodes() -> None:
    assert qr_code("hello").version == 1
