"""The home page: search persons by name, foreigner code or passport."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from sqlalchemy.orm import Session

from cardsvc.console._deps import AnyOfficer, notice_of, page_number, read
from cardsvc.console._pages import ConsoleRoute, redirect, render
from cardsvc.console._search import search_persons
from cardsvc.console._views import SearchRow, search_row

__all__ = ["router"]

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)


@router.get("/")
async def home(request: Request, visit: AnyOfficer) -> Response:
    if not visit.can.read:
        if visit.can.audit:
            return redirect(visit, "/audit")
        return render(visit, "home.html", result=None, query="", page_url=str)
    query = " ".join(request.query_params.get("q", "").split())[:100]
    page = page_number(request)

    def work(session: Session) -> dict[str, Any]:
        found = search_persons(session, query=query, page=page)
        rows: list[SearchRow] = [search_row(person) for person in found.persons]
        return {"rows": rows, "total": found.total, "page": found.page, "pages": found.pages}

    result = await read(visit, work)
    return render(visit, "home.html", nav="search", notice_key=notice_of(request), query=query,
                  result=result,
                  page_url=lambda number: "/?" + urlencode({"q": query, "page": number}))
