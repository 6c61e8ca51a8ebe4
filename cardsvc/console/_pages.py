"""Who is asking and in which language, rendering pages, and refusals as HTML pages.

Every console route runs through :class:`ConsoleRoute`: a refusal raised anywhere in a
handler or its dependencies (not signed in, wrong role, bad CSRF token, a domain error with
its class's ``status``) becomes a page in the visitor's language, never problem+json and
never a traceback.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from cardsvc.console import _i18n as i18n
from cardsvc.console._auth import (
    SESSION_COOKIE,
    SessionClaims,
    SessionKeys,
    load_session_key,
    token_binding,
)
from cardsvc.models import Officer
from cardsvc.roles import Role
from cardsvc.services import officers
from cardsvc.services.errors import DomainError

if TYPE_CHECKING:
    from cardsvc.api._context import AppContext

__all__ = [
    "AUDITORS",
    "READERS",
    "REGISTRARS",
    "SUPERVISORS",
    "ConsoleRoute",
    "Refusal",
    "SignInRequired",
    "Visit",
    "error_page",
    "in_db",
    "open_visit",
    "redirect",
    "render",
    "session_keys",
]

T = TypeVar("T")
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
LANG_COOKIE = "fmc_lang"
REGISTRARS = frozenset({Role.registrar})
SUPERVISORS = frozenset({Role.supervisor})
AUDITORS = frozenset({Role.auditor})
READERS = REGISTRARS | SUPERVISORS
_CONSOLE_ROLES = READERS | AUDITORS
_keys_lock = threading.Lock()
_log = logging.getLogger("cardsvc.console")

# Everything comes from this app: no CDN, no inline script; inline SVG and data: images only.
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",  # personal data and one-time codes stay off disk caches
}


class SignInRequired(Exception):
    """No (valid) session: go to the sign-in page and come back here afterwards."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class Refusal(Exception):
    """A request the console refuses with an HTML page (403, 404, ...)."""

    def __init__(self, status: int, code: str, *, visit: Visit | None = None,
                 required_roles: frozenset[Role] = frozenset()) -> None:
        super().__init__(code)
        self.status, self.code = status, code
        self.visit, self.required_roles = visit, required_roles


@dataclass(frozen=True, slots=True)
class OfficerView:
    id: int
    name: str
    roles: frozenset[Role]


@dataclass(frozen=True, slots=True)
class Permissions:
    read: bool  # search, persons, cards
    register: bool  # enrol, passports, issue, provisioning codes
    supervise: bool  # revoke, suspend, reinstate
    audit: bool

    @staticmethod
    def of(roles: frozenset[Role]) -> Permissions:
        return Permissions(bool(roles & READERS), bool(roles & REGISTRARS),
                           bool(roles & SUPERVISORS), bool(roles & AUDITORS))


@dataclass(slots=True)
class Visit:
    """One request to the console: the app context, the language and the officer."""

    request: Request
    ctx: AppContext
    keys: SessionKeys
    lang: str
    lang_from_query: bool
    officer: OfficerView | None = None
    session: SessionClaims | None = None
    cookies_to_set: dict[str, tuple[str, int]] = field(default_factory=dict)

    @property
    def can(self) -> Permissions:
        return Permissions.of(self.officer.roles if self.officer else frozenset())

    @property
    def csrf(self) -> str:
        return "" if self.session is None else self.keys.csrf_token(self.session.session_id)

    def now(self) -> datetime:
        return self.ctx.clock()

    def check_csrf(self, unverified_token: str) -> None:
        if self.session is None or not self.keys.check_csrf(self.session.session_id,
                                                            unverified_token):
            raise Refusal(403, "CSRF_FAILED", visit=self)


def context_of(request: Request) -> AppContext:
    context: AppContext = request.app.state.context
    return context


def session_keys(request: Request) -> SessionKeys:
    """The app's session keys, made on first use from the data dir's key file."""
    state = request.app.state
    keys = getattr(state, "console_session_keys", None)
    if keys is None:
        with _keys_lock:
            keys = getattr(state, "console_session_keys", None)
            if keys is None:
                keys = SessionKeys(load_session_key(context_of(request).settings.data_dir))
                state.console_session_keys = keys
    assert isinstance(keys, SessionKeys)
    return keys


async def in_db(ctx: AppContext, work: Callable[[Session], T], *, readonly: bool = False) -> T:
    """Run ``work`` in one transaction off the event loop (all or nothing)."""
    def run() -> T:
        return ctx.database.transact(work, readonly=readonly)

    return await run_in_threadpool(run)


def _language(request: Request) -> tuple[str, bool]:
    query = request.query_params.get("lang")
    if query in i18n.LANGUAGES:
        return query, True
    return i18n.choose_language(cookie=request.cookies.get(LANG_COOKIE),
                                accept_language=request.headers.get("accept-language")), False


def _bare_visit(request: Request) -> Visit:
    lang, from_query = _language(request)
    return Visit(request, context_of(request), session_keys(request), lang, from_query)


