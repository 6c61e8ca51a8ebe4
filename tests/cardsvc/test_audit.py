"""The audit log: every state change is chained; edits and deletions are detected."""

from __future__ import annotations

import threading

import pytest
from cardsvc_kit import Authority, device_key
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from cardsvc.db import Database
from cardsvc.models import AuditEntry, AuditHead
from cardsvc.services.audit import (
    GENESIS_HASH,
    Actor,
    AuditAnchor,
    append_audit,
    entry_hash,
    verify_chain,
)


def _story(authority: Authority) -> None:
    bundle = authority.card_with_phone(device_key(40))
    authority.revoke(bundle["card_number"], "suspend")
    authority.revoke(bundle["card_number"], "reinstate")
    authority.client.post(f"/v1/persons/{bundle['foreigner_code']}/passports",
                          headers=authority.admin,
                          json={"number": "Q1111111", "country": "NGA", "expires": "2035-01-01"})


def test_every_state_change_appends_one_entry(authority: Authority) -> None:
    auditor = authority.as_role("auditor")
    _story(authority)
    answer = authority.client.get("/v1/audit", headers=auditor)
    assert answer.status_code == 200
    body = answer.json()
    assert body["chain"]["ok"] is True
    actions = [entry["action"] for entry in body["entries"]]
    assert actions == ["authority.initialised", "officer.created", "officer.created",
                       "person.enrolled", "card.issued", "card.provisioned", "card.suspended",
                       "card.reinstated", "person.passport_recorded"]
    assert [e["seq"] for e in body["entries"]] == list(range(1, len(actions) + 1))
    for before, after in zip(body["entries"], body["entries"][1:], strict=False):
        assert after["prev_hash"] == before["hash"]
    issued = body["entries"][4]
    assert issued["officer_id"] == 1 and issued["actor"] == "officer:1"
    assert body["entries"][5]["actor"] == "wallet"
    page = authority.client.get("/v1/audit", headers=authority.as_role("auditor"),
                                params={"after_seq": 3, "limit": 2}).json()
    assert [e["seq"] for e in page["entries"]] == [4, 5] and page["next_after_seq"] == 5


def test_a_refused_request_writes_nothing(authority: Authority) -> None:
    before = authority.database.transact(verify_chain).entries
    authority.client.post("/v1/cards", headers=authority.admin, json={
        "foreigner_code": "933566198503020011", "entitlements": [], "valid_until": "2030-01-01"})
    authority.client.post("/v1/provision", json={"provisioning_code": "AAAA-BBBB-CCCC-DDDD",
                                                 "device_key": "A" * 43, "proof": "A" * 86})
    assert authority.database.transact(verify_chain).entries == before


@pytest.mark.parametrize("tamper", ["edit_details", "edit_time", "delete_middle",
                                    "delete_last"])
def test_tampering_is_detected(authority: Authority, tamper: str) -> None:
    _story(authority)
    with authority.database.sessions() as session, session.begin():
        last = max(session.scalars(select(AuditEntry.seq)))
        if tamper == "edit_details":
            session.execute(update(AuditEntry).where(AuditEntry.seq == 5)
                            .values(details='{"reason":"nothing to see"}'))
        elif tamper == "edit_time":
            entry = session.get(AuditEntry, 5)
            assert entry is not None
            entry.at = entry.at.replace(year=2020)
        elif tamper == "delete_middle":
            session.execute(delete(AuditEntry).where(AuditEntry.seq == 5))
        else:
            session.execute(delete(AuditEntry).where(AuditEntry.seq == last))
    check = authority.database.transact(verify_chain)
    assert not check.ok
    assert check.broken_at == (last if tamper == "delete_last" else 5)
    chain = authority.client.get("/v1/audit", headers=authority.as_role("auditor")).json()
    assert chain["chain"]["ok"] is False


# --- anchors: a history rewritten consistently, chain and head together ------------------

def _rewrite_history(authority: Authority, *, from_seq: int, keep_up_to: int | None = None) -> None:
    """What someone with write access to the database could do: edit entry ``from_seq``
    (or cut the chain back to ``keep_up_to``) and recompute every later hash and the head,
    so the chain alone looks intact."""
    with authority.database.sessions() as session, session.begin():
        if keep_up_to is not None:
            session.execute(delete(AuditEntry).where(AuditEntry.seq > keep_up_to))
        entries = list(session.scalars(select(AuditEntry).order_by(AuditEntry.seq)))
        prev_hash = GENESIS_HASH
        for entry in entries:
            if entry.seq == from_seq:
                entry.details = '{"reason":"nothing to see"}'
            entry.prev_hash = prev_hash
            entry.hash = entry_hash(prev_hash=prev_hash, seq=entry.seq, at=entry.at,
                                    officer_id=entry.officer_id, actor=entry.actor,
                                    action=entry.action, subject=entry.subject,
                                    details=entry.details)
            prev_hash = entry.hash
        head = session.get(AuditHead, 1)
        assert head is not None
        head.seq, head.hash = len(entries), prev_hash


