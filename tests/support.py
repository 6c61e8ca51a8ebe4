"""Fixed keys, a fixed clock and a small issuing world for tests (no randomness)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

from keys import (
    Ed25519Signer,
    jwk_thumbprint,
    public_jwk,
    sign_credential,
    sign_presentation,
    sign_status_list,
    sign_timestamp,
    sign_trust_list,
)
from schemas import (
    Credential,
    Entitlement,
    IssuerKey,
    KeyState,
    Purpose,
    ResultCode,
    StatusList,
    StatusListClaims,
    StatusRef,
    TimestampKey,
    TrustListClaims,
    b64url_decode,
    b64url_encode,
    encode_presentation,
    holder_proof_message,
)
from schemas._jose import dump_json
from schemas.challenge import Challenge
from schemas.credential import portrait_digest
from verifier import TrustedSet, VerifierState

NOW = 1_800_000_000  # 2027-01-15T08:00:00Z
DAY = 86_400
ISSUER = "CN-YW"
LONG_SURNAME = "ABDULRAHMAN MOHAMMED AL-HASHIMI BIN KHAL"  # 40 characters
LONG_GIVEN = "MUHAMMAD IBRAHIM ABDULLAH OLUWASEUN ADEX"  # 40 characters

ROOT = Ed25519Signer(bytes(range(32)), kid="root")
ISSUER_KEY = Ed25519Signer(bytes(range(1, 33)), kid="k1")
NEXT_KEY = Ed25519Signer(bytes(range(2, 34)), kid="k2")
DEVICE = Ed25519Signer(bytes(range(3, 35)), kid="device")
OTHER_DEVICE = Ed25519Signer(bytes(range(4, 36)), kid="device2")
FOREIGN_KEY = Ed25519Signer(bytes(range(5, 37)), kid="k1")  # same kid, not in the trust list
ROOT_FINGERPRINT = jwk_thumbprint(public_jwk(ROOT.public_key))


def credential(purpose: Purpose, **overrides: object) -> Credential:
    fields: dict[str, object] = dict(
        purpose=purpose,
        issuer=ISSUER,
        issued_at=NOW - DAY,
        expires_at=NOW + 30 * DAY,  # 31 days: the cap of a pay credential
        card_number="3300012345678901",
        status=StatusRef("1", 123_456),
        holder_key=DEVICE.public_key,
    )
    if purpose is Purpose.PAY:
        fields["offline_limit_fen"] = 50_000
    else:
        fields.update(
            foreigner_code="933566199001010017",
            surname=LONG_SURNAME,
            given_names=LONG_GIVEN,
            birth_date="1990-01-01",
            nationality="NGA",
            sex="M",
            portrait_digest=portrait_digest(b"portrait bytes"),
        )
    if purpose is Purpose.SVC:
        fields["entitlements"] = (Entitlement.HEALTHCARE, Entitlement.SOCIAL_INSURANCE)
    fields.update(overrides)
    return Credential(**fields)  # type: ignore[arg-type]


def one_use_credential(**overrides: object) -> Credential:
    """A one-use pay credential (P13.3): a handle instead of the card, valid on one UTC
    day (today's): iat its midnight, exp the next."""
    midnight = NOW - NOW % DAY
    fields: dict[str, object] = dict(
        purpose=Purpose.PAY, issuer=ISSUER, issued_at=midnight,
        expires_at=midnight + DAY, card_number="", status=StatusRef("1", 98_765),
        holder_key=DEVICE.public_key, offline_limit_fen=20_000,
        pay_handle=bytes(range(16)))
    fields.update(overrides)
    return Credential(**fields)  # type: ignore[arg-type]


@dataclass
class World:
    """A trust list with k1 active and k2 next, one status list, and helpers to present."""

    keys: tuple[IssuerKey, ...] = (
        IssuerKey("k1", ISSUER_KEY.public_key, KeyState.ACTIVE, NOW - 30 * DAY),
        IssuerKey("k2", NEXT_KEY.public_key, KeyState.NEXT, NOW - 30 * DAY),
    )
    trust_version: int = 1
    trust_expires: int = NOW + 7 * DAY
    statuses: StatusList = field(default_factory=lambda: StatusList.empty(131_072))
    status_issued: int = NOW - 60
    status_ttl: int = 3600
    status_expires: int = NOW + DAY
    alg_cutover: int | None = None  # P14: none announced, so both alg names are read

    def trust_list_jwt(self, **overrides: object) -> str:
        claims = TrustListClaims(ISSUER, self.trust_version, NOW - 60, self.trust_expires,
                                 self.keys, alg_cutover=self.alg_cutover,
                                 format_version=1 if self.alg_cutover is None else 2)
        return sign_trust_list(replace(claims, **overrides), ROOT)  # type: ignore[arg-type]

    @property
    def status_alg(self) -> str:
        """What the issuer signs its status lists with (RFC 9864 once it has cut over)."""
        if self.alg_cutover is not None and self.status_issued >= self.alg_cutover:
            return "Ed25519"
        return "EdDSA"

    def status_list_jwt(self, list_id: str = "1", signer: Ed25519Signer = ISSUER_KEY,
                        alg: str = "Ed25519") -> str:
        claims = StatusListClaims(list_id, f"https://fmc.example/v1/status-lists/{list_id}",
                                  self.status_issued, self.status_expires, self.status_ttl,
                                  self.statuses)
        return sign_status_list(claims, signer, alg=alg)

    def state(self, now: int = NOW, status_signer: Ed25519Signer | None = None) -> VerifierState:
        """The verified state; status lists are signed by the active key unless told."""
        active = next((k.kid for k in self.keys if k.state is KeyState.ACTIVE), "k1")
        signer = status_signer or (NEXT_KEY if active == "k2" else ISSUER_KEY)
        trusted = TrustedSet(root_fingerprint=ROOT_FINGERPRINT)
        trusted.update_trust_list(self.trust_list_jwt(), now=now)
        trusted.update_status_list(self.status_list_jwt(signer=signer, alg=self.status_alg),
                                   now=now)
        return trusted.snapshot()


def present(
    purpose: Purpose,
    *,
    signer: Ed25519Signer = ISSUER_KEY,
    device: Ed25519Signer = DEVICE,
    proof_time: int = NOW,
    **overrides: object,
) -> str:
    jws = sign_credential(credential(purpose, **overrides), signer)
    return sign_presentation(jws, device, proof_time=proof_time, purpose=purpose.value)


# A fixed sale challenge: merchant 7, terminal 3, 12.50 yuan, shown at NOW.
SALE = Challenge(merchant_id=7, terminal_id=3, amount_fen=1250, nonce=bytes(range(16)),
                 issued_at=NOW)


def bound_present(challenge: Challenge = SALE, *, device: Ed25519Signer = DEVICE,
                  proof_time: int = NOW, **overrides: object) -> str:
    """A pay code bound to ``challenge`` (the FMC2 form)."""
    jws = sign_credential(credential(Purpose.PAY, **overrides), ISSUER_KEY)
    return sign_presentation(jws, device, proof_time=proof_time, purpose="pay",
                             challenge_digest=challenge.digest)


def craft(
    header: dict[str, object] | bytes,
    payload: bytes,
    *,
    signer: Ed25519Signer | None = ISSUER_KEY,
    signature: bytes | None = None,
    purpose: str = "svc",
    proof_time: int = NOW,
) -> str:
    """A presentation from arbitrary header and payload bytes, with a valid holder proof."""
    header_bytes = header if isinstance(header, bytes) else dump_json(header)
    signing_input = b64url_encode(header_bytes) + "." + b64url_encode(payload)
    if signature is None:
        assert signer is not None
        signature = signer.sign(signing_input.encode())
    jws = signing_input + "." + b64url_encode(signature)
    proof = DEVICE.sign(holder_proof_message(jws, proof_time, purpose))
    return encode_presentation(jws, proof_time, proof)


# Inputs tried by the fuzz tests, printed at the end of the run (tests/conftest.py).
FUZZ_INPUTS: dict[str, int] = {}


def count_fuzz_input(parser: str) -> None:
    FUZZ_INPUTS[parser] = FUZZ_INPUTS.get(parser, 0) + 1


STANDARD_HEADER = {"alg": "EdDSA", "kid": "k1", "zip": "DEF"}


def check_code(text: str | bytes, *, service: str = "hospital", now: int = NOW,
               world: World | None = None) -> ResultCode:
    """The code a fresh verifier (this World's lists, an empty replay cache) gives ``text``."""
    from verifier import POLICIES, MemoryReplayCache, verify_presentation

    return verify_presentation(text, state=(world or World()).state(),
                               policy=POLICIES[service], now=now,
                               replay_cache=MemoryReplayCache()).code


# -- P8.5 the signed timestamp ------------------------------------------------------------

TIMESTAMP_KEY = Ed25519Signer(bytes(range(6, 38)), kid="ts1")
TIMESTAMP_KEYS = (TimestampKey("ts1", TIMESTAMP_KEY.public_key),)


def timestamp_jwt(
    trust_list_jwt: str,
    *,
    version: int = 1,
    issued_at: int = NOW - 60,
    lifetime: int = 12 * 3600,
    status_lists: dict[str, str] | None = None,
    signer: Ed25519Signer = TIMESTAMP_KEY,
    trust_version: int | None = None,
) -> str:
    """A timestamp naming ``trust_list_jwt`` (its version unless told) and status lists."""
    from schemas.status_list import StatusListClaims as _StatusClaims
    from schemas.timestamp import ListRef, TimestampClaims, list_digest

    version_named = trust_version
    if version_named is None:
        _, payload, _ = trust_list_jwt.split(".")
        version_named = int(json.loads(b64url_decode(payload))["ver"])
    refs = {}
    for list_id, jwt in (status_lists or {}).items():
        payload = json.loads(b64url_decode(jwt.split(".")[1]))
        refs[list_id] = ListRef(_StatusClaims.from_payload(payload).issued_at, list_digest(jwt))
    claims = TimestampClaims(ISSUER, version, issued_at, issued_at + lifetime,
                             ListRef(version_named, list_digest(trust_list_jwt)), refs)
    return sign_timestamp(claims, signer)
