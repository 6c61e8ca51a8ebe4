"""P10: a verifier pinned to the national root, synced to 1, 2, 10 and 50 simulated cities.

For each size: the first sync over real HTTP from a local server (the federation list and
every city's status list index and list), the cache size on disk, and the time to verify
one presentation of the last city's card. Each beside its single-city figure measured in
the same run: today's `verifier sync` of one city (trust list + one status list) from the
same server, that cache's size, and the same presentation checked by a verifier pinned
to that one city (goal: verify within 1.05x).

The cities are simulated in process (keys made here, lists signed here); only the sync
goes over HTTP.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from bench._table import BenchRow, interleaved_us
from keys import Ed25519Signer, jwk_thumbprint, public_jwk, sign_credential, sign_presentation
from keys.jws import sign_federation_list, sign_status_list, sign_trust_list
from schemas import IssuerKey, KeyState, Purpose, StatusList, StatusListClaims, StatusRef
from schemas.federation import FederationClaims, IssuerEntry, IssuerState, SequenceBlock
from schemas.trust_list import TrustListClaims
from verifier import POLICIES, verify_presentation
from verifier.cache import VerifierCache
from verifier.federation_sync import sync_federation
from verifier.sync import sync_cache
from verifier.trust import VerifierState

_TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path[:0] = [str(_TESTS)]
from kit.net import serving  # noqa: E402

from support import DAY, DEVICE, NOW, credential  # noqa: E402

SIZES = (1, 2, 10, 50)
_STATUS_ENTRIES = 131_072
_NATIONAL = Ed25519Signer(bytes(range(100, 132)), kid="national-root")


@dataclass(frozen=True)
class _City:
    code: str
    root: Ed25519Signer
    key: Ed25519Signer  # active
    spare: Ed25519Signer  # next
    status_jwt: str

    def entry(self, base: str, index: int, block: int) -> IssuerEntry:
        keys = (IssuerKey(self.key.kid, self.key.public_key, KeyState.ACTIVE, NOW - 30 * DAY),
                IssuerKey(self.spare.kid, self.spare.public_key, KeyState.NEXT, NOW - DAY))
        return IssuerEntry(self.code, f"City {index}", f"城市{index}", IssuerState.ACTIVE,
                           self.root.public_key, keys, f"{base}/{self.code}/v1/status-lists",
                           f"{base}/{self.code}", (SequenceBlock(index * block + 1,
                                                                 index * block + block),), 1)


def _city(index: int) -> _City:
    seed = index.to_bytes(2, "big") * 16
    code = f"CN-C{index:02d}"
    key = Ed25519Signer(bytes(b ^ 1 for b in seed), kid=f"c{index}k1")
    statuses = StatusList.empty(_STATUS_ENTRIES)
    for revoked in range(0, _STATUS_ENTRIES, 100):  # 1% revoked
        statuses.set(revoked, 1)
    status = StatusListClaims("1", f"https://{code.lower()}.example.cn/v1/status-lists/1",
                              NOW - 60, NOW + DAY, 3600, statuses)
    return _City(code, Ed25519Signer(seed, kid="root"), key,
                 Ed25519Signer(bytes(b ^ 2 for b in seed), kid=f"c{index}k2"),
                 sign_status_list(status, key))


def _app(files: dict[str, str]) -> Starlette:
    async def any_path(request: Request) -> Response:
        body = files.get(request.url.path)
        if body is None:
            return PlainTextResponse("not here", status_code=404)
        return PlainTextResponse(body)
    return Starlette(routes=[Route("/{path:path}", any_path)])


def _publish(files: dict[str, str], base: str, cities: list[_City]) -> None:
    block = 999 // len(cities)
    claims = FederationClaims("CN", 1, NOW - 60, NOW + 7 * DAY,
                              tuple(c.entry(base, i, block) for i, c in enumerate(cities)))
    files["/v1/federation-list"] = sign_federation_list(claims, _NATIONAL)


def _size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file()
               and p.name not in ("replay.sqlite", ".sync.lock"))


def _timed_sync(sync: object, rounds: int) -> tuple[float, int]:
    """Best first-sync time (ms) into a fresh cache, and that cache's size (bytes)."""
    best, size = float("inf"), 0
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            cache = VerifierCache(Path(tmp) / "cache")
            start = time.perf_counter()
            sync(cache)  # type: ignore[operator]
            best = min(best, time.perf_counter() - start)
            size = _size(cache.directory)
    return best * 1000, size