async def open_visit(request: Request, *, need: frozenset[Role] | None) -> Visit:
    """The visit with its officer. ``need``: None for public pages, else the roles of which
    one is required (an empty set: any signed-in officer)."""
    visit = _bare_visit(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    claims = None if cookie is None else visit.keys.open(
        cookie, now=int(visit.now().timestamp()))
    if claims is not None:
        def load(session: Session) -> OfficerView | None:
            officer = session.get(Officer, claims.officer_id)
            if officer is None or not officer.active:
                return None
            if token_binding(officer.token_hash) != claims.binding:
                return None  # the officer's token was replaced since this sign-in
            if officers.console_session_ended(session, session_id=claims.session_id):
                return None  # signed out, perhaps through another process
            return OfficerView(officer.id, officer.name, officer.role_set)

        visit.officer = await in_db(visit.ctx, load, readonly=True)
        visit.session = claims if visit.officer is not None else None
    if need is None:
        return visit
    if visit.officer is None:
        raise SignInRequired(_this_path(request))
    if need and not visit.officer.roles & need:
        raise Refusal(403, "FORBIDDEN", visit=visit, required_roles=need)
    return visit


def _this_path(request: Request) -> str:
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    path = request.url.path
    return path + ("?" + urlencode(query) if query and request.method == "GET" else "")


def _lang_url(request: Request, lang: str) -> str:
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    return request.url.path + "?" + urlencode([*query, ("lang", lang)])


_env = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR), autoescape=True, undefined=StrictUndefined,
    trim_blocks=True, lstrip_blocks=True,
)


def render(
    visit: Visit, template: str, *, status: int = 200, nav: str = "",
    notice_key: str | None = None, **values: Any,
) -> HTMLResponse:
    lang = visit.lang

    def t(key: str, **params: object) -> str:
        return i18n.translate(lang, key, **params)

    env = _env.overlay()
    env.filters.update(
        entitlement_label=lambda name: i18n.translate(lang, "entitlement." + str(name)),
        role_label=lambda name: i18n.translate(lang, "role." + str(name)),
        field_label=lambda name: i18n.translate(lang, "field." + str(name)),
    )
    context: dict[str, Any] = {
        "t": t, "lang": lang, "languages": i18n.LANGUAGE_NAMES,
        "lang_url": lambda code: _lang_url(visit.request, code),
        "errmsg": lambda code: i18n.error_message(lang, code),
        "country": lambda code: i18n.country_name(lang, code),
        "frequent_countries": lambda: i18n.country_options(lang, frequent=True),
        "all_countries": lambda: i18n.country_options(lang, frequent=False),
        "frequent_codes": i18n.FREQUENT_COUNTRIES,
        "static": lambda name: f"/console/static/{name}",
        "officer": visit.officer,
        "officer_roles": sorted(visit.officer.roles) if visit.officer else [],
        "can": visit.can, "csrf": visit.csrf, "nav": nav,
        "page_id": template.removesuffix(".html"),
        "notice": t("notice." + notice_key) if notice_key else "",
        "notice_key": notice_key or "",
    }
    context.update(values)  # a page may override, e.g. the sign-in form's own CSRF token
    page = env.get_template(template).render(context)
    response = HTMLResponse(page, status_code=status, headers=_SECURITY_HEADERS)
    _finish(visit, response)
    return response


def redirect(visit: Visit, location: str) -> RedirectResponse:
    response = RedirectResponse(location, status_code=303)
    _finish(visit, response)
    return response


def _finish(visit: Visit, response: Response) -> None:
    secure = visit.request.url.scheme == "https"
    if visit.lang_from_query:
        response.set_cookie(LANG_COOKIE, visit.lang, max_age=365 * 86400, samesite="lax",
                            secure=secure, httponly=True)
    for name, (value, max_age) in visit.cookies_to_set.items():
        if max_age <= 0:
            response.delete_cookie(name, path="/", secure=secure, httponly=True,
                                   samesite="strict")
        else:
            response.set_cookie(name, value, max_age=max_age, path="/", secure=secure,
                                httponly=True, samesite="strict")


def error_page(
    request: Request, status: int, code: str, *, visit: Visit | None = None,
    required_roles: frozenset[Role] = frozenset(),
) -> Response:
    visit = visit or _bare_visit(request)
    return render(visit, "error.html", status=status, status_code=status, code=code,
                  required_roles=sorted(required_roles & _CONSOLE_ROLES) or sorted(
                      required_roles))


class ConsoleRoute(APIRoute):
    """Turns refusals raised by console handlers into HTML pages or a sign-in redirect."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired as need:
                target = "/sign-in?" + urlencode({"next": need.next_path})
                return RedirectResponse(target, status_code=303)
            except Refusal as refusal:
                return error_page(request, refusal.status, refusal.code, visit=refusal.visit,
                                  required_roles=refusal.required_roles)
            except DomainError as error:
                return error_page(request, error.status, error.code)
            except RequestValidationError:
                return error_page(request, 404, "NOT_FOUND")
            except StarletteHTTPException as error:
                return error_page(request, error.status_code, _http_code(error.status_code))
            except (DBAPIError, PoolTimeout) as error:
                _log.error("database error: %s", type(error).__name__, exc_info=error)
                return error_page(request, 503, "DATABASE_UNAVAILABLE")
            except Exception:  # a bug: logged, and the officer sees a page, not a trace
                _log.exception("console page failed")
                return error_page(request, 500, "INTERNAL_ERROR")

        return guarded


def _http_code(status: int) -> str:
    codes: Mapping[int, str] = {400: "BAD_REQUEST", 404: "NOT_FOUND", 413: "REQUEST_TOO_LARGE"}
    return codes.get(status, "BAD_REQUEST")
