"""What console handlers take as FastAPI dependencies, and the small steps they share.

``visiting(need)`` is the visit (language, officer) with its role check; ``posted(need)``
is a submitted form whose CSRF token held, with its visit. Refusals raised here become
pages through :class:`cardsvc.console._pages.ConsoleRoute`, like those of the handlers.

Example::

    @router.post("/keys/rotate")
    async def rotate_keys(post: SupervisorForm) -> Response:
        post.visit ...; post.fields["confirmed"]
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.datastructures import FormData, UploadFile

from cardsvc.console._pages import (
    AUDITORS,
    READERS,
    REGISTRARS,
    SUPERVISORS,
    Refusal,
    Visit,
    in_db,
    open_visit,
)
from cardsvc.console._views import PersonView, person_view
from cardsvc.models import Officer
from cardsvc.roles import Role
from cardsvc.services import persons
from cardsvc.services.audit import Actor
from cardsvc.services.errors import DomainError
from schemas.credential import FOREIGNER_CODE_PATTERN

__all__ = [
    "AnyOfficer",
    "AnyOfficerForm",
    "Auditor",
    "Posted",
    "Public",
    "Reader",
    "Registrar",
    "RegistrarForm",
    "Supervisor",
    "SupervisorForm",
    "actor_of",
    "check_code",
    "load_person",
    "notice_of",
    "page_number",
    "posted",
    "read",
    "read_form",
    "text_fields",
    "upload",
    "visiting",
]

T = TypeVar("T")
_NOTICES = frozenset({"enrolled", "linked", "existing", "passport_recorded", "passport_known",
                      "revoked", "suspended", "reinstated", "signed_out", "rotated", "portrait_set",
                      "deactivated"})
_CODE_PATH = re.compile(FOREIGNER_CODE_PATTERN)
_MAX_FORM_FIELDS = 40


@dataclass(frozen=True, slots=True)
class Posted:
    """A submitted form whose CSRF token held: its text fields and the whole form."""

    visit: Visit
    fields: dict[str, str]
    form: FormData


def visiting(need: frozenset[Role] | None) -> Callable[[Request], Awaitable[Visit]]:
    """The visit; ``need``: None for public pages, else the roles of which one is required
    (an empty set: any signed-in officer)."""
    async def visit(request: Request) -> Visit:
        return await open_visit(request, need=need)

    return visit


def posted(need: frozenset[Role]) -> Callable[..., Awaitable[Posted]]:
    """The form of a signed-in officer holding one of ``need``, after the CSRF check."""
    async def checked(request: Request, visit: Visit = Depends(visiting(need))) -> Posted:
        form = await read_form(request)
        fields = text_fields(form)
        visit.check_csrf(fields.get("csrf", ""))
        return Posted(visit, fields, form)

    return checked


Public = Annotated[Visit, Depends(visiting(None))]
AnyOfficer = Annotated[Visit, Depends(visiting(frozenset()))]
Reader = Annotated[Visit, Depends(visiting(READERS))]
Registrar = Annotated[Visit, Depends(visiting(REGISTRARS))]
Supervisor = Annotated[Visit, Depends(visiting(SUPERVISORS))]
Auditor = Annotated[Visit, Depends(visiting(AUDITORS))]
AnyOfficerForm = Annotated[Posted, Depends(posted(frozenset()))]
RegistrarForm = Annotated[Posted, Depends(posted(REGISTRARS))]
SupervisorForm = Annotated[Posted, Depends(posted(SUPERVISORS))]


async def read_form(request: Request) -> FormData:
    return await request.form(max_files=1, max_fields=_MAX_FORM_FIELDS)


def text_fields(form: FormData) -> dict[str, str]:
    return {name: value for name, value in form.multi_items() if isinstance(value, str)}


async def upload(form: FormData, name: str, *, max_bytes: int) -> bytes | None:
    uploaded = form.get(name)
    if not isinstance(uploaded, UploadFile) or not uploaded.filename:
        return None
    return await uploaded.read(max_bytes + 1)  # one byte over the cap is enough to refuse


async def load_person(visit: Visit, foreigner_code: str) -> PersonView:
    """The person as pages show it; a code that cannot be one is 404 without a lookup."""
    check_code(visit, foreigner_code)
    return await read(visit, lambda session: person_view(
        persons.get_person(session, foreigner_code=foreigner_code)))


async def read(visit: Visit, work: Callable[[Session], T]) -> T:
    """Read-only work; a domain error (an unknown person, say) becomes its page."""
    try:
        return await in_db(visit.ctx, work, readonly=True)
    except DomainError as error:
        raise Refusal(error.status, error.code, visit=visit) from error


def actor_of(session: Session, visit: Visit) -> Actor:
    assert visit.officer is not None
    officer = session.get(Officer, visit.officer.id)
    assert officer is not None
    return Actor.for_officer(officer)


def notice_of(request: Request) -> str | None:
    notice = request.query_params.get("notice")
    return notice if notice in _NOTICES else None


def page_number(request: Request) -> int:
    text = request.query_params.get("page", "1")
    return int(text) if text.isdigit() and len(text) < 7 else 1


def check_code(visit: Visit, foreigner_code: str) -> None:
    if not _CODE_PATH.match(foreigner_code):
        raise Refusal(404, "PERSON_NOT_FOUND", visit=visit)
