"""The offline check: a pure function of (presentation, verifier state, policy, now, replay).

Steps, in this fixed order (docs/DESIGN.md section 7); the first failure decides the code:

 1. parse      size limit, ``FMC1:`` prefix, container        MALFORMED, UNSUPPORTED_VERSION
 2. header     ``alg`` allow-list before anything else; crit,  ALGORITHM_NOT_ALLOWED, MALFORMED
               members, typ, zip
 3. key        the held signed timestamp names this trust      TRUST_LIST_OUTDATED,
               list and expired at most the status grace ago;  TIMESTAMP_STALE,
               trust list fresh; ``kid`` is only a hint to     TRUST_LIST_STALE, UNKNOWN_KEY,
               find a key that the trust list already holds    KEY_COMPROMISED
               (national pin: the federation list fresh; the   ISSUER_SUSPENDED,
               kid, unique nationally, finds key and city;     ISSUER_REMOVED
               the city suspended or removed nationally)
 4. signature  Ed25519 over the JWS signing input              BAD_SIGNATURE
 5. claims     inflate (capped) and parse, only now; the       MALFORMED, UNKNOWN_KEY,
               signed ``iss`` is the key's city (or the        ALGORITHM_DOWNGRADE
               trust list's issuer); then "EdDSA" on a
               credential issued at or after the issuer's
               cut-over to "Ed25519" (RFC 9864)
 6. dates      iat inside the key's window, exp - iat within   KEY_NOT_VALID_AT_ISSUE,
               the purpose's cap, then iat/exp vs now          LIFETIME_TOO_LONG,
                                                               NOT_YET_VALID, EXPIRED
 7. status     the list named in the credential, of the key's  STATUS_UNAVAILABLE, REVOKED,
               city (lists are keyed (city, list id)), fresh   SUSPENDED
 8. proof      sale binding (the challenge, when bound or      CHALLENGE_MISMATCH,
               given), device signature, then its age          CHALLENGE_EXPIRED,
                                                               HOLDER_PROOF_INVALID,
                                                               HOLDER_PROOF_STALE
 9. replay     each proof once                                 REPLAYED
10. policy     purpose, then entitlement                       WRONG_PURPOSE, ENTITLEMENT_MISSING

Nothing here does I/O and nothing here keeps state that changes an answer: the clock
(``now``) and the replay cache (the one thing a check writes) are injected by the caller.
Two bounded memos of pure results (header bytes that passed step 2 here, decoded ``ent``
strings in :mod:`schemas.credential`) only save work.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, NamedTuple

import nacl.bindings
import nacl.exceptions

from schemas._jose import (
    b64url_encode,
    b64url_encode_bytes,
    check_header,
    inflate_capped,
    parse_json_object,
)
from schemas.challenge import CHALLENGE_CLOCK_SKEW_SECONDS, Challenge
from schemas.codes import (
    BadSignature,
    ChallengeExpired,
    ChallengeMismatch,
    EntitlementMissing,
    Expired,
    FmcError,
    HolderProofInvalid,
    HolderProofStale,
    KeyCompromised,
    KeyNotValidAtIssue,
    LifetimeTooLong,
    Malformed,
    NotYetValid,
    Replayed,
    ResultCode,
    Revoked,
    StatusUnavailable,
    Suspended,
    TrustListStale,
    UnknownKey,
    WrongPurpose,
)
from schemas.credential import (
    MAX_INFLATED_PAYLOAD,
    MAX_LIFETIME_SECONDS,
    ONE_USE_PAY_LIFETIME_SECONDS,
    Credential,
    Purpose,
)
from schemas.federation import IssuerEntry
from schemas.presentation import decode_presentation
from schemas.status_list import STATUS_REVOKED, STATUS_SUSPENDED, STATUS_VALID
from schemas.trust_list import KeyState
from verifier.federation import resolve_key_by_kid
from verifier.policy import Policy
from verifier.replay import ReplayCache, replay_key
from verifier.timestamp import require_current_timestamp
from verifier.trust import VerifierState

__all__ = ["VerificationResult", "as_epoch", "verify_presentation"]

_CREDENTIAL_HEADER = frozenset({"alg", "kid", "zip"})
_PROOF_DOMAIN = b"FMC1 holder proof\x00"
_BOUND_PROOF_DOMAIN = b"FMC2 holder proof\x00"
_PURPOSE_BYTES = {purpose: purpose.value.encode("ascii") + b"\x00" for purpose in Purpose}


class VerificationResult(NamedTuple):
    """The answer. ``credential`` is set only once the issuer signature has passed, and
    ``issuer`` (the issuing city's federation entry, national pin only) with it.

    Immutable; a NamedTuple because one is built per check (cheaper than a dataclass).
    """

    code: ResultCode
    service: str
    checked_at: int
    detail: str = ""
    credential: Credential | None = None
    proof_time: int | None = None
    issuer: IssuerEntry | None = None
    # The credential's issuer signature, once it passed: it opens the holder's slot in the
    # sealed portrait bundle (P15) and is known only to whoever saw the code.
    issuer_signature: bytes | None = None

    @property
    def ok(self) -> bool:
        return self.code is ResultCode.OK

    def to_json(self) -> dict[str, Any]:
        """The ``verifier check --json`` shape (docs/DESIGN.md section 8)."""
        cred = self.credential
        holder: dict[str, Any] | None = None
        if cred is not None and cred.foreigner_code is not None and self.ok:
            holder = {
                "foreigner_code": cred.foreigner_code,
                "surname": cred.surname,
                "given_names": cred.given_names,
                "birth_date": cred.birth_date,
                "nationality": cred.nationality,
                "sex": cred.sex,
                "portrait_digest": (
                    None if cred.portrait_digest is None else b64url_encode(cred.portrait_digest)
                ),
            }
        return {
            "ok": self.ok,
            "code": self.code.value,
            "detail": self.detail,
            "service": self.service,
            "issuer": self.issuer_json(),
            "card": cred.card_number or None if cred is not None and self.ok else None,
            # A one-use pay code names a pseudonymous handle, never the card (P13.3).
            "pay_handle": (b64url_encode(cred.pay_handle) if cred is not None and self.ok
                           and cred.pay_handle is not None else None),
            "purpose": cred.purpose.value if cred is not None else None,
            "holder": holder,
            "entitlements": (
                [e.value for e in cred.entitlements] if cred is not None and self.ok else []
            ),
            "checked_at": datetime.fromtimestamp(self.checked_at).astimezone().isoformat(),
        }


    def issuer_json(self) -> dict[str, str | None] | None:
        """``{code, name_en, name_zh}`` of the issuing city, only after the signature
        passed; a single-city verifier knows the code only (names null)."""
        if self.credential is None:
            return None
        if self.issuer is None:
            return {"code": self.credential.issuer, "name_en": None, "name_zh": None}
        return {"code": self.issuer.code, "name_en": self.issuer.name_en,
                "name_zh": self.issuer.name_zh}


def as_epoch(now: int | float | datetime) -> int:
    if isinstance(now, datetime):
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        return int(now.timestamp())
    return int(now)


def _ed25519_ok(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        nacl.bindings.crypto_sign_open(signature + message, public_key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        return False
    return True


def verify_presentation(
    unverified_text: str | bytes,
    *,
    state: VerifierState,
    policy: Policy,
    now: int | datetime,
    replay_cache: ReplayCache | None,
    challenge: Challenge | None = None,
) -> VerificationResult:
    """Check one presentation; never raises for bad input, always returns a code.

    ``challenge`` is the sale a bound (``FMC2:``) pay code must have been made for: with
    one, only a code bound to exactly it passes; without one, a bound code is refused
    (CHALLENGE_MISMATCH) and an unbound code is checked as before. Who issued the
    challenge is the caller's business (the terminal its own, the authority the one
    naming the uploading terminal and amount).

    ``replay_cache=None`` skips step 9 and must only be used where replay is handled
    elsewhere (the payments API charges each pay code once in its database).
    """
    checked_at = as_epoch(now)
    credential: Credential | None = None
    proof_time: int | None = None
    try:
        credential, proof_time, entry, signature = _run_checks(
            unverified_text, state, policy, checked_at, replay_cache, challenge)
    except _Failed as failure:
        credential, proof_time = failure.credential, failure.proof_time
        return VerificationResult(failure.error.code, policy.service, checked_at,
                                  failure.error.detail, credential, proof_time, failure.entry)
    except FmcError as error:
        return VerificationResult(error.code, policy.service, checked_at, error.detail)
    except Exception as error:
        return VerificationResult(ResultCode.MALFORMED, policy.service, checked_at,
                                  f"unreadable input ({type(error).__name__})")
    return VerificationResult(ResultCode.OK, policy.service, checked_at, "", credential,
                              proof_time, entry, signature)


# Header bytes that passed step 2 -> (alg, kid, the header's base64url and the dot after it).
# Step 2 is a pure function of the bytes, and every credential of one issuer key has the
# same header, so this is only a memo; it is bounded so hostile input cannot grow it.
_HEADER_MEMO: dict[bytes, tuple[str, str, bytes]] = {}
_HEADER_MEMO_MAX = 64


def _checked_header(unverified_header_bytes: bytes) -> tuple[str, str, bytes]:
    known = _HEADER_MEMO.get(unverified_header_bytes)
    if known is not None:
        return known
    unverified_header = parse_json_object(unverified_header_bytes)
    alg = check_header(unverified_header, expected_typ=None,
                       allowed_members=_CREDENTIAL_HEADER, require_kid=True)
    if unverified_header.get("zip") != "DEF":
        raise Malformed("credential payload must be zip DEF")
    checked = (alg, str(unverified_header["kid"]),
               b64url_encode_bytes(unverified_header_bytes) + b".")
    if len(_HEADER_MEMO) < _HEADER_MEMO_MAX:
        _HEADER_MEMO[unverified_header_bytes] = checked
    return checked


class _Failed(Exception):
    """A failure after the signature passed: carries the verified claims for display."""

    def __init__(self, error: FmcError, credential: Credential, proof_time: int,
                 entry: IssuerEntry | None) -> None:
        self.error, self.credential, self.proof_time = error, credential, proof_time
        self.entry = entry


def _run_checks(
    unverified_text: str | bytes,
    state: VerifierState,
    policy: Policy,
    now: int,
    replay_cache: ReplayCache | None,
    challenge: Challenge | None,
) -> tuple[Credential, int, IssuerEntry | None, bytes]:
    # 1. parse
    header, payload, signature, proof_time, holder_proof, unverified_bound_digest = (
        decode_presentation(unverified_text))
    # 2. header: alg first, then everything else about its shape
    alg, unverified_kid, signing_prefix = _checked_header(header)
    # 3. key: the trust list must be fresh; kid only selects among trusted keys
    trust_list = state.trust_list
    require_current_timestamp(state.timestamp, trust_list=trust_list,
                              trust_list_sha256=state.trust_list_sha256,
                              grace=policy.status_grace, now=now)
    if trust_list.expires_at + policy.trust_grace <= now:
        raise TrustListStale("the cached trust list has expired; sync the verifier")
    entry: IssuerEntry | None = None
    if state.federation is None:
        key = state.keys_by_kid.get(unverified_kid)
        if key is None:
            raise UnknownKey("credential signed by a key not in the trust list")
        if key.state is KeyState.COMPROMISED:
            raise KeyCompromised("credential signed by a compromised key")
        expected_issuer = trust_list.issuer
    else:
        # National pin: kids are unique nationally, so the kid (a hint, like any kid)
        # names one key and its city; the city's national state is signed data, checked
        # before the signature like a compromised key. No credential claim is read.
        entry, key = resolve_key_by_kid(state.federation, unverified_kid=unverified_kid,
                                        index=state.kid_index)
        expected_issuer = entry.code
    # 4. signature
    signing_input = signing_prefix + b64url_encode_bytes(payload)
    if not _ed25519_ok(key.public_key, signing_input, signature):
        raise BadSignature("issuer signature does not verify")
    # 5. claims, only now that they are signed
    claims = parse_json_object(inflate_capped(payload, MAX_INFLATED_PAYLOAD))
    credential = Credential.from_payload(claims)
    try:
        if credential.issuer != expected_issuer:
            raise UnknownKey("credential issuer is not the signing key's issuer")
        # The issuer's cut-over to "Ed25519": the trust list's, or nationally the city's.
        (trust_list if entry is None else entry).require_current_algorithm(
            alg, credential.issued_at)
        _check_dates(credential, key.valid_from, key.valid_until, policy, now)
        _check_status(credential, state, entry, policy, now)
        # 8. holder proof: made for this sale (if bound), by the device key named in the
        # credential, at this moment
        _check_binding(unverified_bound_digest, challenge, now)
        jws_digest = hashlib.sha256(signing_input)
        jws_digest.update(b".")
        jws_digest.update(b64url_encode_bytes(signature))
        message = (
            (_PROOF_DOMAIN if challenge is None else _BOUND_PROOF_DOMAIN)
            + proof_time.to_bytes(8, "big")
            + _PURPOSE_BYTES[credential.purpose]
            + jws_digest.digest()
            + (b"" if challenge is None else challenge.digest)
        )
        if not _ed25519_ok(credential.holder_key, message, holder_proof):
            raise HolderProofInvalid("holder proof is not by this card's device key")
        if proof_time > now + policy.leeway:
            raise HolderProofStale("holder proof is from the future (clock skew)")
        # The window already holds the skew of a phone that is slow (it renews every 30 s,
        # so a shown code is at most ~30 s old): the leeway is only for phones that run fast.
        if proof_time < now - policy.proof_window:
            raise HolderProofStale("holder proof is older than the freshness window")
        # 9. replay
        if replay_cache is not None and not replay_cache.check_and_add(
            replay_key(signature, proof_time),
            expires_at=policy.replay_expires_at(proof_time),
            now=now,
        ):
            raise Replayed("this code was already shown")
        # 10. policy
        if credential.purpose is not policy.purpose:
            raise WrongPurpose(f"{policy.service} asks for a {policy.purpose} credential")
        if (
            policy.entitlement is not None
            and policy.entitlement not in credential.granted_entitlements
        ):
            raise EntitlementMissing(f"no {policy.entitlement} entitlement")
    except FmcError as error:
        raise _Failed(error, credential, proof_time, entry) from None
    return credential, proof_time, entry, signature


def _check_binding(unverified_bound_digest: bytes | None, challenge: Challenge | None,
                   now: int) -> None:
    # The digest in the code only picks the refusal; what binds is the holder proof, which
    # signs the digest of the challenge given here (never the one the code carries).
    if challenge is None:
        if unverified_bound_digest is not None:
            raise ChallengeMismatch("this code is bound to a sale; its challenge is needed")
        return
    if unverified_bound_digest != challenge.digest:
        raise ChallengeMismatch("this code was not made for this sale")
    if not challenge.issued_at - CHALLENGE_CLOCK_SKEW_SECONDS <= now <= challenge.expires_at:
        raise ChallengeExpired("the sale's challenge has expired: show a new one")


def _check_dates(
    credential: Credential, valid_from: int, valid_until: int | None, policy: Policy, now: int
) -> None:
    # 6. dates: the key must have been allowed to sign at iat, then iat/exp against now
    iat = credential.issued_at
    if iat < valid_from or (valid_until is not None and iat >= valid_until):
        raise KeyNotValidAtIssue("the key was not valid when this credential was issued")
    # Before exp is compared with now: a key that leaked after it retired can still date a
    # credential inside its window, but not make it outlive the window by more than the cap.
    cap = (ONE_USE_PAY_LIFETIME_SECONDS if credential.pay_handle is not None
           else MAX_LIFETIME_SECONDS[credential.purpose])
    if credential.expires_at - iat > cap:
        raise LifetimeTooLong(f"a {credential.purpose} credential lives at most "
                              f"{cap // 86_400} days")
    if iat > now + policy.leeway:
        raise NotYetValid("credential issued in the future")
    if credential.expires_at <= now - policy.leeway:
        raise Expired("credential has expired")


def _check_status(credential: Credential, state: VerifierState, entry: IssuerEntry | None,
                  policy: Policy, now: int) -> None:
    # 7. status: the named list of the key's city, fresh (exp and iat + ttl), then the entry
    status_list = (state.status_lists.get(credential.status.list_id) if entry is None else
                   state.city_status_lists.get((entry.code, credential.status.list_id)))
    if status_list is None:
        raise StatusUnavailable("no status list for this credential in the cache")
    if status_list.expires_at <= now or (
        status_list.issued_at + status_list.ttl + policy.status_grace <= now
    ):
        raise StatusUnavailable("the cached status list is stale; sync the verifier")
    try:
        status = status_list.statuses.get(credential.status.index)
    except IndexError:
        raise StatusUnavailable("status index outside the list") from None
    if status == STATUS_REVOKED:
        raise Revoked("card revoked")
    if status == STATUS_SUSPENDED:
        raise Suspended("card suspended")
    if status != STATUS_VALID:
        raise StatusUnavailable(f"unknown status value {status}")
