"""P14 at the authority: what it signs on each side of its announced cut-over to RFC 9864's
"Ed25519", how an existing database is migrated, and the operator's command."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from cardsvc_kit import Authority, device_key
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from cardsvc.cli import app
from cardsvc.migrations import alembic_config, upgrade_to_head
from cardsvc.services.audit import Actor
from cardsvc.services.errors import DomainError
from cardsvc.services.trust import alg_cutover, set_alg_cutover, signing_alg
from schemas._jose import parse_json_object, split_compact
from schemas.trust_list import FORMAT_VERSION
from verifier import verify_trust_list


def _alg(jws: str) -> str:
    return str(parse_json_object(split_compact(jws)[1])["alg"])


def _set_cutover(authority: Authority, epoch: int | None) -> None:
    """Play an authority upgraded in place: its cut-over is still ahead."""
    from cardsvc.models import TrustState

    def work(session: Session) -> None:
        state = session.get(TrustState, 1)
        assert state is not None
        state.alg_cutover, state.version = epoch, state.version + 1

    authority.database.transact(work)


def test_a_new_authority_signs_ed25519_everywhere_and_announces_it(
    authority: Authority,
) -> None:
    trust_jwt = authority.client.get("/v1/trust-list").text
    trust = verify_trust_list(trust_jwt, root_fingerprint=authority.root_fingerprint)
    assert trust.alg_cutover is not None and trust.alg_cutover <= authority.clock.epoch
    assert trust.format_version == FORMAT_VERSION
    bundle = authority.card_with_phone(device_key(40))
    signed = [trust_jwt, authority.client.get("/v1/status-lists/1").text,
              authority.client.get("/v1/timestamp").text, *bundle["credentials"].values()]
    assert {_alg(jws) for jws in signed} == {"Ed25519"}


def test_before_the_cutover_it_keeps_eddsa_and_switches_on_the_day(
    authority: Authority,
) -> None:
    _set_cutover(authority, authority.clock.epoch + 3600)
    trust = verify_trust_list(authority.client.get("/v1/trust-list").text,
                              root_fingerprint=authority.root_fingerprint)
    assert trust.alg_cutover == authority.clock.epoch + 3600  # announced ahead
    before = authority.card_with_phone(device_key(41))
    assert {_alg(jws) for jws in before["credentials"].values()} == {"EdDSA"}
    authority.clock.advance(3600)
    after = authority.card_with_phone(device_key(42))
    assert {_alg(jws) for jws in after["credentials"].values()} == {"Ed25519"}


def test_the_cutover_only_moves_forward_and_only_before_it_passed(
    authority: Authority,
) -> None:
    now = authority.clock()
    _set_cutover(authority, authority.clock.epoch + 3600)

    def move(at_seconds: int) -> str:
        def work(session: Session) -> str:
            set_alg_cutover(session, at=now + timedelta(seconds=at_seconds),
                            actor=Actor.cli(), now=now)
            return signing_alg(session, now=now)
        try:
            return authority.database.transact(work)
        except DomainError as error:
            return error.code

    assert move(-1) == "CUTOVER_IN_PAST"
    assert move(7200) == "EdDSA"  # moved later, still before it
    assert authority.database.transact(alg_cutover) == authority.clock.epoch + 7200
    _set_cutover(authority, authority.clock.epoch - 1)
    assert move(7200) == "CUTOVER_PASSED"
    assert authority.database.transact(alg_cutover) == authority.clock.epoch - 1


def test_the_migration_gives_an_existing_authority_thirty_days_notice(tmp_path: Path) -> None:
    from alembic import command

    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(alembic_config(url), "0130_m_timestamp")
    with sqlite3.connect(tmp_path / "old.db") as db:
        db.execute("INSERT INTO trust_state (id, version, signed_jwt, signed_version, issued_at,"
                   " expires_at, root_fingerprint) VALUES (1, 7, NULL, 7, 0, 0, 'fp')")
    upgrade_to_head(url)
    with sqlite3.connect(tmp_path / "old.db") as db:
        version, cutover = db.execute(
            "SELECT version, alg_cutover FROM trust_state WHERE id = 1").fetchone()
    import time
    assert version == 8  # re-signed, so verifiers learn the date at their next sync
    assert abs(cutover - (time.time() + 30 * 86_400)) < 600


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("CARDSVC_DATABASE_URL", "CARDSVC_KEY_PASSPHRASE", "CARDSVC_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "data"


def test_the_operator_command_shows_and_refuses_with_codes(data_dir: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["init", "--data-dir", str(data_dir)]).exit_code == 0
    shown = runner.invoke(app, ["keys", "alg-cutover", "--data-dir", str(data_dir)])
    assert shown.exit_code == 0 and "signing now with Ed25519" in shown.output
    past = runner.invoke(app, ["keys", "alg-cutover", "--at", "2020-01-01",
                               "--data-dir", str(data_dir)])
    assert past.exit_code == 1 and "CUTOVER_PASSED" in past.output
