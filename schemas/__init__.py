"""The wire format: claim names, credentials, presentations, status lists, trust lists.

Nothing here verifies a signature (that is ``keys`` and ``verifier``); everything here
refuses malformed input with a :class:`schemas.codes.FmcError` carrying a stable code.

Example::

    from schemas import Credential, Purpose, decode_presentation
    parts = decode_presentation("FMC1:...")   # raises Malformed on garbage
"""

from schemas._jose import b64url_decode, b64url_encode
from schemas.codes import FmcError, ResultCode
from schemas.credential import CLAIMS, Credential, Entitlement, Purpose, StatusRef
from schemas.presentation import (
    PREFIX,
    Presentation,
    decode_presentation,
    encode_presentation,
    holder_proof_message,
)
from schemas.status_list import (
    STATUS_REVOKED,
    STATUS_SUSPENDED,
    STATUS_VALID,
    StatusList,
    StatusListClaims,
)
from schemas.timestamp import TimestampClaims
from schemas.trust_list import IssuerKey, KeyState, TimestampKey, TrustListClaims

__all__ = [
    "CLAIMS",
    "PREFIX",
    "STATUS_REVOKED",
    "STATUS_SUSPENDED",
    "STATUS_VALID",
    "Credential",
    "Entitlement",
    "FmcError",
    "IssuerKey",
    "KeyState",
    "Presentation",
    "Purpose",
    "ResultCode",
    "StatusList",
    "StatusListClaims",
    "StatusRef",
    "TimestampClaims",
    "TimestampKey",
    "TrustListClaims",
    "b64url_decode",
    "b64url_encode",
    "decode_presentation",
    "encode_presentation",
    "holder_proof_message",
]
