"""Offline verification of Foreign Merchant Card presentations.

The check is a pure function of explicit inputs; fetching and caching live outside it.

Example::

    from verifier import POLICIES, MemoryReplayCache, TrustedSet, verify_presentation
    trusted = TrustedSet(root_fingerprint=pinned)
    trusted.update_trust_list(trust_list_jwt, now=now)
    trusted.update_status_list(status_list_jwt, now=now)
    result = verify_presentation(qr_text, state=trusted.snapshot(),
                                 policy=POLICIES["hospital"], now=now,
                                 replay_cache=MemoryReplayCache())
    if result.ok: print(result.credential.surname)
    else: print(result.code)     # one of schemas.codes.ResultCode
"""

from schemas.codes import ResultCode
from verifier.check import VerificationResult, as_epoch, verify_presentation
from verifier.policy import POLICIES, Policy, PolicyError
from verifier.replay import MemoryReplayCache, ReplayCache, replay_key
from verifier.timestamp import verify_timestamp
from verifier.trust import TrustedSet, VerifierState, verify_status_list, verify_trust_list

__all__ = [
    "POLICIES",
    "MemoryReplayCache",
    "Policy",
    "PolicyError",
    "ReplayCache",
    "ResultCode",
    "TrustedSet",
    "VerificationResult",
    "VerifierState",
    "as_epoch",
    "replay_key",
    "verify_presentation",
    "verify_status_list",
    "verify_timestamp",
    "verify_trust_list",
]
