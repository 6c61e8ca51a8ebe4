"""P1: offline verification, status-list building, credential signing; each beside its floor."""

from __future__ import annotations

import hashlib
import secrets
import sys
import time
import zlib
from pathlib import Path

import jwt as pyjwt
import nacl.signing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bench._table import BenchRow, interleaved_us
from keys import Ed25519Signer, sign_compact, sign_credential, sign_presentation, sign_status_list
from schemas import Purpose, StatusList, StatusListClaims, StatusRef, decode_presentation
from schemas.presentation import holder_proof_message
from verifier import POLICIES, MemoryReplayCache, verify_presentation

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support import DEVICE, ISSUER_KEY, NOW, World, credential


def _presentations(count_cards: int) -> list[str]:
    texts = []
    for card in range(count_cards):
        jws = sign_credential(
            credential(Purpose.SVC, card_number=f"33000123{card:08d}",
                       status=StatusRef("1", 1000 + card)),
            ISSUER_KEY,
        )
        texts.extend(
            sign_presentation(jws, DEVICE, proof_time=NOW - age, purpose="svc")
            for age in range(60)
        )
    return texts


def bench_verify(quick: bool) -> list[BenchRow]:
    state = World().state()
    policy = POLICIES["hospital"]
    texts = _presentations(5 if quick else 40)
    number = len(texts)
    caches = iter([MemoryReplayCache() for _ in range(64)])
    position = {"i": 0, "cache": next(caches)}

    def verify_one() -> object:
        i = position["i"]
        if i == number:  # a new round: the same presentations with an empty replay cache
            position["i"] = i = 0
            position["cache"] = next(caches)
        position["i"] = i + 1
        result = verify_presentation(texts[i], state=state, policy=policy, now=NOW,
                                     replay_cache=position["cache"])  # type: ignore[arg-type]
        return result

    assert verify_one().ok  # type: ignore[attr-defined]
    position["i"] = number  # restart with a fresh cache
    # The floor: PyNaCl's own verify on prebuilt keys, over the very messages our path
    # verifies for each presentation (its JWS signing input and its holder-proof message),
    # cycling through them in the same order so both loops touch the same data.
    messages = []
    for text in texts:
        parts = decode_presentation(text)
        proof_message = holder_proof_message(parts.credential_jws, parts.proof_time, "svc")
        messages.append((parts.signing_input, parts.signature, proof_message,
                         parts.holder_proof))
    issuer_pub, holder_pub = ISSUER_KEY.public_key, DEVICE.public_key
    issuer_vk, holder_vk = nacl.signing.VerifyKey(issuer_pub), nacl.signing.VerifyKey(holder_pub)
    floor_position = {"i": 0}

    def two_bare_verifies() -> None:
        i = floor_position["i"]
        floor_position["i"] = (i + 1) % number
        signing_input, signature, proof_message, holder_proof = messages[i]
        issuer_vk.verify(signing_input, signature)
        holder_vk.verify(proof_message, holder_proof)

    parts = decode_presentation(texts[0])
    signing_input = parts.signing_input
    crypto_key = Ed25519PublicKey.from_public_bytes(issuer_pub)
    plain_token = sign_compact({"alg": "EdDSA", "typ": "JWT"}, b'{"sub":"x"}', ISSUER_KEY)
    pyjwt_key = crypto_key

    timings = interleaved_us(
        {
            "ours": verify_one,
            "floor": two_bare_verifies,
            "crypto": lambda: crypto_key.verify(parts.signature, signing_input),
            "pyjwt": lambda: pyjwt.decode(plain_token, pyjwt_key, algorithms=["EdDSA"]),
        },
        rounds=5 if quick else 9,
        number=number if not quick else 300,
    )
    return [
        BenchRow("verify presentation end to end (svc, hospital)", timings["ours"], "us",
                 "2 x bare Ed25519 verify (libsodium via PyNaCl)", timings["floor"]),
        BenchRow("peer: cryptography Ed25519 verify (1 signature)", timings["crypto"], "us",
                 "1 x bare Ed25519 verify (libsodium via PyNaCl)", timings["floor"] / 2),
        BenchRow("peer: PyJWT decode of an EdDSA JWT (1 signature)", timings["pyjwt"], "us",
                 "1 x bare Ed25519 verify (libsodium via PyNaCl)", timings["floor"] / 2),
    ]


def bench_status_list(quick: bool) -> list[BenchRow]:
    size = 1_000_000
    rng = secrets.SystemRandom()
    revoked = rng.sample(range(size), size // 100)
    signer = Ed25519Signer.generate(kid="k1")
    best_total = best_compress = float("inf")
    compressed_size = 0
    for _ in range(2 if quick else 5):
        start = time.perf_counter()
        statuses = StatusList.empty(size, bits=2)
        for index in revoked:
            statuses.set(index, 1)
        token = sign_status_list(
            StatusListClaims("1", "https://fmc.example/v1/status-lists/1", NOW, NOW + 86400,
                             300, statuses),
            signer,
        )
        best_total = min(best_total, time.perf_counter() - start)
        raw = bytes(statuses.raw)
        start = time.perf_counter()
        compressed = zlib.compress(raw, 9)
        best_compress = min(best_compress, time.perf_counter() - start)
        compressed_size = len(compressed)
        assert token
    return [
        BenchRow("status list 1,000,000 entries 1% revoked: build + sign", best_total * 1000,
                 "ms", "zlib.compress of the same bits alone", best_compress * 1000),
        BenchRow("status list 1,000,000 entries 1% revoked: compressed size",
                 compressed_size / 1000, "KB", "IETF draft published size (1,000,000 entries, 1%)",
                 14.0),
    ]


def bench_signing(quick: bool) -> list[BenchRow]:
    signer = ISSUER_KEY
    bundle = [credential(p) for p in Purpose]
    message = hashlib.sha256(b"x").digest() * 10

    def sign_bundle() -> None:
        for claims in bundle:
            sign_credential(claims, signer)

    timings = interleaved_us(
        {"bundle": sign_bundle, "bare": lambda: signer.sign(message)},
        rounds=5 if quick else 9, number=100 if quick else 1000,
    )
    per_credential_us = timings["bundle"] / 3
    return [
        BenchRow("sign bundle of 3 credentials: credentials/s/core", 1e6 / per_credential_us,
                 "cred/s", "bare Ed25519 signatures/s/core", 1e6 / timings["bare"]),
    ]


def run(quick: bool = False) -> list[BenchRow]:
    return bench_verify(quick) + bench_status_list(quick) + bench_signing(quick)
