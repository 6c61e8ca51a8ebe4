"""A checkpoint: the synced cache, the lasting replay store and a service's policy together.

``verifier check`` and the counter page (``verifier serve``) both verify through this
object, so they give the same answer for the same code. Grace periods for a cache that
has not been synced for a while (docs/DESIGN.md section 6) are set here.

Example::

    checkpoint = Checkpoint(VerifierCache(path), status_grace=86_400)
    outcome = checkpoint.check_image(png_bytes, service="hospital", now=int(time.time()))
    outcome.ok, outcome.result.code, outcome.cache_age_seconds
    outcome.to_json()     # the `verifier check --json` object
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from schemas._jose import b64url_encode
from schemas.codes import ResultCode
from verifier.cache import CacheSnapshot, VerifierCache
from verifier.check import VerificationResult, verify_presentation
from verifier.messages import reason
from verifier.policy import POLICIES, Policy
from verifier.portrait_bundle import CityPortraitBundles, PortraitBundleStore
from verifier.portraits import PortraitFetcher
from verifier.qr import ScanError, decode_qr
from verifier.replay_store import ReplayStoreError, SqliteReplayCache

__all__ = [
    "DEFAULT_STATUS_GRACE",
    "DEFAULT_TRUST_GRACE",
    "CheckOutcome",
    "Checkpoint",
    "UnknownService",
    "portrait_name",
]

# An offline counter may go a day without a sync before it stops trusting the revocation
# status it has (status lists are re-issued hourly; their hard `exp` still applies). The
# signed timestamp (P8.5) gets the same grace past its `exp`: a freeze window of 12 h + 24 h.
DEFAULT_STATUS_GRACE = 86_400
DEFAULT_TRUST_GRACE = 0  # the trust list's own `exp` already spans days


class UnknownService(ValueError):
    """No policy for this service name (code ``UNKNOWN_SERVICE``)."""

    code = "UNKNOWN_SERVICE"


@dataclass(frozen=True)
class CheckOutcome:
    """One answer at a checkpoint: the verification result plus what the counter shows."""

    result: VerificationResult
    policy: Policy
    synced_at: int
    cache_age_seconds: int
    trust_list_version: int
    cache_fallback: bool = False  # the current cache was damaged; the previous one was used
    portrait: bytes | None = None  # only when the cache holds the image matching `pd`
    scan_error: str | None = None  # QR_NOT_FOUND, IMAGE_TOO_LARGE, IMAGE_UNREADABLE
    # "offline": opened from the sealed portrait bundle (P15); "cached" or "online" else
    portrait_source: str | None = None
    portrait_file: str | None = None  # where `verifier check` wrote the portrait shown

    @property
    def ok(self) -> bool:
        return self.result.ok

    @property
    def code(self) -> str:
        return self.scan_error or self.result.code.value

    @property
    def portrait_state(self) -> str:
        """``offline`` (opened from the sealed portrait bundle), ``available`` (the cache
        or the online fetch), ``not_cached`` (the card names one), or ``none``."""
        credential = self.result.credential
        if not self.ok or credential is None or credential.portrait_digest is None:
            return "none"
        if self.portrait is None:
            return "not_cached"
        return "offline" if self.portrait_source == "offline" else "available"

    @property
    def portrait_media_type(self) -> str:
        image = self.portrait or b""
        if image[:4] == b"RIFF" and image[8:12] == b"WEBP":
            return "image/webp"
        if image[4:12] in (b"ftypavif", b"ftypavis"):
            return "image/avif"
        if image.startswith(b"\x89PNG"):
            return "image/png"
        return "image/jpeg"

    def to_json(self) -> dict[str, Any]:
        """The docs/DESIGN.md section 8 object, plus the fields a counter needs beside it."""
        out = self.result.to_json()
        plain = reason(self.code)
        out.update(
            code=self.code,  # a picture without a readable code says so, not MALFORMED
            entitlement_asked=(None if self.policy.entitlement is None
                               else self.policy.entitlement.value),
            purpose_asked=self.policy.purpose.value,
            reason={"en": plain.en, "zh": plain.zh},
            scan_error=self.scan_error,
            synced_at=datetime.fromtimestamp(self.synced_at, UTC).isoformat(),
            cache_age_seconds=self.cache_age_seconds,
            cache_fallback=self.cache_fallback,
            trust_list_version=self.trust_list_version,
            portrait=self.portrait_state,
            portrait_file=self.portrait_file,
        )
        return out


class _RecordingReplay:
    """Passes through to the store, keeping its failure so it is not reported as MALFORMED."""

    def __init__(self, store: SqliteReplayCache) -> None:
        self.store = store
        self.error: ReplayStoreError | None = None

    def check_and_add(self, key: bytes, *, expires_at: int, now: int) -> bool:
        try:
            return self.store.check_and_add(key, expires_at=expires_at, now=now)
        except ReplayStoreError as error:
            self.error = error
            raise


class Checkpoint:
    """Verifies codes against one cache directory; safe to share between threads."""

    def __init__(
        self,
        cache: VerifierCache,
        *,
        status_grace: int = DEFAULT_STATUS_GRACE,
        trust_grace: int = DEFAULT_TRUST_GRACE,
        portrait_fetcher: PortraitFetcher | None = None,
        portrait_bundle: PortraitBundleStore | None = None,
    ) -> None:
        """``portrait_bundle`` defaults to the cache's ``portrait-bundle`` directory (used
        once ``verifier sync-portraits`` filled it; pinned nationally, its ``cities/``
        hold one copy per city); ``portrait_fetcher`` (online) is asked only when neither
        the cache nor the bundle has the portrait."""
        if status_grace < 0 or trust_grace < 0:
            raise ValueError("grace periods cannot be negative")
        self.cache = cache
        self.portrait_fetcher = portrait_fetcher
        self.portrait_bundle = portrait_bundle or PortraitBundleStore(
            cache.directory / "portrait-bundle")
        self.city_portrait_bundles = CityPortraitBundles(self.portrait_bundle.directory)
        self.status_grace = status_grace
        self.trust_grace = trust_grace
        self._lock = threading.Lock()
        self._snapshot: CacheSnapshot | None = None
        self._stamp: tuple[int, int, int] | None = None
        self._replay: SqliteReplayCache | None = None

    def policy(self, service: str) -> Policy:
        base = POLICIES.get(service)
        if base is None:
            raise UnknownService(f"unknown service {service!r}; one of {', '.join(POLICIES)}")
        return dataclasses.replace(base, status_grace=self.status_grace,
                                   trust_grace=self.trust_grace)

    def snapshot(self) -> CacheSnapshot:
        """The verified cache, reloaded whenever a sync has replaced it."""
        with self._lock:
            stamp = self.cache.manifest_stamp()
            if self._snapshot is None or stamp != self._stamp:
                self._snapshot = self.cache.load()
                self._stamp = stamp
            return self._snapshot

    def _replay_store(self) -> SqliteReplayCache:
        with self._lock:
            if self._replay is None:
                self._replay = SqliteReplayCache(self.cache.replay_path)
            return self._replay

    def check_text(self, unverified_text: str | bytes, *, service: str, now: int) -> CheckOutcome:
        """Verify one ``FMC1:`` text.

        Raises UnknownService, verifier.cache.CacheError or ReplayStoreError (no answer).
        """
        policy = self.policy(service)
        snapshot = self.snapshot()
        replay = _RecordingReplay(self._replay_store())
        if isinstance(unverified_text, str):
            unverified_text = unverified_text.strip()
        result = verify_presentation(unverified_text, state=snapshot.state, policy=policy,
                                     now=now, replay_cache=replay)
        if replay.error is not None:
            raise replay.error
        return self._outcome(result, policy, snapshot, now)

    def check_image(self, unverified_image: bytes, *, service: str, now: int) -> CheckOutcome:
        """Decode the QR in a picture and verify it; a picture without one is refused."""
        policy = self.policy(service)
        snapshot = self.snapshot()  # fail on a missing cache before the slow decode
        try:
            text = decode_qr(unverified_image)
        except ScanError as error:
            result = VerificationResult(ResultCode.MALFORMED, policy.service, now, error.detail)
            return self._outcome(result, policy, snapshot, now, scan_error=error.code)
        return self.check_text(text, service=service, now=now)

    def _outcome(
        self,
        result: VerificationResult,
        policy: Policy,
        snapshot: CacheSnapshot,
        now: int,
        *,
        scan_error: str | None = None,
    ) -> CheckOutcome:
        portrait = source = None
        credential = result.credential
        if result.ok and credential is not None and credential.portrait_digest is not None:
            portrait, source = self._portrait(result, credential.portrait_digest, now)
        return CheckOutcome(
            result=result,
            policy=policy,
            synced_at=snapshot.contents.synced_at,
            cache_age_seconds=snapshot.age_seconds(now),
            trust_list_version=snapshot.trust_list.version,
            cache_fallback=snapshot.from_previous,
            portrait=portrait,
            scan_error=scan_error,
            portrait_source=source,
        )

    def _portrait(self, result: VerificationResult, digest: bytes, now: int
                  ) -> tuple[bytes | None, str | None]:
        portrait = self.cache.portrait(digest)
        if portrait is not None:
            return portrait, "cached"
        credential = result.credential
        if result.issuer_signature is not None and credential is not None:
            signature, issuer = result.issuer_signature, credential.issuer
            # each opens only a code of its own issuer (pinned nationally: the code's city)
            portrait = self.portrait_bundle.open(
                signature=signature, issuer=issuer, digest=digest, now=now,
                grace=self.status_grace) or self.city_portrait_bundles.open(
                signature=signature, issuer=issuer, digest=digest, now=now,
                grace=self.status_grace)
            if portrait is not None:
                return portrait, "offline"
        if self.portrait_fetcher is not None:
            portrait = self.portrait_fetcher.fetch(digest)  # checked against the digest
            if portrait is not None:
                with contextlib.suppress(OSError, ValueError):
                    self.cache.add_portrait(portrait)
                return portrait, "online"
        return None, None

    def close(self) -> None:
        if self.portrait_fetcher is not None:
            self.portrait_fetcher.close()
        self.portrait_bundle.close()
        self.city_portrait_bundles.close()
        with self._lock:
            if self._replay is not None:
                self._replay.close()
                self._replay = None


def portrait_name(digest: bytes) -> str:
    """The URL-safe name of a portrait (its ``pd`` claim)."""
    return b64url_encode(digest)

