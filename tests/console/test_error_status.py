"""A domain error's HTTP status is its class's ``status``: the API's problem handler and the
console's error page both answer with it (the console once lacked PaymentRefused)."""

from __future__ import annotations

import pytest
from console_kit import Authority, error_code
from fastapi import APIRouter

from cardsvc.console._pages import ConsoleRoute
from cardsvc.services.errors import (
    Conflict,
    DomainError,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    PaymentRefused,
    TooManyRequests,
    Unauthenticated,
    Unavailable,
)

STATUSES: list[tuple[type[DomainError], int]] = [
    (DomainError, 400),
    (Invalid, 422),
    (NotFound, 404),
    (Conflict, 409),
    (Gone, 410),
    (Forbidden, 403),
    (Unauthenticated, 401),
    (PaymentRefused, 402),
    (TooManyRequests, 429),
    (Unavailable, 503),
]


def test_every_domain_error_class_is_in_the_table() -> None:
    assert {cls for cls, _ in STATUSES} == {DomainError, *DomainError.__subclasses__()}


@pytest.mark.parametrize(("error_class", "status"), STATUSES,
                         ids=[cls.__name__ for cls, _ in STATUSES])
def test_the_api_and_the_console_answer_with_the_class_status(
    authority: Authority, error_class: type[DomainError], status: int
) -> None:
    assert error_class.status == status

    def refuse() -> None:
        raise error_class("SOME_REFUSAL", "refused")

    api, console = APIRouter(), APIRouter(route_class=ConsoleRoute)
    api.add_api_route("/v1/test-refusal", refuse)
    console.add_api_route("/test-refusal", refuse)
    authority.app.include_router(api)
    authority.app.include_router(console)
    client = authority.client()

    answer = client.get("/v1/test-refusal")
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "SOME_REFUSAL"

    page = client.get("/test-refusal")
    assert page.status_code == status
    assert page.headers["content-type"].startswith("text/html")
    assert error_code(page.text) == "SOME_REFUSAL"
