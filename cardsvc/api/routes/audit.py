"""The audit log for auditors, with the result of walking the hash chain."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from cardsvc.api._present import audit_out
from cardsvc.api.deps import Ctx, roles
from cardsvc.api.routes._common import problems
from cardsvc.api.schemas import AuditOut, ChainOut
from cardsvc.models import Officer
from cardsvc.roles import Role
from cardsvc.services import audit
from cardsvc.services.errors import Invalid

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["audit"])


@router.get("/audit", response_model=AuditOut, responses=problems(401, 403, 422))
def read_audit(
    ctx: Ctx, _officer: Annotated[Officer, Depends(roles(Role.auditor))],
    after_seq: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    subject: Annotated[str | None, Query(max_length=128, pattern=r"^[^\x00-\x1f\x7f]*$")] = None,
    anchor: Annotated[list[str] | None, Query(max_length=100)] = None,
    page: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> AuditOut:
    """Entries after ``after_seq`` (oldest first) and the check of the whole chain.

    ``page=N`` instead pages from the newest entry, 50 a page, as the console does (a page
    past the end is the last one; ``after_seq`` and ``limit`` then do not apply).

    ``anchor=SEQ:HASH`` (repeatable): entry hashes the caller kept outside the database;
    the chain must still hold each of them (a consistently rewritten history shows).
    """
    try:
        anchors = [audit.AuditAnchor.parse(text) for text in anchor or []]
    except ValueError as error:
        raise Invalid("BAD_ANCHOR", str(error)) from None

    def work(session: Session) -> AuditOut:
        check = audit.verify_chain(session, anchors=anchors)
        chain = ChainOut(ok=check.ok, entries=check.entries, head_seq=check.head_seq,
                         head_hash=check.head_hash, broken_at=check.broken_at,
                         reason=check.reason)
        if page is not None:
            paged = audit.audit_page(session, page=page, subject=subject)
            return AuditOut(chain=chain, entries=[audit_out(entry) for entry in paged.entries],
                            next_after_seq=None, page=paged.page, pages=paged.pages)
        entries = audit.list_audit(session, after_seq=after_seq, limit=limit, subject=subject)
        return AuditOut(
            chain=chain,
            entries=[audit_out(entry) for entry in entries],
            next_after_seq=entries[-1].seq if len(entries) == limit else None,
        )

    return ctx.database.transact(work, readonly=True)
