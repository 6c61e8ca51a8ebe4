"""P13.3: what unlinkable pay codes cost, each figure beside today's card-bound pay code.

- QR version and text length of a one-use pay code beside today's pay code;
- the refill: bytes per one-use credential and per batch, beside a refresh bundle;
- verifying a one-use code beside today's pay code and beside 2 bare Ed25519 verifies;
- the authority's refill of N credentials, and of the whole horizon (N per day x 7 days),
  beside one refresh (SQLite, in-process server);
- a day's status lists for a city of 25,000 cards x 5 credentials, as served, beside
  numbered card lists of as many entries, and what a verifier holds with day lists
  retired beside a year of entries kept.
"""

from __future__ import annotations

import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nacl.signing

from bench._table import BenchRow, interleaved_us
from keys import Ed25519Signer, sign_credential, sign_presentation, sign_status_list
from schemas import (
    STATUS_REVOKED,
    STATUS_SUSPENDED,
    Purpose,
    StatusList,
    StatusListClaims,
    StatusRef,
    decode_presentation,
)
from schemas.presentation import holder_proof_message
from schemas.provisioning import refresh_proof_message
from schemas.qr import presentation_qr
from verifier import POLICIES, verify_presentation

_TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path[:0] = [str(_TESTS), str(_TESTS / "payments")]
from support import DEVICE, ISSUER_KEY, NOW, World, credential, one_use_credential  # noqa: E402


def _worst_case_codes() -> tuple[str, str]:
    """Today's pay code and a one-use pay code at the QR budget's worst case
    (tests/schemas/test_qr_size.py): the largest index of a 131,072-entry list, a 16-digit
    card number for today's code, a random 128-bit handle for the one-use code."""
    status = StatusRef("9", 131_071)
    today = sign_credential(credential(Purpose.PAY, status=status), ISSUER_KEY)
    one_use = sign_credential(one_use_credential(status=status, offline_limit_fen=50_000,
                                                 pay_handle=secrets.token_bytes(16)),
                              ISSUER_KEY)
    return (sign_presentation(today, DEVICE, proof_time=NOW, purpose="pay"),
            sign_presentation(one_use, DEVICE, proof_time=NOW, purpose="pay"))


def bench_qr(quick: bool) -> list[BenchRow]:
    today, one_use = _worst_case_codes()
    version = {name: int(presentation_qr(text).version)
               for name, text in (("today", today), ("one_use", one_use))}
    return [
        BenchRow("one-use pay code: QR version (worst case)", version["one_use"], "version",
                 "today's card-bound pay code (worst case)", version["today"]),
        BenchRow("one-use pay code: QR text length", len(one_use), "chars",
                 "today's card-bound pay code", len(today)),
    ]


def bench_verify_one_use(quick: bool) -> list[BenchRow]:
    state = World().state()
    policy = POLICIES["payment"]
    holder = Ed25519Signer(secrets.token_bytes(32), kid="holder")
    one_use_jws = sign_credential(one_use_credential(holder_key=holder.public_key), ISSUER_KEY)
    today_jws = sign_credential(credential(Purpose.PAY), ISSUER_KEY)
    one_use = sign_presentation(one_use_jws, holder, proof_time=NOW, purpose="pay")
    today = sign_presentation(today_jws, DEVICE, proof_time=NOW, purpose="pay")
    for text in (one_use, today):
        assert verify_presentation(text, state=state, policy=policy, now=NOW,
                                   replay_cache=None).ok
    parts = decode_presentation(one_use)
    proof = holder_proof_message(parts.credential_jws, parts.proof_time, "pay")
    issuer_vk = nacl.signing.VerifyKey(ISSUER_KEY.public_key)
    holder_vk = nacl.signing.VerifyKey(holder.public_key)

    def two_bare() -> None:
        issuer_vk.verify(parts.signing_input, parts.signature)
        holder_vk.verify(proof, parts.holder_proof)

    timings = interleaved_us({
        "one_use": lambda: verify_presentation(one_use, state=state, policy=policy, now=NOW,
                                               replay_cache=None),
        "today": lambda: verify_presentation(today, state=state, policy=policy, now=NOW,
                                             replay_cache=None),
        "floor": two_bare,
    }, rounds=5 if quick else 9, number=300 if quick else 2000)
    return [
        BenchRow("verify a one-use pay code (payment policy)", timings["one_use"], "us",
                 "verify today's card-bound pay code", timings["today"]),
        BenchRow("verify a one-use pay code (payment policy) vs bare crypto",
                 timings["one_use"], "us", "2 x bare Ed25519 verify (libsodium via PyNaCl)",
                 timings["floor"]),
    ]


