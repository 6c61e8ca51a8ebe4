"""One access line per request: method, route template, status, duration; no secrets."""

from __future__ import annotations

import logging
import re

import pytest
from cardsvc_kit import Authority, device_key

_LINE = re.compile(r"^(?P<method>[A-Z]+) (?P<route>\S+) (?P<status>\d{3}) \d+\.\d ms$")


def _lines(caplog: pytest.LogCaptureFixture) -> list[re.Match[str]]:
    records = [r for r in caplog.records if r.name == "cardsvc.access"]
    matches = [_LINE.match(r.getMessage()) for r in records]
    assert all(matches), [r.getMessage() for r in records]
    return [m for m in matches if m is not None]


def test_one_line_per_request_with_the_route_template(
    authority: Authority, caplog: pytest.LogCaptureFixture
) -> None:
    passport = "PX4471029"
    person = authority.enrol(passport={"number": passport, "country": "NGA",
                                       "expires": "2031-01-01"})
    issued = authority.issue(person["foreigner_code"])
    bundle = authority.provision(issued["provisioning_code"], device_key(7))
    card_number = bundle["card_number"]
    pay_code = "FMC1:NOT-A-REAL-PAY-CODE"
    secrets = {authority.admin_token, issued["provisioning_code"], person["foreigner_code"],
               card_number, passport, pay_code}
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="cardsvc.access"):
        requests = [
            ("GET", f"/v1/cards/{card_number}", {}, "GET /v1/cards/{card_number} 200"),
            ("POST", f"/v1/cards/{card_number}/revoke", {"json": {"reason": "test"}},
             "POST /v1/cards/{card_number}/revoke 200"),
            ("GET", f"/v1/persons?passport={passport}&country=NGA", {},
             "GET /v1/persons 200"),
            ("GET", f"/v1/persons/{person['foreigner_code']}", {"auth": False},
             "GET /v1/persons/{foreigner_code} 401"),
            ("POST", "/v1/provision", {"json": {"code": issued["provisioning_code"]},
                                       "auth": False}, "POST /v1/provision 422"),
            ("POST", "/v1/payments", {"json": {"pay_code": pay_code, "amount_fen": 100,
                                               "idempotency_key": "k1"}, "auth": False},
             "POST /v1/payments 401"),
            ("GET", f"/v1/no-such/{card_number}", {}, "GET <no-route> 404"),
            ("DELETE", f"/v1/cards/{card_number}", {}, "DELETE /v1/cards/{card_number} 405"),
        ]
        for method, path, extra, _ in requests:
            headers = authority.admin if extra.get("auth", True) else {}
            authority.client.request(method, path, headers=headers, json=extra.get("json"))
    lines = _lines(caplog)
    assert [f"{m['method']} {m['route']} {m['status']}" for m in lines] == \
        [expected for *_, expected in requests]
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert not [secret for secret in secrets if secret in text]
