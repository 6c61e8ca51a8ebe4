"""Result codes (docs/DESIGN.md section 7) and the exception raised for each failed check.

Every failed check has its own exception class carrying a stable :class:`ResultCode`;
callers and tests compare codes, never message text.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "AlgorithmDowngrade",
    "AlgorithmNotAllowed",
    "BadSignature",
    "ChallengeExpired",
    "ChallengeMismatch",
    "EntitlementMissing",
    "Expired",
    "FmcError",
    "HolderProofInvalid",
    "HolderProofStale",
    "IssuerRemoved",
    "IssuerSuspended",
    "IssuerUnknown",
    "KeyCompromised",
    "KeyNotValidAtIssue",
    "LifetimeTooLong",
    "Malformed",
    "NotYetValid",
    "Replayed",
    "ResultCode",
    "Revoked",
    "StatusUnavailable",
    "Suspended",
    "TimestampRollback",
    "TimestampStale",
    "TrustListOutdated",
    "TrustListRollback",
    "TrustListStale",
    "UnknownKey",
    "UnsupportedVersion",
    "WrongPurpose",
    "error_for_code",
]


class ResultCode(StrEnum):
    """Machine-readable outcome of a check. Codes may be added, never renamed."""

    OK = "OK"
    MALFORMED = "MALFORMED"
    UNSUPPORTED_VERSION = "UNSUPPORTED_VERSION"
    ALGORITHM_NOT_ALLOWED = "ALGORITHM_NOT_ALLOWED"
    UNKNOWN_KEY = "UNKNOWN_KEY"
    BAD_SIGNATURE = "BAD_SIGNATURE"
    KEY_NOT_VALID_AT_ISSUE = "KEY_NOT_VALID_AT_ISSUE"
    EXPIRED = "EXPIRED"
    NOT_YET_VALID = "NOT_YET_VALID"
    REVOKED = "REVOKED"
    SUSPENDED = "SUSPENDED"
    STATUS_UNAVAILABLE = "STATUS_UNAVAILABLE"
    TRUST_LIST_STALE = "TRUST_LIST_STALE"
    HOLDER_PROOF_INVALID = "HOLDER_PROOF_INVALID"
    HOLDER_PROOF_STALE = "HOLDER_PROOF_STALE"
    REPLAYED = "REPLAYED"
    WRONG_PURPOSE = "WRONG_PURPOSE"
    ENTITLEMENT_MISSING = "ENTITLEMENT_MISSING"
    # Added since the first design (docs/DESIGN.md section 7: "more may be added, none renamed").
    KEY_COMPROMISED = "KEY_COMPROMISED"
    TRUST_LIST_ROLLBACK = "TRUST_LIST_ROLLBACK"
    LIFETIME_TOO_LONG = "LIFETIME_TOO_LONG"
    # Federation (docs/FEDERATION.md): the credential's city as the national list names it.
    ISSUER_UNKNOWN = "ISSUER_UNKNOWN"
    ISSUER_SUSPENDED = "ISSUER_SUSPENDED"
    ISSUER_REMOVED = "ISSUER_REMOVED"
    CHALLENGE_MISMATCH = "CHALLENGE_MISMATCH"
    CHALLENGE_EXPIRED = "CHALLENGE_EXPIRED"
    # P8.5: the signed timestamp (a counter cannot be frozen in the past).
    TIMESTAMP_ROLLBACK = "TIMESTAMP_ROLLBACK"
    TIMESTAMP_STALE = "TIMESTAMP_STALE"
    TRUST_LIST_OUTDATED = "TRUST_LIST_OUTDATED"
    # P14: RFC 9864. An object signed at or after the issuer's cut-over that still says
    # the deprecated polymorphic "EdDSA" instead of the fully specified "Ed25519".
    ALGORITHM_DOWNGRADE = "ALGORITHM_DOWNGRADE"


class FmcError(Exception):
    """Base of every failed check; ``code`` is the stable machine-readable reason."""

    code: ResultCode = ResultCode.MALFORMED

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.code.value)
        self.detail = detail or self.code.value


class Malformed(FmcError):
    code = ResultCode.MALFORMED


class UnsupportedVersion(FmcError):
    code = ResultCode.UNSUPPORTED_VERSION


class AlgorithmNotAllowed(FmcError):
    code = ResultCode.ALGORITHM_NOT_ALLOWED


class AlgorithmDowngrade(FmcError):
    """``alg: EdDSA`` on an object issued at or after the trust list's ``alg_cutover``."""

    code = ResultCode.ALGORITHM_DOWNGRADE


