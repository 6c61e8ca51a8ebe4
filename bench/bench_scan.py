"""P4: picture to answer at a counter (QR decode + verify), beside zxing-cpp's decode alone
and the bare verify, measured in the same run on the same pictures.

Rows (microseconds per picture, median over rounds of the mean over all pictures):
- wallet PNG -> answer (verifier.checkpoint: decode_qr + verify + SQLite replay store)
  beside zxing-cpp read_barcodes alone on the same PNG bytes (PIL open included), and
  beside the bare verify_presentation of the same texts (in-memory replay cache);
- camera-like JPEG photo -> answer beside zxing-cpp alone on the same photo;
- text -> answer through the checkpoint (cache + SQLite replay) beside the bare verify.
"""

from __future__ import annotations

import io
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import zxingcpp
from PIL import Image

from bench._table import BenchRow
from schemas import Purpose
from schemas.qr import presentation_qr
from verifier import POLICIES, MemoryReplayCache, verify_presentation
from verifier.cache import CacheContents, CachedList, VerifierCache
from verifier.checkpoint import Checkpoint

_TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path[:0] = [str(_TESTS), str(_TESTS / "verifier")]
from support import NOW, ROOT_FINGERPRINT, World, present  # noqa: E402, I001
from test_qr import camera_photo  # noqa: E402


def _png(text: str) -> bytes:
    out = io.BytesIO()
    presentation_qr(text).make_image().save(out)  # the wallet's default: 10 px per module
    return out.getvalue()


def _zxing_alone(picture: bytes) -> bool:
    return bool(zxingcpp.read_barcodes(Image.open(io.BytesIO(picture)),
                                       formats=zxingcpp.BarcodeFormat.QRCode))


class _Counter:
    """A checkpoint over a synced cache whose replay store is emptied between rounds."""

    def __init__(self, directory: Path) -> None:
        world = World()
        self.cache = VerifierCache(directory)
        self.cache.store(CacheContents(
            root_fingerprint=ROOT_FINGERPRINT, server=None, synced_at=NOW,
            trust_list=CachedList(world.trust_list_jwt()),
            status_lists={"1": CachedList(world.status_list_jwt())}))
        self.checkpoint = Checkpoint(self.cache)

    def fresh(self) -> Checkpoint:
        self.checkpoint.close()
        for suffix in ("", "-wal", "-shm"):
            Path(str(self.cache.replay_path) + suffix).unlink(missing_ok=True)
        self.checkpoint = Checkpoint(self.cache)
        return self.checkpoint


def _per_item_us(setup: Callable[[], Callable[[], None]], count: int) -> float:
    run_all = setup()  # not timed: a fresh replay store, the cache loaded, caches warm
    start = time.perf_counter()
    run_all()
    return (time.perf_counter() - start) / count * 1e6


def run(quick: bool = False) -> list[BenchRow]:
    count = 8 if quick else 30
    rounds = 3 if quick else 7
    texts = [present(Purpose.SVC, proof_time=NOW - i) for i in range(count)]
    pngs = [_png(text) for text in texts]
    rng = random.Random("bench-scan")
    photos = [camera_photo(text, rng) for text in texts]
    state = World().state()
    policy = POLICIES["hospital"]

    with tempfile.TemporaryDirectory(prefix="bench-scan-") as temp:
        counter = _Counter(Path(temp) / "cache")
        checkpoint = counter.fresh()
        assert all(checkpoint.check_image(p, service="hospital", now=NOW).ok for p in pngs)
        assert all(_zxing_alone(p) for p in pngs)
        zxing_photo_ok = sum(_zxing_alone(p) for p in photos)
        checkpoint = counter.fresh()
        photo_ok = sum(checkpoint.check_image(p, service="hospital", now=NOW).ok
                       for p in photos)

        warm_up = present(Purpose.SVC, proof_time=NOW - count - 1)

        def checks(pictures: list[bytes] | None) -> Callable[[], None]:
            checkpoint = counter.fresh()
            checkpoint.check_text(warm_up, service="hospital", now=NOW)  # loads the cache

            def run_all() -> None:
                if pictures is None:
                    for text in texts:
                        checkpoint.check_text(text, service="hospital", now=NOW)
                else:
                    for picture in pictures:
                        checkpoint.check_image(picture, service="hospital", now=NOW)
            return run_all

        def bare_verify() -> Callable[[], None]:
            replay = MemoryReplayCache()

            def run_all() -> None:
                for text in texts:
                    verify_presentation(text, state=state, policy=policy, now=NOW,
                                        replay_cache=replay)
            return run_all

        def zxing(pictures: list[bytes]) -> Callable[[], None]:
            def run_all() -> None:
                for picture in pictures:
                    _zxing_alone(picture)
            return run_all

        variants: dict[str, Callable[[], Callable[[], None]]] = {
            "png": lambda: checks(pngs), "photo": lambda: checks(photos),
            "text": lambda: checks(None), "bare": bare_verify,
            "zxing_png": lambda: zxing(pngs), "zxing_photo": lambda: zxing(photos),
        }
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(rounds):  # interleaved so machine noise hits every variant alike
            for name, setup in variants.items():
                samples[name].append(_per_item_us(setup, count))
        counter.checkpoint.close()
    us = {name: statistics.median(values) for name, values in samples.items()}
    return [
        BenchRow("scan: wallet PNG -> answer (decode + verify + SQLite replay)", us["png"], "us",
                 "zxing-cpp decode alone (same PNG)", us["zxing_png"]),
        BenchRow("scan: wallet PNG -> answer (decode + verify + SQLite replay)", us["png"], "us",
                 "bare verify_presentation (memory replay)", us["bare"]),
        BenchRow(f"scan: camera JPEG -> answer ({photo_ok}/{count} accepted)", us["photo"], "us",
                 f"zxing-cpp decode alone (same photo, {zxing_photo_ok}/{count} found)",
                 us["zxing_photo"]),
        BenchRow("scan: text -> answer (cache + SQLite replay)", us["text"], "us",
                 "bare verify_presentation (memory replay)", us["bare"]),
    ]