def bench_refill(quick: bool) -> list[BenchRow]:
    """Over HTTP to an in-process authority on SQLite (durable writes relaxed as in tests):
    a refill of N against a refresh of the same card, alternating. Each refill is a new
    card's first (each credential is valid on one day, N a day: a card's horizon fills),
    and the whole horizon, N x 7 days = 35 credentials in two requests (20 + 15)."""
    from one_use_kit import refill_answer
    from payments_kit import pay_world

    rounds = 5 if quick else 15
    with tempfile.TemporaryDirectory() as directory, \
            pay_world("sqlite", Path(directory)) as world:
        horizon = world.settings.pay_offline_per_day * world.settings.one_use_pay_lifetime_days
        samples: dict[str, list[float]] = {"refresh": [], "refill10": [], "refill20": [],
                                           "horizon": []}
        sizes: dict[str, int] = {}
        for _ in range(rounds):
            card = world.card()
            now = world.clock.epoch
            device = card.device
            start = time.perf_counter()
            answer = world.http.post("/v1/wallet/refresh", json={
                "card_number": card.card_number,
                "device_key": _b64(device.public_key), "time": now,
                "proof": _b64(device.sign(refresh_proof_message(
                    card.card_number, device.public_key, now)))})
            samples["refresh"].append(time.perf_counter() - start)
            assert answer.status_code == 200, answer.text
            sizes["refresh"] = len(answer.content)
            for count in (10, 20):
                fresh = world.card()
                start = time.perf_counter()
                answer, batch = refill_answer(world, fresh, count)
                samples[f"refill{count}"].append(time.perf_counter() - start)
                assert answer.status_code == 200 and len(batch) == count, answer.text
                sizes[f"refill{count}"] = len(answer.content)
                sizes[f"credential{count}"] = sum(len(one.credential) for one in batch)
            fresh, got, size = world.card(), 0, 0
            start = time.perf_counter()
            while got < horizon:
                answer, batch = refill_answer(world, fresh, min(20, horizon - got))
                assert answer.status_code == 200 and batch, answer.text
                got, size = got + len(batch), size + len(answer.content)
            samples["horizon"].append(time.perf_counter() - start)
            sizes["horizon"] = size
    ms = {name: statistics.median(values) * 1000 for name, values in samples.items()}
    return [
        BenchRow("refill 10 one-use pay credentials (HTTP, SQLite)", ms["refill10"], "ms",
                 "one wallet refresh of the same card", ms["refresh"]),
        BenchRow("refill 20 one-use pay credentials (HTTP, SQLite)", ms["refill20"], "ms",
                 "one wallet refresh of the same card", ms["refresh"]),
        BenchRow(f"fill the horizon: {horizon} one-use pay credentials (N x 7 days, 2"
                 " refills, HTTP, SQLite)", ms["horizon"], "ms",
                 "one wallet refresh of the same card", ms["refresh"]),
        BenchRow("refill answer, 20 one-use pay credentials", sizes["refill20"] / 1000, "KB",
                 "one wallet refresh answer (pay, id, svc; no portrait)", sizes["refresh"] / 1000),
        BenchRow(f"refill answers for the horizon ({horizon} credentials)",
                 sizes["horizon"] / 1000, "KB",
                 "one wallet refresh answer (pay, id, svc; no portrait)", sizes["refresh"] / 1000),
        BenchRow("one one-use pay credential (compact JWS)", sizes["credential20"] / 20, "bytes",
                 "refill answer bytes per credential (JSON, N = 20)", sizes["refill20"] / 20),
    ]


_CITY_CARDS = 25_000
_PER_DAY = 5
_LIST_SIZE = 131_072  # CARDSVC_STATUS_LIST_SIZE
_FILL = _LIST_SIZE * 3 // 4  # a list closes at 3/4 full


def _served_bytes(entries: int, statuses: list[tuple[float, int]], seed: int) -> int:
    """Bytes of the signed lists (compact JWS, ``lst`` zlib inside) holding ``entries`` at
    random indices, filled list after list to 3/4 as the authority does; each entry gets
    the first status whose share its draw falls under (else valid)."""
    import random

    draw = random.Random(seed)
    total, left, number = 0, entries, 1
    while left > 0:
        bits = StatusList.empty(_LIST_SIZE, bits=2)
        for index in draw.sample(range(_LIST_SIZE), min(left, _FILL)):
            roll = draw.random()
            for share, status in statuses:
                if roll < share:
                    bits.set(index, status)
                    break
                roll -= share
        claims = StatusListClaims(f"p20270115-{number}", "https://yw.example.cn/v1/status-lists/"
                                  f"p20270115-{number}", NOW, NOW + 86_400, 300, bits)
        total += len(sign_status_list(claims, ISSUER_KEY))
        left, number = left - _FILL, number + 1
    return total


def bench_day_lists(quick: bool) -> list[BenchRow]:
    """A day's lists hold the city's cards x N entries; at the day's end each used handle
    is revoked (1). Beside them, numbered card lists of as many entries (1% revoked or
    suspended, the bundles of a large city). Sizes are deterministic (seeded draws)."""
    day = _CITY_CARDS * _PER_DAY
    all_used = _served_bytes(day, [(1.0, STATUS_REVOKED)], 1)
    half_used = _served_bytes(day, [(0.5, STATUS_REVOKED)], 2)
    unused = _served_bytes(day, [], 3)
    cards = _served_bytes(day, [(0.005, STATUS_REVOKED), (0.005, STATUS_SUSPENDED)], 4)
    # Held by a verifier with day lists: yesterday's (in its grace hour), today's half
    # used, the 6 pre-issued days' (unused); without retirement a year of days, all used.
    held = all_used + half_used + 6 * unused
    return [
        BenchRow(f"a day's status lists, {_CITY_CARDS:,} cards x {_PER_DAY} (day's end: all"
                 " used), bytes as served", all_used / 1000, "KB",
                 f"numbered card lists of as many entries ({day:,}, 1% revoked/suspended)",
                 cards / 1000),
        BenchRow(f"a day's status lists, {_CITY_CARDS:,} cards x {_PER_DAY} (mid-day: half"
                 " used), bytes as served", half_used / 1000, "KB",
                 f"numbered card lists of as many entries ({day:,}, 1% revoked/suspended)",
                 cards / 1000),
        BenchRow("one-use status lists a verifier syncs, day lists retired (yesterday,"
                 " today, 6 days ahead)", held / 1e6, "MB",
                 "a year of one-use entries kept in numbered lists (365 days, all used)",
                 365 * all_used / 1e6),
    ]


def _b64(raw: bytes) -> str:
    from schemas import b64url_encode

    return b64url_encode(raw)


def run(quick: bool = False) -> list[BenchRow]:
    return (bench_qr(quick) + bench_verify_one_use(quick) + bench_day_lists(quick)
            + bench_refill(quick))


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