def _head_anchor(authority: Authority) -> AuditAnchor:
    check = authority.database.transact(verify_chain, readonly=True)
    return AuditAnchor(check.head_seq, check.head_hash)


@pytest.mark.parametrize("keep_up_to", [
    None,  # entry 5 edited, every later hash and the head redone
    6,     # entry 5 edited, the tail cut off after 6, the head moved back
])
def test_a_consistent_rewrite_is_caught_by_an_anchor_kept_elsewhere(
    authority: Authority, keep_up_to: int | None
) -> None:
    _story(authority)
    anchor = _head_anchor(authority)  # what `cardsvc audit head` printed to elsewhere
    assert authority.database.transact(
        lambda session: verify_chain(session, anchors=[anchor])).ok
    _rewrite_history(authority, from_seq=5, keep_up_to=keep_up_to)
    assert authority.database.transact(verify_chain).ok  # the chain alone cannot tell
    check = authority.database.transact(lambda session: verify_chain(session, anchors=[anchor]))
    # The anchor knows one hash: the break shows at the anchored entry.
    assert not check.ok and check.broken_at == anchor.seq
    assert check.entries == (anchor.seq - 1 if keep_up_to is None else keep_up_to)
    auditor = authority.as_role("auditor")
    chain = authority.client.get("/v1/audit", headers=auditor,
                                 params={"anchor": str(anchor)}).json()["chain"]
    assert chain["ok"] is False and chain["broken_at"] == anchor.seq


def test_anchors_that_disagree_are_refused(authority: Authority) -> None:
    _story(authority)
    anchor = _head_anchor(authority)
    forged = AuditAnchor(anchor.seq, "0" * 64)
    check = authority.database.transact(
        lambda session: verify_chain(session, anchors=[anchor, forged]))
    assert not check.ok and check.broken_at == anchor.seq


@pytest.mark.parametrize("text", ["", "5", "5:", ":" + "a" * 64, "0:" + "a" * 64,
                                  "5:" + "A" * 64, "5:" + "a" * 63, "-1:" + "a" * 64,
                                  "5:" + "a" * 64 + "x", "5;" + "a" * 64])
def test_a_malformed_anchor_is_a_clear_refusal(authority: Authority, text: str) -> None:
    with pytest.raises(ValueError):
        AuditAnchor.parse(text)
    answer = authority.client.get("/v1/audit", headers=authority.as_role("auditor"),
                                  params={"anchor": text})
    assert answer.status_code == 422 and answer.json()["code"] == "BAD_ANCHOR"


# --- the append itself: on PostgreSQL the database computes the hash ----------------------

def test_appended_hashes_are_those_verify_chain_recomputes_for_any_text(
    authority: Authority,
) -> None:
    """Non-ASCII subjects and details, quotes, backslashes and newlines, no officer: the
    hash the append stores (on PostgreSQL computed in SQL) is :func:`entry_hash`'s."""
    now = authority.clock()
    texts = ["义乌 商友卡", "Ибрагимов \"Q\" \\ x", "line\nbreak\ttab", "محمد", "😀"]

    def append(session: Session) -> list[int]:
        return [append_audit(session, actor=actor, action="test.appended", subject=text,
                             details={"name": text, "n": i}, now=now)
                for i, text in enumerate(texts)
                for actor in (Actor.for_officer_id(1), Actor.wallet())]

    before = authority.database.transact(verify_chain).entries
    seqs = authority.database.transact(append)
    assert seqs == list(range(before + 1, before + 1 + 2 * len(texts)))
    check = authority.database.transact(verify_chain)
    assert check.ok and check.entries == before + 2 * len(texts)


def test_simultaneous_appends_make_one_unbroken_chain(authority: Authority) -> None:
    database = Database.from_settings(authority.settings, pool_size=10)
    now = authority.clock()
    barrier = threading.Barrier(20)
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        barrier.wait()
        try:
            for k in range(5):
                database.transact(lambda session, k=k: append_audit(
                    session, actor=Actor.cli(), action="test.appended",
                    subject=f"writer:{i}", details={"k": k}, now=now))
        except BaseException as error:  # reported below
            errors.append(error)

    before = authority.database.transact(verify_chain).entries
    try:
        threads = [threading.Thread(target=writer, args=(i,)) for i in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        database.dispose()
    assert not errors
    check = authority.database.transact(verify_chain)
    assert check.ok and check.entries == before + 100
