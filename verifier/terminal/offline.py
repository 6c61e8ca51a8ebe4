"""The offline decision: may this terminal accept a pay code with no authority to ask?"""

from __future__ import annotations

from verifier.check import VerificationResult

__all__ = ["offline_decision"]


def offline_decision(
    result: VerificationResult, *, amount_fen: int, floor_fen: int, queued_fen: int
) -> str:
    """``OK`` when a terminal may accept this pay code offline, else the refusal code.

    The code must verify (payment policy, synced cache); the amount must fit the
    terminal's floor and what is left of the card's offline limit (``ol``) after the
    payments this terminal holds for the card and has not uploaded yet.
    """
    if not result.ok or result.credential is None:
        return result.code.value
    if amount_fen > floor_fen:
        return "OFFLINE_FLOOR_EXCEEDED"
    limit = result.credential.offline_limit_fen or 0
    if queued_fen + amount_fen > limit:
        return "OFFLINE_LIMIT_EXCEEDED"
    return "OK"
