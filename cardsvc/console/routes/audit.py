"""The audit log for auditors: newest first, by page or by subject, with the chain check."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from sqlalchemy.orm import Session

from cardsvc.console import _i18n as i18n
from cardsvc.console._deps import Auditor, page_number, read
from cardsvc.console._pages import ConsoleRoute, render
from cardsvc.console._views import AuditRow, audit_row
from cardsvc.services import audit, officers

__all__ = ["router"]

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)


@router.get("/audit")
async def audit_page(request: Request, visit: Auditor) -> Response:
    subject = request.query_params.get("subject", "").strip()[:128]
    if any(ord(char) < 0x20 for char in subject):
        subject = ""
    wanted = page_number(request)
    lang = visit.lang

    def actor_label(label: str, names: dict[int, str]) -> str:
        kind, _, number = label.partition(":")
        if kind == "officer" and number.isdigit():
            return f"{names.get(int(number), '?')} (#{number})"
        key = "actor." + label
        return i18n.translate(lang, key) if i18n.has_key(key) else label

    def action_label(action: str) -> str:
        key = "audit.action." + action
        return i18n.translate(lang, key) if i18n.has_key(key) else action

    def work(session: Session) -> tuple[audit.ChainCheck, list[AuditRow], int, int]:
        chain = audit.verify_chain(session)
        names = {officer.id: officer.name for officer in officers.list_officers(session)}
        paged = audit.audit_page(session, page=wanted, subject=subject or None)
        rows = [audit_row(entry, actor_label=actor_label(entry.actor, names),
                          action_label=action_label(entry.action)) for entry in paged.entries]
        return chain, rows, paged.page, paged.pages

    chain, rows, page, pages = await read(visit, work)
    return render(visit, "audit.html", nav="audit", chain=chain, entries=rows, page=page,
                  pages=pages, subject=subject,
                  page_url=lambda number: "/audit?" + urlencode(
                      {"subject": subject, "page": number} if subject else {"page": number}))
