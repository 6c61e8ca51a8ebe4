"""Officers for supervisors: the list, a new officer (its token shown once), deactivation."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sqlalchemy.orm import Session

from cardsvc.console._deps import Supervisor, SupervisorForm, actor_of, notice_of, read
from cardsvc.console._pages import ConsoleRoute, Refusal, Visit, in_db, redirect, render
from cardsvc.console._views import format_time
from cardsvc.roles import ALL_ROLES
from cardsvc.services import officers
from cardsvc.services.audit import Actor
from cardsvc.services.errors import DomainError

__all__ = ["router"]

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)


async def _officers_page(visit: Visit, values: dict[str, object], errors: dict[str, str],
                         *, status: int = 200, notice_key: str | None = None,
                         created: dict[str, str] | None = None) -> Response:
    def work(session: Session) -> list[dict[str, object]]:
        return [{"id": officer.id, "name": officer.name, "roles": sorted(officer.role_set),
                 "active": officer.active, "created_at": format_time(officer.created_at)}
                for officer in officers.list_officers(session)]

    listed = await read(visit, work)
    return render(visit, "officers.html", status=status, nav="officers", notice_key=notice_key,
                  officer_list=listed, values=values, errors=errors, created=created,
                  role_names=sorted(ALL_ROLES))


@router.get("/officers")
async def officers_page(request: Request, visit: Supervisor) -> Response:
    return await _officers_page(visit, {"name": "", "roles": []}, {},
                                notice_key=notice_of(request))


@router.post("/officers")
async def add_officer(post: SupervisorForm) -> Response:
    visit = post.visit
    name = " ".join(post.fields.get("name", "").split())
    roles = [value for value in post.form.getlist("roles") if isinstance(value, str)]
    values: dict[str, object] = {"name": name, "roles": roles}
    errors = {}
    if not name:
        errors["name"] = "REQUIRED"
    if not roles:
        errors["roles"] = "NO_ROLE"
    if errors:
        return await _officers_page(visit, values, errors, status=422)
    now = visit.now()

    def work(session: Session) -> dict[str, str]:
        officer, token = officers.create_officer(session, name=name, roles=roles,
                                                 actor=actor_of(session, visit), now=now)
        return {"id": str(officer.id), "name": officer.name, "token": token}

    try:
        created = await in_db(visit.ctx, work)
    except DomainError as error:
        field = {"INVALID_NAME": "name", "UNKNOWN_ROLE": "roles"}.get(error.code)
        return await _officers_page(visit, values, {field or "name": error.code},
                                    status=error.status)
    return await _officers_page(visit, {"name": "", "roles": []}, {}, created=created)


@router.post("/officers/{officer_id}/deactivate")
async def deactivate_officer(officer_id: str, post: SupervisorForm) -> Response:
    visit = post.visit
    if not officer_id.isdigit() or len(officer_id) > 9:
        raise Refusal(404, "OFFICER_NOT_FOUND", visit=visit)
    assert visit.officer is not None
    try:  # the service's rule, asked before the confirmation page rather than after it
        officers.check_may_deactivate(officer_id=int(officer_id),
                                      actor=Actor.for_officer_id(visit.officer.id))
    except DomainError as error:
        raise Refusal(error.status, error.code, visit=visit) from error
    if post.fields.get("confirmed") != "1":
        return render(visit, "confirm_simple.html", nav="officers",
                      action=f"/officers/{officer_id}/deactivate",
                      question="officers.confirm_question", effect="officers.confirm_effect",
                      yes="officers.confirm_yes", cancel="/officers")
    now = visit.now()

    def work(session: Session) -> None:
        officers.deactivate_officer(session, officer_id=int(officer_id),
                                    actor=actor_of(session, visit), now=now)

    try:
        await in_db(visit.ctx, work)
    except DomainError as error:
        raise Refusal(error.status, error.code, visit=visit) from error
    return redirect(visit, "/officers?notice=deactivated")
