"""P8.6: a picture cannot exhaust a counter.

Every image input (library, ``verifier check --image``, ``verifier check -``, the counter
page's upload and its camera-frame decode) bounds bytes and pixels before decoding and
reads only what a camera or screenshot produces. One test per attack; each asserts the
code and that the answer came without decoding the bomb."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from schemas import Purpose
from schemas.qr import presentation_qr
from support import NOW, ROOT_FINGERPRINT, World, present
from verifier.cache import CacheContents, CachedList, VerifierCache
from verifier.checkpoint import Checkpoint
from verifier.cli import app as verifier_cli
from verifier.qr import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, ScanError, decode_qr
from verifier.web import create_app


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    world = World()
    VerifierCache(tmp_path / "cache").store(CacheContents(
        root_fingerprint=ROOT_FINGERPRINT, server="http://127.0.0.1:9", synced_at=NOW,
        trust_list=CachedList(world.trust_list_jwt(), '"t"'),
        status_lists={"1": CachedList(world.status_list_jwt(), '"s"')},
    ))
    return tmp_path / "cache"


def _check(cache_dir: Path, *args: str, stdin: bytes | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(verifier_cli, [
        "--cache", str(cache_dir), "check", "--as", "hospital", "--at", "2027-01-15T08:00:00Z",
        "--json", *args], input=stdin)
    return result.exit_code, result.output


def _chunk(kind: bytes, body: bytes) -> bytes:
    return (struct.pack(">I", len(body)) + kind + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))


def _png_bomb(side: int) -> bytes:
    """A real, complete RGBA PNG of side x side transparent pixels: small on disk
    (~190 KB for 7000x7000), 196 MB once decoded."""
    squeeze = zlib.compressobj(9)
    row = b"\x00" + b"\x00" * (side * 4)
    body = b"".join(squeeze.compress(row) for _ in range(side)) + squeeze.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", body)
            + _chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def png_bomb() -> bytes:
    return _png_bomb(7000)


def _encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def test_the_7000px_png_bomb_is_small_on_disk_and_refused(png_bomb: bytes) -> None:
    assert len(png_bomb) < 400_000 and MAX_IMAGE_PIXELS < 7000 * 7000
    with pytest.raises(ScanError) as refused:
        decode_qr(png_bomb)
    assert refused.value.code == "IMAGE_TOO_LARGE"


def test_the_png_bomb_through_verifier_check(cache_dir: Path, tmp_path: Path,
                                             png_bomb: bytes) -> None:
    picture = tmp_path / "bomb.png"
    picture.write_bytes(png_bomb)
    exit_code, output = _check(cache_dir, "--image", str(picture))
    assert exit_code == 1 and json.loads(output)["code"] == "IMAGE_TOO_LARGE"


def test_the_png_bomb_on_stdin(cache_dir: Path, png_bomb: bytes) -> None:
    exit_code, output = _check(cache_dir, "-", stdin=png_bomb)
    assert exit_code == 1 and json.loads(output)["code"] == "IMAGE_TOO_LARGE"


@pytest.fixture
def counter(cache_dir: Path) -> TestClient:
    return TestClient(create_app(Checkpoint(VerifierCache(cache_dir)), clock=lambda: NOW))


def test_the_png_bomb_uploaded_to_the_counter_page(counter: TestClient, png_bomb: bytes) -> None:
    answer = counter.post("/api/check", data={"service": "counter"},
                          files={"image": ("bomb.png", png_bomb, "image/png")}).json()
    assert answer["ok"] is False and answer["code"] == "IMAGE_TOO_LARGE"


def test_the_png_bomb_as_a_camera_frame(counter: TestClient, png_bomb: bytes) -> None:
    answer = counter.post("/api/decode", files={"image": ("frame.png", png_bomb, "image/png")})
    assert answer.status_code == 422 and answer.json()["code"] == "IMAGE_TOO_LARGE"


def test_too_many_bytes_are_refused_before_reading(counter: TestClient) -> None:
    answer = counter.post("/api/decode", files={
        "image": ("big.jpg", b"\xff\xd8\xff" + b"\x00" * (MAX_IMAGE_BYTES + 10), "image/jpeg")})
    assert answer.status_code == 413 and answer.json()["code"] == "IMAGE_TOO_LARGE"


def test_a_jpeg_header_promising_a_gigapixel_is_refused() -> None:
    # A tiny JPEG whose SOF0 header is rewritten to 30000 x 30000.
    jpeg = bytearray(_encoded(Image.new("L", (64, 64), 255), "JPEG"))
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5:sof + 9] = struct.pack(">HH", 30000, 30000)
    with pytest.raises(ScanError) as refused:
        decode_qr(bytes(jpeg))
    assert refused.value.code == "IMAGE_TOO_LARGE"


def test_a_large_camera_jpeg_is_scaled_while_decoding_and_still_scans() -> None:
    # 24 MP, above the pixel cap: libjpeg's draft mode decodes it at a fraction.
    text = present(Purpose.ID)
    code = presentation_qr(text, box_size=20).make_image().get_image().convert("L")
    photo = Image.new("L", (6000, 4000), 235)
    photo.paste(code, (1500, 800))
    assert MAX_IMAGE_PIXELS < 6000 * 4000
    assert decode_qr(_encoded(photo, "JPEG", quality=80)) == text


def test_an_animation_is_read_one_frame_only() -> None:
    text = present(Purpose.PAY)
    first = presentation_qr(text, box_size=4).make_image().get_image().convert("L")
    frames = [Image.new("L", first.size, shade % 256) for shade in range(500)]
    gif = _encoded(first, "GIF", save_all=True, append_images=frames, duration=1)
    assert decode_qr(gif) == text


@pytest.mark.parametrize("fmt", ["TIFF", "ICO", "PPM", "TGA"])
def test_formats_no_camera_produces_are_not_decoded(fmt: str) -> None:
    picture = _encoded(Image.new("L", (64, 64), 255), fmt)
    with pytest.raises(ScanError) as refused:
        decode_qr(picture)
    assert refused.value.code == "IMAGE_UNREADABLE"
