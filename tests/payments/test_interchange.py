"""Payments between cities (P10, docs/FEDERATION.md): a Yiwu terminal charges a Hangzhou
card; Hangzhou holds the account and signs the receipt; exactly once across the hop with
injected faults on leg B, leg A, a Yiwu crash between the outbox and leg B, Hangzhou
unreachable (503, offline sale, upload forwarded and settled). Two authorities, two
databases, real HTTP between them; both ledgers sum to zero after every test."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest
from federation_kit import federation_jwt
from payments_kit import PayCard, TerminalHandle
from sqlalchemy import func, select
from two_cities_kit import HZ, YW, TwoCities, accept, two_cities

from cardsvc.federation import held_federation
from cardsvc.models import Officer
from cardsvc.payments.forwarding import (
    CHARGE_PATH,
    ForwardPolicy,
    open_forward,
    resume_forwards,
)
from cardsvc.payments.interchange_models import ForwardedCharge, InterchangeCharge
from cardsvc.payments.merchants import terminal_of
from cardsvc.payments.models import LedgerAccount, LedgerEntry
from schemas.federation import IssuerState
from verifier.federation import trust_for
from verifier.receipts import verify_receipt

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(scope="module", params=BACKENDS)
def _cities(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoCities]:
    with two_cities(request.param, tmp_path_factory.mktemp(f"cities-{request.param}")) as c:
        yield c


@pytest.fixture
def cities(_cities: TwoCities) -> Iterator[TwoCities]:
    _cities.link.down, _cities.link.lose_answers, _cities.link.garbled = False, 0, None
    _cities.link.sent.clear()
    yield _cities
    _cities.ledgers_ok()


def _account_total(world: object, key: str) -> int:
    database = world.database  # type: ignore[attr-defined]
    return int(database.transact(lambda session: session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount_fen), 0))
        .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
        .where(LedgerAccount.key == key)), readonly=True))


def _hz_card(cities: TwoCities, topup: int = 10_000) -> PayCard:
    return cities.hz.card(topup=topup)


def _charge(cities: TwoCities, terminal: TerminalHandle, code: str, amount: int,
            key: str | None = None) -> object:
    return cities.yw.charge(terminal, code, amount, key=key)


def _forward_rows(cities: TwoCities) -> dict[str, str]:
    return dict(cities.yw.database.transact(lambda session: session.execute(
        select(ForwardedCharge.g, ForwardedCharge.state)).tuples().all(), readonly=True))


def test_a_yiwu_terminal_charges_a_hangzhou_card(cities: TwoCities) -> None:
    card = _hz_card(cities)
    till = cities.yw.terminal()
    payable_before = _account_total(cities.hz, f"interchange:{YW}")
    receivable_before = _account_total(cities.yw, f"interchange:{HZ}")
    answer = cities.yw.charge(till, cities.hz.pay_code(card), 1_250, key="sale-1")
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["issuer"] == HZ and body["amount_fen"] == 1_250
    assert body["balance_fen"] == 8_750
    receipt = verify_receipt(body["receipt"], trust_list=trust_for(cities.claims, HZ))
    assert (receipt.issuer, receipt.merchant_id, receipt.terminal_id, receipt.amount_fen) == (
        HZ, till.merchant_id, till.terminal_id, 1_250)
    assert cities.hz.balance(card.card_number) == 8_750
    # Hangzhou owes the acquirer (payable, a credit); Yiwu is owed (receivable, a debit).
    assert _account_total(cities.hz, f"interchange:{YW}") - payable_before == -1_250
    assert _account_total(cities.yw, f"interchange:{HZ}") - receivable_before == 1_250
    assert _account_total(cities.yw, f"merchant:{till.merchant_id}") == -1_250
    assert [path for path, _ in cities.link.sent] == ["/v1/interauth/charges"]


def test_timeout_on_leg_a_the_retry_gets_the_stored_answer_and_sends_no_new_g(
        cities: TwoCities) -> None:
    card = _hz_card(cities)
    till = cities.yw.terminal()
    code = cities.hz.pay_code(card)
    first = cities.yw.charge(till, code, 500, key="lost-on-the-way-back")
    again = cities.yw.charge(till, code, 500, key="lost-on-the-way-back")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert len(cities.link.sent) == 1
    assert cities.hz.balance(card.card_number) == 9_500


def test_timeout_on_leg_b_after_hangzhou_committed_the_retry_replays(
        cities: TwoCities) -> None:
    card = _hz_card(cities)
    till = cities.yw.terminal()
    cities.link.lose_answers = 1  # Hangzhou charges, its answer never arrives
    answer = cities.yw.charge(till, cities.hz.pay_code(card), 700)
    assert answer.status_code == 201, answer.text
    sent = [g for _, g in cities.link.sent]
    assert len(sent) == 2 and sent[0] == sent[1]  # the retry carried the same G
    assert cities.hz.balance(card.card_number) == 9_300  # charged once


def test_yiwu_killed_between_the_outbox_and_leg_b_recovery_resumes(cities: TwoCities) -> None:
    card = _hz_card(cities)
    till = cities.yw.terminal()
    code = cities.hz.pay_code(card)
    key = secrets.token_hex(6)
    # What a Yiwu that died right after committing its outbox row leaves behind.
    from cardsvc.payments._idempotency import request_hash

    def outbox(session: object) -> None:
        terminal = terminal_of(session,  # type: ignore[arg-type]
                               session.get_one(Officer, till.officer_id))  # type: ignore[attr-defined]
        open_forward(session, g=f"{YW}:{till.terminal_id}:{key}", issuer=HZ,  # type: ignore[arg-type]
                     kind="charge", terminal=terminal, pay_code=code, amount_fen=300,
                     idempotency_key=key,
                     digest=request_hash("payment", {"pay_code": code, "amount_fen": 300}),
                     now=cities.clock())

    cities.yw.database.transact(outbox)
    cities.clock.advance(2)
    try:
        pending = cities.yw.charge(till, code, 300, key=key)  # in flight elsewhere: 202
        assert pending.status_code == 202, pending.text
        assert pending.headers["Retry-After"] == "1"
        assert pending.json()["status"] == "pending"
        assert cities.link.sent == []
        taken = resume_forwards(cities.yw.database, cities.link,
                                federation=lambda: cities.claims, clock=cities.clock,
                                policy=ForwardPolicy(sleep=lambda _s: None),
                                older_than_seconds=0)
        assert taken == 1
        assert _forward_rows(cities)[f"{YW}:{till.terminal_id}:{key}"] == "done"
        answer = cities.yw.charge(till, code, 300, key=key)
        assert answer.status_code == 201, answer.text
        assert len(cities.link.sent) == 1
        assert cities.hz.balance(card.card_number) == 9_700
    finally:
        cities.clock.now -= timedelta(seconds=2)


def test_a_refusal_at_hangzhou_is_the_terminals_answer(cities: TwoCities) -> None:
    card = _hz_card(cities, topup=100)
    till = cities.yw.terminal()
    code = cities.hz.pay_code(card)
    answer = cities.yw.charge(till, code, 5_000, key="too-much")
    assert answer.status_code == 402, answer.text
    assert answer.json()["code"] == "INSUFFICIENT_FUNDS"
    again = cities.yw.charge(till, code, 5_000, key="too-much")
    assert (again.status_code, again.json()["code"]) == (402, "INSUFFICIENT_FUNDS")
    assert cities.hz.balance(card.card_number) == 100


def test_hangzhou_unreachable_503_then_void_then_offline_sale_settles_at_hangzhou(
        cities: TwoCities) -> None:
    card = _hz_card(cities)
    till = cities.yw.terminal()
    code = cities.hz.pay_code(card)
    cities.link.down = True
    answer = cities.yw.charge(till, code, 900, key="while-down")
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    problem = answer.json()
    assert (problem["code"], problem["offline_allowed"], problem["issuer"]) == (
        "ISSUER_UNREACHABLE", True, HZ)
    g = f"{YW}:{till.terminal_id}:while-down"
    assert _forward_rows(cities)[g] == "voiding"  # the void could not be sent either
    # The terminal takes the sale offline; the upload waits while Hangzhou is down.
    item = {"pay_code": code, "amount_fen": 900, "idempotency_key": "offline-1",
            "accepted_at": cities.clock().isoformat()}
    waiting = cities.yw.http.post("/v1/payments/offline-batch", headers=till.headers,
                                  json={"items": [item]})
    assert waiting.status_code == 503 and waiting.json()["code"] == "ISSUER_UNREACHABLE"
    cities.link.down = False
    resume_forwards(cities.yw.database, cities.link, federation=lambda: cities.claims,
                    clock=cities.clock, policy=ForwardPolicy(sleep=lambda _s: None),
                    older_than_seconds=0)
    assert _forward_rows(cities)[g] == "void"
    # A late leg B for the voided G is refused at Hangzhou.
    late = cities.link.client.post(HZ, "/v1/interauth/charges", {
        "g": g, "pay_code": code, "amount_fen": 900, "merchant_id": till.merchant_id,
        "terminal_id": till.terminal_id}, idempotency_key=g, reason="late")
    assert (late.status_code, late.json()["code"]) == (409, "FORWARD_VOIDED")
    # The same G again from the terminal: the stored 503, never another G.
    assert cities.yw.charge(till, code, 900, key="while-down").status_code == 503
    settled = cities.yw.http.post("/v1/payments/offline-batch", headers=till.headers,
                                  json={"items": [item]})
    assert settled.status_code == 200, settled.text
    result = settled.json()["results"][0]
    assert (result["outcome"], result["idempotency_key"]) == (
        "settled", "offline-1"), result["code"]
    assert cities.hz.balance(card.card_number) == 9_100
    assert _account_total(cities.yw, f"merchant:{till.merchant_id}") == -900
    # Sent again: the stored answers, nothing moves twice.
    again = cities.yw.http.post("/v1/payments/offline-batch", headers=till.headers,
                                json={"items": [item]})
    assert again.json()["results"][0]["payment_id"] == result["payment_id"]
    assert cities.hz.balance(card.card_number) == 9_100


def test_charged_but_unanswered_is_reversed_by_the_void(cities: TwoCities) -> None:
    card = _hz_card(cities)
    till = cities.yw.terminal()
    cities.link.lose_answers = 2  # both attempts charge-or-replay at Hangzhou, unanswered
    answer = cities.yw.charge(till, cities.hz.pay_code(card), 400, key="reverse-me")
    assert answer.status_code == 503, answer.text
    g = f"{YW}:{till.terminal_id}:reverse-me"
    assert _forward_rows(cities)[g] == "void"
    assert cities.hz.balance(card.card_number) == 10_000  # charged, then reversed
    record = cities.hz.database.transact(lambda session: session.get_one(
        InterchangeCharge, (YW, g)).state, readonly=True)
    assert record == "reversed"
    assert _account_total(cities.yw, f"merchant:{till.merchant_id}") == 0


@pytest.mark.parametrize("garbled", [b"<html>502</html>", b"[1, 2]", b'"charged"',
                                     b'{"receipt": 5}', b'{"receipt": "a.b.c"}'],
                         ids=["not JSON", "a list", "a string", "a receipt that is not text",
                              "a receipt that does not verify"])
def test_attack_the_issuer_answers_a_forwarded_charge_with_garbage(
        cities: TwoCities, monkeypatch: pytest.MonkeyPatch, garbled: bytes) -> None:
    """Hangzhou charged, then Yiwu read garbage as its answer (a bug there, or a man in
    the middle): never a 500, the merchant is not credited, the void reverses the charge."""
    card = _hz_card(cities)
    till = cities.yw.terminal()
    monkeypatch.setattr(cities.link, "garbled", (CHARGE_PATH, 201, garbled))
    answer = cities.yw.charge(till, cities.hz.pay_code(card), 400, key="garbled")
    assert answer.status_code == 503, answer.text
    assert _forward_rows(cities)[f"{YW}:{till.terminal_id}:garbled"] == "void"
    assert cities.hz.balance(card.card_number) == 10_000  # charged, then reversed
    assert _account_total(cities.yw, f"merchant:{till.merchant_id}") == 0
    cities.ledgers_ok()


@pytest.mark.parametrize("garbled", [b"<html>502</html>", b"[1, 2]", b'{"jwt": 5}',
                                     b'{"jwt": "a.b.c"}'],
                         ids=["not JSON", "a list", "a report that is not text",
                              "a report that does not verify"])
def test_attack_the_other_city_answers_the_daily_report_with_garbage(
        cities: TwoCities, monkeypatch: pytest.MonkeyPatch, garbled: bytes) -> None:
    monkeypatch.setattr(cities.link, "garbled",
                        ("/v1/interauth/interchange-report", 200, garbled))
    result = _report(cities.yw, HZ, "interchange-reconcile")
    assert (result["reconciled"], result["code"], result["breaks"]) == (False, "MALFORMED", [])


def test_a_yiwu_card_at_a_yiwu_terminal_stays_a_same_city_charge(cities: TwoCities) -> None:
    card = cities.yw.card(topup=1_000)
    till = cities.yw.terminal()
    answer = cities.yw.charge(till, cities.yw.pay_code(card), 250)
    assert answer.status_code == 201, answer.text
    assert "issuer" not in answer.json()
    assert cities.link.sent == []
    assert cities.yw.balance(card.card_number) == 750


def _report(world: object, peer: str, path: str = "interchange-report") -> dict[str, object]:
    answer = world.http.get(f"/v1/payments/{path}",  # type: ignore[attr-defined]
                            headers=world.as_role("auditor"),  # type: ignore[attr-defined]
                            params={"day": "2027-01-15", "with": peer})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_the_daily_report_reconciles_to_the_fen_and_lists_breaks(cities: TwoCities) -> None:
    card = _hz_card(cities)
    till = cities.yw.terminal()
    assert cities.yw.charge(till, cities.hz.pay_code(card), 1_111).status_code == 201
    yw = _report(cities.yw, HZ)["report"]
    hz = _report(cities.hz, YW)["report"]
    assert isinstance(yw, dict) and isinstance(hz, dict)
    assert yw["receivable"] == hz["payable"]  # every g, to the fen, same day bucket
    assert yw["net_fen"] == -hz["net_fen"] and yw["net_fen"] > 0
    assert yw["ledger_agrees"] and hz["ledger_agrees"]
    result = _report(cities.yw, HZ, "interchange-reconcile")
    assert (result["reconciled"], result["breaks"], result["net_fen"]) == (
        True, [], yw["net_fen"])
    # A forward Hangzhou charged whose answer Yiwu never got (void not yet through):
    # Hangzhou lists it, Yiwu does not -> one break until the void lands.
    cities.link.lose_answers = 2
    cities.link.down = False
    original_post = cities.link.client.post
    voids: list[str] = []

    def no_void(callee: str, path: str, body: object, **kw: object) -> object:
        if path.endswith("/void"):
            voids.append(path)
            raise __import__("httpx").ConnectError("injected: void lost")
        return original_post(callee, path, body, **kw)  # type: ignore[arg-type]

    cities.link.client.post = no_void  # type: ignore[method-assign]
    try:
        assert cities.yw.charge(till, cities.hz.pay_code(card), 222).status_code == 503
    finally:
        cities.link.client.post = original_post  # type: ignore[method-assign]
    broken = _report(cities.yw, HZ, "interchange-reconcile")
    assert broken["reconciled"] is False
    assert [(b["side"], b["ours_fen"], b["theirs_fen"]) for b in broken["breaks"]] == [
        ("receivable", None, 222)]
    resume_forwards(cities.yw.database, cities.link, federation=lambda: cities.claims,
                    clock=cities.clock, policy=ForwardPolicy(sleep=lambda _s: None),
                    older_than_seconds=0)
    assert _report(cities.yw, HZ, "interchange-reconcile")["reconciled"] is True


def test_a_city_cut_off_nationally_is_refused_before_any_forward(cities: TwoCities) -> None:
    card = _hz_card(cities)
    till = cities.yw.terminal()
    held = cities.claims
    version = cities.yw.database.transact(
        lambda session: held_federation(session).version, readonly=True)  # type: ignore[union-attr]
    cut = replace(held, version=version + 1, issuers=tuple(
        replace(entry, state=IssuerState.SUSPENDED) if entry.code == HZ else entry
        for entry in held.issuers))
    back = replace(held, version=version + 2)
    cities.yw.database.transact(lambda session: accept(session, federation_jwt(cut),
                                                        cities.clock.epoch))
    try:
        answer = cities.yw.charge(till, cities.hz.pay_code(card), 100)
        assert (answer.status_code, answer.json()["code"]) == (422, "ISSUER_SUSPENDED")
        assert cities.link.sent == []
    finally:
        cities.yw.database.transact(lambda session: accept(session, federation_jwt(back),
                                                            cities.clock.epoch))
    assert cities.hz.balance(card.card_number) == 10_000


def test_a_tampered_code_of_another_city_is_refused_at_the_acquirer(
        cities: TwoCities) -> None:
    card = _hz_card(cities)
    till = cities.yw.terminal()
    code = cities.hz.pay_code(card)
    middle = len(code) // 2
    tampered = code[:middle] + ("A" if code[middle] != "A" else "B") + code[middle + 1:]
    answer = cities.yw.charge(till, tampered, 100)
    assert answer.status_code == 422, answer.text  # checked against Hangzhou's listed keys
    assert cities.link.sent == []  # never forwarded
    assert cities.hz.balance(card.card_number) == 10_000


def test_a_code_refused_cross_city_online_never_settles_offline(cities: TwoCities) -> None:
    card = _hz_card(cities, topup=100)
    till = cities.yw.terminal()
    code = cities.hz.pay_code(card)
    assert cities.yw.charge(till, code, 5_000).status_code == 402
    item = {"pay_code": code, "amount_fen": 5_000, "idempotency_key": "after-402",
            "accepted_at": cities.clock().isoformat()}
    settled = cities.yw.http.post("/v1/payments/offline-batch", headers=till.headers,
                                  json={"items": [item]})
    assert settled.status_code == 200, settled.text
    result = settled.json()["results"][0]
    assert (result["outcome"], result["code"]) == ("refused", "PAY_CODE_SEEN_ONLINE")
    assert cities.hz.balance(card.card_number) == 100
    assert _account_total(cities.yw, f"merchant:{till.merchant_id}") == 0
