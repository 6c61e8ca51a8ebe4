"""Signed requests between authorities (P10, docs/FEDERATION.md "Between authorities").

A city calling another city's ``/v1/interauth/...`` signs each request as a compact JWS,
header ``{"alg": "Ed25519", "typ": "fmc-interauth+jwt", "kid": <interchange kid>}``,
claims ``iss`` (calling city), ``aud`` (called city), ``iat``, ``exp`` (at most 60 s
later), ``jti``, ``htm``, ``htu``, ``bsh`` (base64url SHA-256 of the body), ``officer``
(id or null) and ``reason``; it travels as ``Authorization: FMC-Interauth <jws>``.
The key is the caller's **interchange key** (``ik`` of its federation entry), never a
credential key, and an interchange key never signs a credential.

The receiver checks, in order, each failure with its own code (all DomainErrors, 401 or
403): the ``alg`` allow-list, ``typ`` and header members, the ``kid`` among the
interchange keys of the federation list **it** holds (UNKNOWN_KEY; a credential key is
unknown here), the caller city's state (suspended or removed: 403) and the key's
(compromised), the signature, the claims, ``iss`` == the key's city, ``aud`` == itself,
freshness against the injected clock, ``htm``, ``htu``, the body hash. All of this is
pure (:func:`verify_interauth_request`); the replay check is apart
(:func:`remember_interauth`, table ``interauth_seen``).

Example::

    jws = sign_interauth_request(signer=ik, caller="CN-HZ", callee="CN-YW", method="POST",
                                 url="https://yw.example.cn/v1/interauth/person-lookups",
                                 body=body, officer_id=7, reason="enrolment", now=now)
    claims = verify_interauth_request(jws, federation=federation, receiver="CN-YW",
                                      method="POST", url=url, body=body, now=now)
    remember_interauth(session, claims)          # InterauthReplay the second time

    client = InterauthClient(httpx.Client(timeout=5), signer=ik, federation=federation,
                             caller="CN-HZ")
    response = client.post("CN-YW", "/v1/interauth/person-lookups", {"passport": ...},
                           officer_id=7, reason="enrolment")
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cardsvc.models import InterauthSeen
from cardsvc.services.errors import Forbidden, Unauthenticated, Unavailable
from keys.ed25519 import Signer, verify_signature
from keys.jws import sign_compact
from schemas._jose import (
    ALG_ED25519,
    b64url_encode,
    check_header,
    dump_json,
    parse_json_object,
    split_compact,
)
from schemas.codes import AlgorithmNotAllowed, FmcError
from schemas.federation import FederationClaims, IssuerEntry, IssuerState
from schemas.trust_list import IssuerKey, KeyState

__all__ = [
    "AUTH_SCHEME",
    "INTERAUTH_TYP",
    "MAX_ANSWER_BYTES",
    "MAX_LIFETIME_SECONDS",
    "InterauthAnswerTooLarge",
    "InterauthClaims",
    "InterauthClient",
    "InterauthReplay",
    "answer_object",
    "body_hash",
    "peer_code",
    "remember_interauth",
    "sign_interauth_request",
    "verify_interauth_request",
]

INTERAUTH_TYP = "fmc-interauth+jwt"
AUTH_SCHEME = "FMC-Interauth"
MAX_LIFETIME_SECONDS = 60
CLOCK_SKEW_SECONDS = 10  # a caller's clock a little ahead is tolerated, no more
MAX_TOKEN_CHARS = 4096
_PEER_CODE = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
_HEADER_MEMBERS = frozenset({"alg", "typ", "kid"})
_CLAIMS = ("iss", "aud", "iat", "exp", "jti", "htm", "htu", "bsh", "officer", "reason")
_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH"})


class InterauthReplay(Unauthenticated):
    """This signed request (``iss`` + ``jti``) was already accepted once."""

    def __init__(self, detail: str = "this signed request was already accepted") -> None:
        super().__init__("INTERAUTH_REPLAY", detail)


@dataclass(frozen=True, slots=True)
class InterauthClaims:
    """A verified request from another authority (read only after its signature passed)."""

    issuer: str  # the calling city
    audience: str  # this city
    issued_at: int
    expires_at: int
    jti: str
    method: str
    url: str
    body_sha256: str  # base64url
    officer_id: int | None
    reason: str
    kid: str


def body_hash(body: bytes) -> str:
    """base64url(SHA-256(body)): the ``bsh`` claim."""
    return b64url_encode(hashlib.sha256(body).digest())


def sign_interauth_request(
    *, signer: Signer, caller: str, callee: str, method: str, url: str, body: bytes,
    officer_id: int | None, reason: str, now: int, lifetime_seconds: int = 30,
    jti: str | None = None,
) -> str:
    """The ``Authorization`` token (without the scheme) for one request."""
    if not 0 < lifetime_seconds <= MAX_LIFETIME_SECONDS:
        raise ValueError(f"an interauth request lives 1 to {MAX_LIFETIME_SECONDS} s")
    claims = {
        "iss": caller, "aud": callee, "iat": now, "exp": now + lifetime_seconds,
        "jti": jti or secrets.token_urlsafe(16), "htm": method.upper(), "htu": url,
        "bsh": body_hash(body), "officer": officer_id, "reason": reason,
    }
    header = {"alg": ALG_ED25519, "typ": INTERAUTH_TYP, "kid": signer.kid}
    return sign_compact(header, dump_json(claims), signer)


def _refused(code: str, detail: str) -> Unauthenticated:
    return Unauthenticated(code, detail)


def _resolve_interchange_key(
    federation: FederationClaims, unverified_kid: str
) -> tuple[IssuerEntry, IssuerKey]:
    for entry in federation.issuers:
        key = entry.interchange_keys_by_kid.get(unverified_kid)
        if key is not None:
            break
    else:
        raise _refused("INTERAUTH_UNKNOWN_KEY",
                       f"no city has interchange key {unverified_kid!r}")
    if entry.state is IssuerState.SUSPENDED:
        raise Forbidden("INTERAUTH_CALLER_SUSPENDED", f"{entry.code} is suspended nationally")
    if entry.state is IssuerState.REMOVED:
        raise Forbidden("INTERAUTH_CALLER_REMOVED", f"{entry.code} was removed nationally")
    if key.state is KeyState.COMPROMISED:
        raise _refused("INTERAUTH_KEY_COMPROMISED",
                       f"interchange key {unverified_kid!r} is compromised")
    return entry, key


def verify_interauth_request(
    unverified_jwt: str, *, federation: FederationClaims, receiver: str, method: str,
    url: str, body: bytes, now: int,
) -> InterauthClaims:
    """The verified claims of a request, or the DomainError of the first failed check.

    ``url`` is the URL the caller must have signed: this city's ``api_url`` from the
    federation list plus the request's path (and query), not what a proxy says.
    """
    if len(unverified_jwt) > MAX_TOKEN_CHARS:
        raise _refused("INTERAUTH_MALFORMED", "the signed request is too large")
    try:
        signing_input, header_bytes, payload_bytes, signature = split_compact(unverified_jwt)
        unverified_header = parse_json_object(header_bytes)
        check_header(unverified_header, expected_typ=INTERAUTH_TYP,
                     allowed_members=_HEADER_MEMBERS, require_kid=True)
    except AlgorithmNotAllowed as error:
        raise _refused("INTERAUTH_ALGORITHM_NOT_ALLOWED", error.detail) from None
    except FmcError as error:
        raise _refused("INTERAUTH_MALFORMED", error.detail) from None
    unverified_kid = unverified_header["kid"]
    entry, key = _resolve_interchange_key(federation, unverified_kid)
    if not verify_signature(key.public_key, signing_input, signature):
        raise _refused("INTERAUTH_BAD_SIGNATURE", "the request's signature does not verify")
    claims = _parse_claims(payload_bytes, kid=key.kid)
    if claims.issuer != entry.code:
        raise _refused("INTERAUTH_ISSUER_MISMATCH",
                       f"signed by a key of {entry.code}, claims to be {claims.issuer!r}")
    if claims.audience != receiver:
        raise _refused("INTERAUTH_WRONG_AUDIENCE", f"addressed to {claims.audience!r}")
    if claims.expires_at - claims.issued_at > MAX_LIFETIME_SECONDS or \
            claims.expires_at <= claims.issued_at:
        raise _refused("INTERAUTH_LIFETIME", f"a request lives at most {MAX_LIFETIME_SECONDS} s")
    if now >= claims.expires_at or claims.issued_at > now + CLOCK_SKEW_SECONDS:
        raise _refused("INTERAUTH_EXPIRED", "the signed request is not fresh")
    if claims.issued_at < key.valid_from or (
            key.valid_until is not None and claims.issued_at >= key.valid_until):
        raise _refused("INTERAUTH_KEY_NOT_VALID",
                       "the interchange key was not valid when the request was signed")
    if claims.method != method.upper():
        raise _refused("INTERAUTH_METHOD_MISMATCH", "signed for another HTTP method")
    if claims.url != url:
        raise _refused("INTERAUTH_URL_MISMATCH", "signed for another URL")
    if claims.body_sha256 != body_hash(body):
        raise _refused("INTERAUTH_BODY_MISMATCH", "the body is not the one signed")
    return claims


def _parse_claims(payload_bytes: bytes, *, kid: str) -> InterauthClaims:
    try:
        payload = parse_json_object(payload_bytes)
    except FmcError as error:
        raise _refused("INTERAUTH_MALFORMED", error.detail) from None
    if set(payload) != set(_CLAIMS):
        raise _refused("INTERAUTH_MALFORMED", f"the claims are exactly {list(_CLAIMS)}")
    iss, aud, iat, exp = payload["iss"], payload["aud"], payload["iat"], payload["exp"]
    jti, htm, htu, bsh = payload["jti"], payload["htm"], payload["htu"], payload["bsh"]
    officer, reason = payload["officer"], payload["reason"]
    texts_ok = all(isinstance(v, str) and 0 < len(v) <= 512 for v in (iss, aud, jti, htu, bsh))
    if not texts_ok or not isinstance(jti, str) or len(jti) > 64 or \
            type(iat) is not int or type(exp) is not int or htm not in _METHODS or \
            not (officer is None or (type(officer) is int and officer > 0)) or \
            not isinstance(reason, str) or len(reason) > 200:
        raise _refused("INTERAUTH_MALFORMED", "a claim has the wrong type or size")
    return InterauthClaims(iss, aud, iat, exp, jti, htm, htu, bsh, officer, reason, kid)


def remember_interauth(session: Session, claims: InterauthClaims) -> None:
    """Record the request's ``jti``; the same ``iss`` + ``jti`` again is InterauthReplay.

    Rows are kept until their request expired (after that the freshness check refuses
    it anyway) and then pruned here, in the same transaction.
    """
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(delete(InterauthSeen).where(
        InterauthSeen.expires_at < claims.issued_at - MAX_LIFETIME_SECONDS - CLOCK_SKEW_SECONDS))
    stored = session.scalar(insert(InterauthSeen).values(
        issuer=claims.issuer, jti=claims.jti, expires_at=claims.expires_at,
    ).on_conflict_do_nothing().returning(InterauthSeen.jti))
    if stored is None:
        raise InterauthReplay()
    session.flush()


MAX_ANSWER_BYTES = 8 * 1024 * 1024  # a person bundle with its portrait fits many times


class InterauthAnswerTooLarge(httpx.RemoteProtocolError):
    """Another city answered with more than :data:`MAX_ANSWER_BYTES`: treated like any
    transport failure (callers already retry or give up on ``httpx.HTTPError``)."""


def _capped_answer(streamed: httpx.Response, request: httpx.Request) -> httpx.Response:
    """Read another city's answer to a cap, never whole: a member of the federation is
    authenticated, not trusted with this process's memory."""
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in streamed.iter_bytes():
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                raise InterauthAnswerTooLarge(
                    f"{request.url.host} answered with more than {MAX_ANSWER_BYTES} bytes",
                    request=request)
            chunks.append(chunk)
    finally:
        streamed.close()
    # Already decoded: the new response must not decode it again.
    headers = [(name, value) for name, value in streamed.headers.multi_items()
               if name.lower() not in ("content-encoding", "content-length")]
    return httpx.Response(streamed.status_code, headers=headers, content=b"".join(chunks),
                          request=request, extensions=streamed.extensions)


