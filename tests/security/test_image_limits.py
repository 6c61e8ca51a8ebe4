"""P8.6: images cannot exhaust a counter. Every picture is refused by its byte count and
its header's pixel count before any pixel is decoded; odd formats, animations, bombs in
metadata chunks and truncated files get a code, never a traceback or a gigabyte."""

from __future__ import annotations

import io
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
from verifier.cli import EXIT_REFUSED, app
from verifier.qr import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, ScanError, decode_qr
from verifier.web import create_app

runner = CliRunner()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return (struct.pack(">I", len(body)) + kind + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))


def _png_bomb(width: int, height: int, *, extra: bytes = b"") -> bytes:
    """A complete 1-bit PNG of ``width`` x ``height`` white-free pixels, a few KB on disk."""
    row = b"\x00" * (1 + (width + 7) // 8)
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + extra + _chunk(b"IDAT", idat)
            + _chunk(b"IEND", b""))


def _saved(image: Image.Image, kind: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=kind, **options)
    return out.getvalue()


def _many_frame_gif(frames: int) -> bytes:
    pictures = [Image.new("L", (64, 64), shade % 256) for shade in range(frames)]
    return _saved(pictures[0], "GIF", save_all=True, append_images=pictures[1:], duration=1)


_ZTXT_BOMB = _chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"A" * 64_000_000, 9))
_ICCP_BOMB = _chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(b"\x00" * 64_000_000, 9))


def _scan_code(picture: bytes) -> str:
    with pytest.raises(ScanError) as refused:
        decode_qr(picture)
    return refused.value.code


def test_attack_7000x7000_png_bomb_is_refused_before_decoding() -> None:
    picture = _png_bomb(7000, 7000)
    assert len(picture) < 200_000
    assert _scan_code(picture) == "IMAGE_TOO_LARGE"


def test_attack_picture_just_above_the_pixel_cap() -> None:
    side = int(MAX_IMAGE_PIXELS ** 0.5) + 1
    assert _scan_code(_png_bomb(side, side)) == "IMAGE_TOO_LARGE"


def test_attack_billion_pixel_header_with_a_tiny_body() -> None:
    ihdr = struct.pack(">IIBBBBB", 2**31 - 1, 2**31 - 1, 8, 6, 0, 0, 0)
    picture = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IEND", b"")
    assert _scan_code(picture) == "IMAGE_TOO_LARGE"


def test_attack_oversized_bytes_are_refused_unread() -> None:
    assert _scan_code(b"\x89PNG\r\n\x1a\n" + bytes(MAX_IMAGE_BYTES)) == "IMAGE_TOO_LARGE"


def test_attack_gif_with_thousands_of_frames_decodes_only_the_first() -> None:
    assert _scan_code(_many_frame_gif(3000)) == "QR_NOT_FOUND"


@pytest.mark.parametrize("extra", [
    pytest.param(_ZTXT_BOMB, id="64MB-zTXt-chunk"),
    pytest.param(_ICCP_BOMB, id="64MB-iCCP-chunk"),
])
def test_attack_png_metadata_chunk_bomb(extra: bytes) -> None:
    assert _scan_code(_png_bomb(200, 200, extra=extra)) in ("QR_NOT_FOUND", "IMAGE_UNREADABLE")


@pytest.mark.parametrize("kind", ["TIFF", "ICO", "PPM", "TGA", "PCX"])
def test_attack_format_no_camera_produces_is_unreadable(kind: str) -> None:
    picture = _saved(Image.new("RGB", (200, 200), (255, 255, 255)), kind)
    assert _scan_code(picture) == "IMAGE_UNREADABLE"


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9])
def test_attack_truncated_picture(cut: float) -> None:
    picture = _saved(Image.new("L", (400, 400), 255), "PNG")
    assert _scan_code(picture[:int(len(picture) * cut)]) in ("QR_NOT_FOUND", "IMAGE_UNREADABLE")


@pytest.fixture
def cache(tmp_path: Path) -> VerifierCache:
    world = World()
    cache = VerifierCache(tmp_path / "cache")
    cache.store(CacheContents(
        root_fingerprint=ROOT_FINGERPRINT, server="http://127.0.0.1:9", synced_at=NOW,
        trust_list=CachedList(world.trust_list_jwt(), '"t"'),
        status_lists={"1": CachedList(world.status_list_jwt(), '"s"')},
    ))
    return cache


def test_attack_bomb_on_the_counter_page_camera_frame(cache: VerifierCache) -> None:
    client = TestClient(create_app(Checkpoint(cache), clock=lambda: NOW))
    response = client.post("/api/decode",
                           files={"image": ("frame.png", _png_bomb(7000, 7000), "image/png")})
    assert response.status_code == 422
    assert response.json()["code"] == "IMAGE_TOO_LARGE"


def test_attack_bomb_on_the_counter_page_upload(cache: VerifierCache) -> None:
    client = TestClient(create_app(Checkpoint(cache), clock=lambda: NOW))
    answer = client.post("/api/check", data={"service": "counter"},
                         files={"image": ("card.png", _png_bomb(7000, 7000), "image/png")})
    refusal = answer.json()
    assert answer.status_code == 200  # a refusal like any other picture without a code
    assert (refusal["ok"], refusal["scan_error"]) == (False, "IMAGE_TOO_LARGE")


def test_attack_bomb_on_the_cli(cache: VerifierCache, tmp_path: Path) -> None:
    picture = tmp_path / "bomb.png"
    picture.write_bytes(_png_bomb(7000, 7000))
    result = runner.invoke(app, ["--cache", str(cache.directory), "check", "--as", "counter",
                                 "--at", "2027-01-15T08:00:00Z", "--image", str(picture)])
    assert result.exit_code in (EXIT_REFUSED, 2) and "IMAGE_TOO_LARGE" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def _jpeg(image: Image.Image, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", **options)
    return out.getvalue()


def test_attack_jpeg_header_promising_a_gigapixel() -> None:
    # A tiny JPEG whose SOF0 header is rewritten to 30000 x 30000.
    jpeg = bytearray(_jpeg(Image.new("L", (64, 64), 255)))
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5:sof + 9] = struct.pack(">HH", 30000, 30000)
    assert _scan_code(bytes(jpeg)) == "IMAGE_TOO_LARGE"


def test_a_large_camera_jpeg_is_scaled_while_decoding_and_still_scans() -> None:
    # 24 MP, above the pixel cap: libjpeg's draft mode decodes it at half size.
    text = present(Purpose.ID)
    code = presentation_qr(text, box_size=20).make_image().get_image().convert("L")
    photo = Image.new("L", (6000, 4000), 235)
    photo.paste(code, (1500, 800))
    assert MAX_IMAGE_PIXELS < 6000 * 4000
    assert decode_qr(_jpeg(photo, quality=80)) == text