def _presentations(signer: Ed25519Signer, issuer: str, count: int) -> list[str]:
    jws = sign_credential(credential(Purpose.SVC, issuer=issuer, status=StatusRef("1", 1234)),
                          signer)
    return [sign_presentation(jws, DEVICE, proof_time=NOW - age % 60, purpose="svc")
            for age in range(count)]


def _verify_timings(national_state: VerifierState, national_texts: list[str],
                    single_state: VerifierState, single_texts: list[str],
                    quick: bool) -> dict[str, float]:
    policy = POLICIES["hospital"]
    for state, texts in ((national_state, national_texts), (single_state, single_texts)):
        assert verify_presentation(texts[0], state=state, policy=policy, now=NOW,
                                   replay_cache=None).ok
    position = {"national": 0, "single": 0}

    def one(which: str, state: VerifierState, texts: list[str]) -> object:
        i = position[which] = (position[which] + 1) % len(texts)
        return verify_presentation(texts[i], state=state, policy=policy, now=NOW,
                                   replay_cache=None)

    return interleaved_us(
        {"national": lambda: one("national", national_state, national_texts),
         "single": lambda: one("single", single_state, single_texts)},
        rounds=5 if quick else 25, number=300 if quick else 400)


def run(quick: bool = False) -> list[BenchRow]:
    rounds = 2 if quick else 5
    all_cities = [_city(i) for i in range(max(SIZES))]
    files: dict[str, str] = {}
    rows: list[BenchRow] = []
    national_pin = jwk_thumbprint(public_jwk(_NATIONAL.public_key))
    with serving(_app(files)) as base:
        for city in all_cities:
            prefix = f"/{city.code}/v1/status-lists"
            files[prefix] = json.dumps({"status_lists": [{"id": "1", "uri": f"{prefix}/1"}]})
            files[f"{prefix}/1"] = city.status_jwt
        # The single-city floor: today's sync of the first city from the same server.
        single = all_cities[0]
        single_base = f"{base}/{single.code}"
        files[f"/{single.code}/v1/trust-list"] = sign_trust_list(TrustListClaims(
            single.code, 1, NOW - 60, NOW + 7 * DAY,
            (IssuerKey(single.key.kid, single.key.public_key, KeyState.ACTIVE, NOW - 30 * DAY),
             IssuerKey(single.spare.kid, single.spare.public_key, KeyState.NEXT, NOW - DAY))),
            single.root)
        city_pin = jwk_thumbprint(public_jwk(single.root.public_key))
        single_ms, single_size = _timed_sync(lambda cache: sync_cache(
            cache, server=single_base, root_fingerprint=city_pin, now=NOW), rounds)
        with tempfile.TemporaryDirectory() as tmp:
            city_cache = VerifierCache(Path(tmp) / "city")
            sync_cache(city_cache, server=single_base, root_fingerprint=city_pin, now=NOW)
            single_state = city_cache.load().state

        for size in SIZES:
            cities = all_cities[:size]
            _publish(files, base, cities)
            ms, cache_bytes = _timed_sync(lambda cache: sync_federation(
                cache, server=base, root_fingerprint=national_pin, now=NOW), rounds)
            with tempfile.TemporaryDirectory() as tmp:
                cache = VerifierCache(Path(tmp) / "national")
                sync_federation(cache, server=base, root_fingerprint=national_pin, now=NOW)
                national_state = cache.load().state
            # The last city's card nationally; the first city's card against its own pin.
            last = cities[-1]
            national_texts = _presentations(last.key, last.code, 300)
            single_texts = _presentations(single.key, single.code, 300)
            timings = _verify_timings(national_state, national_texts, single_state,
                                      single_texts, quick)
            label = f"{size} issuer{'s' if size > 1 else ''}"
            rows += [
                BenchRow(f"federation: first sync, {label} (HTTP, 1 status list each)", ms,
                         "ms", "single-city sync (trust list + 1 status list)", single_ms),
                BenchRow(f"federation: cache size on disk, {label}", cache_bytes / 1000, "KB",
                         "single-city cache size", single_size / 1000),
                BenchRow(f"federation: verify a presentation, {label}", timings["national"],
                         "us", "verify against a single-city pin (goal <= 1.05x)",
                         timings["single"]),
            ]
    return rows
