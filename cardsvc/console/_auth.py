"""Console sessions: an HMAC-signed cookie that never holds the officer's token, and CSRF
tokens derived from the session.

The cookie carries the officer id, a random session id, an expiry and a binding to the
officer's current token hash, so a deactivated officer or a replaced token ends every
session at once. The key is a random 32 bytes in ``<data dir>/console-session.key``
(mode 0600), shared by every process serving the same data dir.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from schemas import b64url_encode

__all__ = [
    "KEY_FILE_NAME",
    "PRE_COOKIE",
    "SESSION_COOKIE",
    "SESSION_SECONDS",
    "SessionClaims",
    "SessionKeys",
    "load_session_key",
    "token_binding",
]

SESSION_COOKIE = "fmc_console"
PRE_COOKIE = "fmc_console_pre"  # binds the sign-in form to this browser (login CSRF)
SESSION_SECONDS = 8 * 3600  # one shift
KEY_FILE_NAME = "console-session.key"
_KEY_BYTES = 32
_MAX_COOKIE_CHARS = 400
_log = logging.getLogger("cardsvc.console")


@dataclass(frozen=True, slots=True)
class SessionClaims:
    officer_id: int
    session_id: str
    expires: int  # seconds since the epoch
    binding: str  # token_binding(officer.token_hash) when signed in


def token_binding(token_hash: str) -> str:
    """A short value tied to the officer's token hash (a hash of a hash: reveals nothing)."""
    return hashlib.sha256(b"FMC console binding\x00" + token_hash.encode()).hexdigest()[:32]


def load_session_key(data_dir: Path) -> bytes:
    """The key from the data dir, created on first use; a process-local one if unwritable."""
    path = data_dir / KEY_FILE_NAME
    for _ in range(2):
        try:
            key = path.read_bytes()
            if len(key) == _KEY_BYTES:
                return key
            _log.warning("%s has the wrong length; using a process-local session key", path)
            return secrets.token_bytes(_KEY_BYTES)
        except FileNotFoundError:
            pass
        except OSError:
            break
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue  # another process made it meanwhile: read theirs
        except OSError:
            break
        key = secrets.token_bytes(_KEY_BYTES)
        try:
            os.write(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
        return key
    _log.warning("cannot keep a console session key in %s; sessions end with this process",
                 data_dir)
    return secrets.token_bytes(_KEY_BYTES)


class SessionKeys:
    """Seals and opens session cookies and makes CSRF tokens.

    Sign-outs are kept in the database (``officers.end_console_session``), so that every
    process serving the console refuses a signed-out cookie, also after a restart.
    """

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, purpose: bytes, text: str) -> str:
        digest = hmac.new(self._key, purpose + b"\x00" + text.encode(), hashlib.sha256)
        return b64url_encode(digest.digest())

    def new_session(self, *, officer_id: int, token_hash: str, now: int) -> SessionClaims:
        return SessionClaims(officer_id, secrets.token_urlsafe(18), now + SESSION_SECONDS,
                             token_binding(token_hash))

    def seal(self, claims: SessionClaims) -> str:
        body = f"{claims.officer_id}.{claims.session_id}.{claims.expires}.{claims.binding}"
        return body + "." + self._mac(b"session", body)

    def open(self, unverified_cookie: str, *, now: int) -> SessionClaims | None:
        """The claims of a cookie we sealed that has not expired, else None."""
        if not unverified_cookie or len(unverified_cookie) > _MAX_COOKIE_CHARS:
            return None
        body, _, mac = unverified_cookie.rpartition(".")
        if not hmac.compare_digest(mac.encode(), self._mac(b"session", body).encode()):
            return None
        parts = body.split(".")
        if len(parts) != 4 or not parts[0].isdigit() or not parts[2].isdigit():
            return None
        claims = SessionClaims(int(parts[0]), parts[1], int(parts[2]), parts[3])
        if claims.expires <= now:
            return None
        return claims

    def csrf_token(self, session_id: str) -> str:
        return self._mac(b"csrf", session_id)

    def check_csrf(self, session_id: str, unverified_token: str) -> bool:
        return hmac.compare_digest(unverified_token.encode(),
                                   self.csrf_token(session_id).encode())

    def pre_token(self, nonce: str) -> str:
        """The sign-in form's CSRF token for the pre-session cookie ``nonce``."""
        return self._mac(b"pre", nonce)

    def check_pre_token(self, nonce: str, unverified_token: str) -> bool:
        return bool(nonce) and hmac.compare_digest(unverified_token.encode(),
                                                   self.pre_token(nonce).encode())