class InterauthClient:
    """Sends signed requests to other cities of the federation list it was given.

    Transport errors (``httpx.TimeoutException``, ``httpx.TransportError``) propagate: the
    caller decides whether a timeout is "not checked" or "retry with the same idempotency
    key". A callee that is not on the list, not active or without interchange keys is
    refused before anything is sent (``INTERAUTH_CALLEE_UNAVAILABLE``, 503).
    """

    def __init__(
        self, http: httpx.Client, *, signer: Signer, federation: FederationClaims,
        caller: str, clock: Callable[[], int] | None = None,
    ) -> None:
        self.http = http
        self.signer = signer
        self.federation = federation
        self.caller = caller
        self._clock = clock or (lambda: int(time.time()))

    def __repr__(self) -> str:
        return f"InterauthClient(caller={self.caller!r}, kid={self.signer.kid!r})"

    def url_for(self, callee_code: str, path: str) -> str:
        entry = self.federation.issuers_by_code.get(callee_code)
        if entry is None or entry.state is not IssuerState.ACTIVE or not entry.interchange_keys:
            raise Unavailable("INTERAUTH_CALLEE_UNAVAILABLE",
                              f"{callee_code} is not an active city with interchange keys")
        return entry.api_url.rstrip("/") + path

    def request(
        self, method: str, callee_code: str, path: str, json_body: Any = None, *,
        reason: str, idempotency_key: str | None = None, officer_id: int | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        url = self.url_for(callee_code, path)
        body = b"" if json_body is None else json.dumps(
            json_body, separators=(",", ":"), ensure_ascii=False).encode()
        jti = secrets.token_urlsafe(16)
        token = sign_interauth_request(
            signer=self.signer, caller=self.caller, callee=callee_code, method=method,
            url=url, body=body, officer_id=officer_id, reason=reason, now=self._clock(),
            jti=jti)
        headers = {"Authorization": f"{AUTH_SCHEME} {token}"}
        if json_body is not None:
            headers["Content-Type"] = "application/json"
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        # The jti rides along for the caller's audit entry: response.request.extensions.
        request = self.http.build_request(method.upper(), url, content=body, headers=headers,
                                          extensions={"interauth_jti": jti}, **extra)
        return _capped_answer(self.http.send(request, stream=True), request)

    def post(
        self, callee_code: str, path: str, json_body: Any, *, reason: str,
        idempotency_key: str | None = None, officer_id: int | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        return self.request("POST", callee_code, path, json_body, reason=reason,
                            idempotency_key=idempotency_key, officer_id=officer_id,
                            timeout=timeout)

    def delete(
        self, callee_code: str, path: str, *, reason: str, officer_id: int | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        return self.request("DELETE", callee_code, path, None, reason=reason,
                            officer_id=officer_id, timeout=timeout)


def answer_object(response: httpx.Response) -> dict[str, Any] | None:
    """Another city's answer as a JSON object, or None when it is not one (not JSON, a
    list, a string): each member is then still data to check where it is read."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def peer_code(response: httpx.Response) -> str:
    """The refusal code another city answered with, or its HTTP status when what it said
    is not a code (escape sequences, a novel, an object): shown to officers, audited."""
    code = (answer_object(response) or {}).get("code")
    return code if isinstance(code, str) and _PEER_CODE.match(code) else str(
        response.status_code)
