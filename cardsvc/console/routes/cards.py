"""Issuing a card, a card's page, a new provisioning code, and revoke / suspend / reinstate
(supervisors, with a reason and a confirmation)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sqlalchemy.orm import Session

from cardsvc.console import _forms as forms
from cardsvc.console import _i18n as i18n
from cardsvc.console._codes import code_view, provisioning_page
from cardsvc.console._deps import (
    Reader,
    Registrar,
    RegistrarForm,
    Supervisor,
    SupervisorForm,
    actor_of,
    load_person,
    notice_of,
    read,
)
from cardsvc.console._pages import ConsoleRoute, Refusal, Visit, in_db, redirect, render
from cardsvc.console._views import (
    CardView,
    PersonView,
    card_target,
    card_view,
    format_time,
    person_view,
)
from cardsvc.services import cards
from cardsvc.services.errors import DomainError

__all__ = ["router"]

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
_ACTIONS: dict[str, str] = {"revoke": "revoked", "suspend": "suspended",
                            "reinstate": "reinstated"}
_STATE_OF_NOTICE = {"revoked": "revoked", "suspended": "suspended", "reinstated": "active"}


# --- issuing ------------------------------------------------------------------------------

def _issue_page(visit: Visit, person: PersonView, values: dict[str, object],
                errors: dict[str, str], *, form_error: str | None = None,
                status: int = 200) -> Response:
    return render(visit, "issue.html", status=status, nav="search", person=person,
                  values=values, errors=errors, form_error=form_error,
                  usable_card=person.usable_card, entitlement_names=forms.ENTITLEMENT_NAMES)


@router.get("/persons/{foreigner_code}/cards/new")
async def issue_form(foreigner_code: str, visit: Registrar) -> Response:
    person = await load_person(visit, foreigner_code)
    values = forms.card_defaults(
        today=visit.now().date(),
        default_offline_limit_fen=visit.ctx.settings.default_offline_limit_fen)
    return _issue_page(visit, person, values, {})


@router.post("/persons/{foreigner_code}/cards/new")
async def issue(foreigner_code: str, post: RegistrarForm) -> Response:
    visit = post.visit
    person = await load_person(visit, foreigner_code)
    settings = visit.ctx.settings
    values, cleaned, problems = forms.read_card(
        post.fields,
        [value for value in post.form.getlist("entitlements") if isinstance(value, str)],
        default_offline_limit_fen=settings.default_offline_limit_fen)
    if cleaned is None:
        return _issue_page(visit, person, values, problems, status=422)
    now = visit.now()

    def work(session: Session) -> tuple[dict[str, str], PersonView]:
        issued = cards.issue_card(
            session, foreigner_code=foreigner_code, entitlements=cleaned.entitlements,
            valid_until=cleaned.valid_until, actor=actor_of(session, visit), now=now,
            offline_limit_fen=cleaned.offline_limit_fen,
            replace_active=cleaned.replace_active,
            provisioning_ttl_seconds=settings.provisioning_ttl_seconds,
            status_list_size=settings.status_list_size)
        code = code_view(issued.card.card_number, issued.provisioning_code,
                         format_time(issued.provisioning_expires))
        return code, person_view(issued.card.person)

    try:
        code, holder = await in_db(visit.ctx, work)
    except DomainError as error:
        field = forms.field_for("card", error.code)
        if field == "replace_active" and person.usable_card is None:
            field = None
        return _issue_page(visit, person, values, {field: error.code} if field else {},
                           form_error=None if field else error.code, status=error.status)
    return provisioning_page(visit, holder, [code],
                             heading=i18n.translate(visit.lang, "prov.issued"))


# --- a card, a new code -------------------------------------------------------------------

async def _card(visit: Visit, card_number: str) -> CardView:
    return await read(visit, lambda session: card_view(
        cards.get_card(session, card_number=card_number)))


@router.get("/cards/{card_number}")
async def card_page(request: Request, card_number: str, visit: Reader) -> Response:
    card = await _card(visit, card_number)
    notice = notice_of(request)
    if notice in _STATE_OF_NOTICE and _STATE_OF_NOTICE[notice] != card.state:
        notice = None  # a link cannot announce a change the card does not show
    return render(visit, "card.html", nav="search", notice_key=notice, card=card)


@router.post("/cards/{card_number}/provisioning-code")
async def new_code(card_number: str, post: RegistrarForm) -> Response:
    visit = post.visit
    now = visit.now()
    ttl = visit.ctx.settings.provisioning_ttl_seconds

    def work(session: Session) -> tuple[dict[str, str], PersonView]:
        issued = cards.new_provisioning_code(session, card_number=card_number,
                                             actor=actor_of(session, visit), now=now,
                                             provisioning_ttl_seconds=ttl)
        holder = person_view(cards.get_card(session, card_number=card_number).person)
        return code_view(issued.card_number, issued.provisioning_code,
                         format_time(issued.provisioning_expires)), holder

    try:
        code, holder = await in_db(visit.ctx, work)
    except DomainError as error:
        raise Refusal(error.status, error.code, visit=visit) from error
    return provisioning_page(visit, holder, [code],
                             heading=i18n.translate(visit.lang, "prov.new_code"))


# --- revoke, suspend, reinstate -----------------------------------------------------------

def _change_page(visit: Visit, card: CardView, action: str, values: dict[str, str],
                 errors: dict[str, str], *, form_error: str | None = None,
                 status: int = 200) -> Response:
    return render(visit, "state_change.html", status=status, nav="search", card=card,
                  action=action, values=values, errors=errors, form_error=form_error)


async def _changeable(visit: Visit, card_number: str, action: str) -> CardView:
    if action not in _ACTIONS:
        raise Refusal(404, "NOT_FOUND", visit=visit)
    card = await _card(visit, card_number)
    if action not in card.actions:
        raise Refusal(409, f"CARD_{card.state.upper()}", visit=visit)
    return card


@router.get("/cards/{card_number}/{action}")
async def change_form(card_number: str, action: str, visit: Supervisor) -> Response:
    card = await _changeable(visit, card_number, action)
    return _change_page(visit, card, action, {"reason": ""}, {})


@router.post("/cards/{card_number}/{action}")
async def change_state(card_number: str, action: str, post: SupervisorForm) -> Response:
    visit, form = post.visit, post.fields
    card = await _changeable(visit, card_number, action)
    values, reason, problems = forms.read_reason(form)
    if reason is None:
        return _change_page(visit, card, action, values, problems, status=422)
    if form.get("confirmed") != "1":
        target = card_target(action)
        return render(visit, "confirm.html", nav="search", card=card, action=action,
                      reason=reason, target=target)
    now = visit.now()

    def work(session: Session) -> None:
        cards.change_card_state(session, card_number=card_number,
                                action=action,  # type: ignore[arg-type]  # checked above
                                reason=reason, actor=actor_of(session, visit), now=now)

    try:
        await in_db(visit.ctx, work)
    except DomainError as error:
        field = forms.field_for("change", error.code)
        return _change_page(visit, card, action, values, {field: error.code} if field else {},
                            form_error=None if field else error.code, status=error.status)
    return redirect(visit, f"/cards/{card_number}?notice={_ACTIONS[action]}")
