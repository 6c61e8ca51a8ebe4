"""Issuing cards, reading them, new provisioning codes, revoke / suspend / reinstate."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response
from sqlalchemy.orm import Session

from cardsvc.api._present import card_out, code_out
from cardsvc.api.deps import Ctx, PendingOfficer, roles, roles_in_transaction
from cardsvc.api.routes._common import CARD_NUMBER_PATTERN, json_answer, problems
from cardsvc.api.schemas import (
    CardIssuedOut,
    CardIssueIn,
    CardOut,
    CardStateIn,
    ProvisioningCodeOut,
)
from cardsvc.models import Officer
from cardsvc.roles import Role
from cardsvc.services import cards
from cardsvc.services.audit import Actor

__all__ = ["router"]

router = APIRouter(prefix="/v1/cards", tags=["cards"])
CardNumber = Annotated[str, Path(pattern=CARD_NUMBER_PATTERN)]


@router.post("", response_model=CardIssuedOut, status_code=201,
             responses=problems(401, 403, 404, 409, 422))
def issue(
    body: CardIssueIn, ctx: Ctx,
    pending: Annotated[PendingOfficer, Depends(roles_in_transaction(Role.registrar))],
) -> Response:
    """Issue a card; the answer holds the one-time provisioning code (shown once)."""

    def work(session: Session) -> CardIssuedOut:
        officer = pending.check(session)  # first thing, in the issue's own transaction
        issued = cards.issue_card(
            session, foreigner_code=body.foreigner_code, entitlements=body.entitlements,
            valid_until=body.valid_until, actor=Actor.for_officer(officer), now=ctx.clock(),
            offline_limit_fen=(ctx.settings.default_offline_limit_fen
                               if body.offline_limit_fen is None else body.offline_limit_fen),
            replace_active=body.replace_active,
            provisioning_ttl_seconds=ctx.settings.provisioning_ttl_seconds,
            status_list_size=ctx.settings.status_list_size,
        )
        return CardIssuedOut(card_number=issued.card.card_number,
                             provisioning_code=issued.provisioning_code,
                             provisioning_expires=issued.provisioning_expires,
                             card=card_out(issued.card, body.foreigner_code))

    return json_answer(ctx.database.transact(work), status_code=201)


@router.get("/{card_number}", response_model=CardOut, responses=problems(401, 403, 404, 422))
def get_card(
    card_number: CardNumber, ctx: Ctx,
    _officer: Annotated[Officer, Depends(roles(Role.registrar, Role.supervisor))],
) -> CardOut:
    def work(session: Session) -> CardOut:
        card = cards.get_card(session, card_number=card_number)
        return card_out(card, card.person.foreigner_code)

    return ctx.database.transact(work, readonly=True)


@router.post("/{card_number}/provisioning-codes", response_model=ProvisioningCodeOut,
             status_code=201, responses=problems(401, 403, 404, 409, 422))
def new_code(
    card_number: CardNumber, ctx: Ctx,
    officer: Annotated[Officer, Depends(roles(Role.registrar))],
) -> ProvisioningCodeOut:
    """A new one-time code for this card (a new phone); older unused codes stop working."""
    return ctx.database.transact(lambda session: code_out(cards.new_provisioning_code(
        session, card_number=card_number, actor=Actor.for_officer(officer), now=ctx.clock(),
        provisioning_ttl_seconds=ctx.settings.provisioning_ttl_seconds)))


def _state_route(action: cards.CardAction, summary: str) -> None:
    @router.post(f"/{{card_number}}/{action}", response_model=CardOut, summary=summary,
                 name=f"{action}_card", responses=problems(401, 403, 404, 409, 422))
    def change(
        card_number: CardNumber, ctx: Ctx,
        officer: Annotated[Officer, Depends(roles(Role.supervisor))],
        body: CardStateIn | None = None,
    ) -> CardOut:
        reason = "" if body is None else body.reason

        def work(session: Session) -> CardOut:
            card = cards.change_card_state(session, card_number=card_number, action=action,
                                           reason=reason, actor=Actor.for_officer(officer),
                                           now=ctx.clock())
            return card_out(card, card.person.foreigner_code)

        return ctx.database.transact(work)


_state_route("revoke", "Revoke a card for good (status 1)")
_state_route("suspend", "Suspend a card (status 2)")
_state_route("reinstate", "Reinstate a suspended card (status 0)")