class UnknownKey(FmcError):
    code = ResultCode.UNKNOWN_KEY


class BadSignature(FmcError):
    code = ResultCode.BAD_SIGNATURE


class KeyNotValidAtIssue(FmcError):
    code = ResultCode.KEY_NOT_VALID_AT_ISSUE


class KeyCompromised(FmcError):
    code = ResultCode.KEY_COMPROMISED


class Expired(FmcError):
    code = ResultCode.EXPIRED


class LifetimeTooLong(FmcError):
    """``exp - iat`` beyond its purpose's cap: what a leaked (old) key would mint."""

    code = ResultCode.LIFETIME_TOO_LONG


class NotYetValid(FmcError):
    code = ResultCode.NOT_YET_VALID


class Revoked(FmcError):
    code = ResultCode.REVOKED


class Suspended(FmcError):
    code = ResultCode.SUSPENDED


class StatusUnavailable(FmcError):
    code = ResultCode.STATUS_UNAVAILABLE


class TrustListStale(FmcError):
    code = ResultCode.TRUST_LIST_STALE


class TrustListRollback(FmcError):
    code = ResultCode.TRUST_LIST_ROLLBACK


class TimestampRollback(FmcError):
    """A timestamp older than the one already held (lower ``ver`` or trust-list version)."""

    code = ResultCode.TIMESTAMP_ROLLBACK


class TimestampStale(FmcError):
    """The held timestamp expired (past its grace): the authority may have moved on."""

    code = ResultCode.TIMESTAMP_STALE


class TrustListOutdated(FmcError):
    """A valid timestamp names a newer trust list than the one held (a frozen mirror)."""

    code = ResultCode.TRUST_LIST_OUTDATED


class HolderProofInvalid(FmcError):
    code = ResultCode.HOLDER_PROOF_INVALID


class HolderProofStale(FmcError):
    code = ResultCode.HOLDER_PROOF_STALE


class Replayed(FmcError):
    code = ResultCode.REPLAYED


class WrongPurpose(FmcError):
    code = ResultCode.WRONG_PURPOSE


class EntitlementMissing(FmcError):
    code = ResultCode.ENTITLEMENT_MISSING


class IssuerUnknown(FmcError):
    code = ResultCode.ISSUER_UNKNOWN


class IssuerSuspended(FmcError):
    code = ResultCode.ISSUER_SUSPENDED


class IssuerRemoved(FmcError):
    code = ResultCode.ISSUER_REMOVED


class ChallengeMismatch(FmcError):
    """A pay code bound to another sale, or no challenge where one is needed."""

    code = ResultCode.CHALLENGE_MISMATCH


class ChallengeExpired(FmcError):
    code = ResultCode.CHALLENGE_EXPIRED


_BY_CODE: dict[ResultCode, type[FmcError]] = {
    cls.code: cls
    for cls in (
        Malformed, UnsupportedVersion, AlgorithmNotAllowed, UnknownKey, BadSignature,
        KeyNotValidAtIssue, KeyCompromised, Expired, NotYetValid, Revoked, Suspended,
        StatusUnavailable, TrustListStale, TrustListRollback, HolderProofInvalid,
        HolderProofStale, Replayed, WrongPurpose, EntitlementMissing, LifetimeTooLong,
        IssuerUnknown, IssuerSuspended, IssuerRemoved,
        ChallengeMismatch, ChallengeExpired,
        TimestampRollback, TimestampStale, TrustListOutdated, AlgorithmDowngrade,
    )
}


def error_for_code(code: ResultCode, detail: str = "") -> FmcError:
    """The exception instance for ``code`` (for layers that only carry the code)."""
    return _BY_CODE[code](detail)
