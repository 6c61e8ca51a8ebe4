"""Officers and issuer keys (supervisors)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from sqlalchemy.orm import Session

from cardsvc.api._present import officer_out
from cardsvc.api.deps import Ctx, roles
from cardsvc.api.routes._common import problems
from cardsvc.api.schemas import KeyOut, KeysOut, OfficerCreatedOut, OfficerIn, OfficerOut
from cardsvc.models import Officer
from cardsvc.roles import Role
from cardsvc.services import officers, trust
from cardsvc.services.audit import Actor

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["administration"])
Supervisor = Annotated[Officer, Depends(roles(Role.supervisor))]


@router.post("/officers", response_model=OfficerCreatedOut, status_code=201,
             responses=problems(401, 403, 422))
def add_officer(body: OfficerIn, ctx: Ctx, officer: Supervisor) -> OfficerCreatedOut:
    """Create an officer; the token is in this answer only."""

    def work(session: Session) -> OfficerCreatedOut:
        created, token = officers.create_officer(session, name=body.name, roles=body.roles,
                                                 actor=Actor.for_officer(officer),
                                                 now=ctx.clock())
        return OfficerCreatedOut(**officer_out(created).model_dump(), token=token)

    return ctx.database.transact(work)


@router.post("/officers/{officer_id}/deactivate", response_model=OfficerOut,
             responses=problems(401, 403, 404, 409))
def deactivate_officer(
    officer_id: Annotated[int, Path(ge=1, le=2**31 - 1)], ctx: Ctx, officer: Supervisor,
) -> OfficerOut:
    """The officer's token stops working at once; nobody can deactivate themself
    (409 OFFICER_IS_YOU). Deactivating an inactive officer changes nothing."""

    def work(session: Session) -> OfficerOut:
        return officer_out(officers.deactivate_officer(
            session, officer_id=officer_id, actor=Actor.for_officer(officer), now=ctx.clock()))

    return ctx.database.transact(work)


@router.get("/officers", response_model=list[OfficerOut], responses=problems(401, 403))
def list_officers(ctx: Ctx, _officer: Supervisor) -> list[OfficerOut]:
    return ctx.database.transact(
        lambda session: [officer_out(o) for o in officers.list_officers(session)],
        readonly=True)


def _keys(session: Session) -> KeysOut:
    return KeysOut(root_fingerprint=trust.root_fingerprint(session), keys=[
        KeyOut(kid=key.kid, state=key.state.value, valid_from=key.valid_from,
               valid_until=key.valid_until) for key in trust.issuer_keys(session)])


@router.get("/keys", response_model=KeysOut, responses=problems(503))
def list_keys(ctx: Ctx) -> KeysOut:
    """Public: the root fingerprint to pin and the issuer keys' states."""
    return ctx.database.transact(_keys, readonly=True)


@router.post("/keys/rotate", response_model=KeysOut, responses=problems(401, 403, 409))
def rotate(ctx: Ctx, officer: Supervisor) -> KeysOut:
    """The published next key becomes active; a new next key is published."""

    def work(session: Session) -> KeysOut:
        trust.rotate_keys(session, keyring=ctx.keyring, kid_prefix=ctx.settings.kid_prefix,
                          actor=Actor.for_officer(officer),
                          now=ctx.clock())
        return _keys(session)

    return ctx.database.transact(work)
