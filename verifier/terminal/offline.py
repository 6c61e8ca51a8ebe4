"""The offline decision: may this terminal accept a pay code with no authority to ask?"""

from __future__ import annotations

from schemas import Credential, b64url_encode
from verifier.check import VerificationResult

__all__ = ["UNBOUND_FLOOR_DIVISOR", "offline_account", "offline_decision", "unbound_floor"]

# Offline, a code not bound to the sale (no challenge) is taken only up to a tenth of the
# floor: a dishonest till can claim any amount up to that for a code it was shown, while a
# bound code is good for its own amount only and so may use the whole floor.
UNBOUND_FLOOR_DIVISOR = 10


def unbound_floor(floor_fen: int) -> int:
    """The largest unbound offline payment under a terminal floor of ``floor_fen``."""
    return floor_fen // UNBOUND_FLOOR_DIVISOR


def offline_account(credential: Credential) -> str:
    """What the till counts offline payments by: the card number, or for a one-use pay
    code (P13.3, no card number in it) ``ph:`` and its handle, taken once ever."""
    if credential.pay_handle is not None:
        return "ph:" + b64url_encode(credential.pay_handle)
    return credential.card_number


def offline_decision(
    result: VerificationResult, *, amount_fen: int, floor_fen: int, queued_fen: int,
    bound: bool = False, unbound_floor_fen: int | None = None,
) -> str:
    """``OK`` when a terminal may accept this pay code offline, else the refusal code.

    The code must verify (payment policy, synced cache; a bound code with the challenge
    this till showed); the amount must fit the terminal's floor (a tenth of it for an
    unbound code: CHALLENGE_REQUIRED above that) and what is left of the card's offline
    limit (``ol``) after the payments this terminal holds for the card and has not
    uploaded yet.
    """
    if not result.ok or result.credential is None:
        return result.code.value
    if amount_fen > floor_fen:
        return "OFFLINE_FLOOR_EXCEEDED"
    if not bound and amount_fen > (
            unbound_floor(floor_fen) if unbound_floor_fen is None else unbound_floor_fen):
        return "CHALLENGE_REQUIRED"
    limit = result.credential.offline_limit_fen or 0
    if queued_fen + amount_fen > limit:
        return "OFFLINE_LIMIT_EXCEEDED"
    return "OK"
