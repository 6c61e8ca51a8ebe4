"""The cardsvc command line: init, officers, keys, audit verify (in process, SQLite)."""

from __future__ import annotations

import gc
import re
import sqlite3
import stat
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from kit.processes import clean_env, run_cli
from typer.testing import CliRunner

from cardsvc.api import app_from_environment
from cardsvc.cli import app
from cardsvc.db import Database
from cardsvc.roles import Role
from cardsvc.services.officers import authenticate
from cardsvc.settings import Settings, get_settings


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("CARDSVC_DATABASE_URL", "CARDSVC_KEY_PASSPHRASE", "CARDSVC_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "data"


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_init_prints_fingerprint_and_token_once(data_dir: Path) -> None:
    code, output = _run("init", "--data-dir", str(data_dir))
    assert code == 0, output
    assert re.search(r"root fingerprint:\s+[A-Za-z0-9_-]{43}", output)
    token = re.search(r"admin token:\s+(\S+)", output)
    assert token is not None
    assert "development only" in output
    passphrase = data_dir / "key-passphrase"
    assert stat.S_IMODE(passphrase.stat().st_mode) == 0o600
    again_code, again = _run("init", "--data-dir", str(data_dir))
    assert again_code == 0 and "admin token" not in again and "already initialised" in again
    database = Database.from_settings(get_settings(data_dir=data_dir))
    try:
        officer = database.transact(
            lambda s: authenticate(s, unverified_token=token.group(1)), readonly=True)
        assert officer.name == "admin"
    finally:
        database.dispose()


def test_officer_add_keys_rotate_and_audit_verify(data_dir: Path) -> None:
    assert _run("init", "--data-dir", str(data_dir))[0] == 0
    code, output = _run("officer", "add", "--data-dir", str(data_dir), "--name", "Wang Li",
                        "--role", "registrar", "--role", "auditor")
    assert code == 0 and re.search(r"token: [A-Za-z0-9_-]{43}", output), output
    # The roles are the enum's choices: an unknown one is a usage error before any work.
    assert _run("officer", "add", "--data-dir", str(data_dir), "--name", "X",
                "--role", "emperor")[0] == 2
    code, output = _run("keys", "rotate", "--data-dir", str(data_dir))
    assert code == 0, output
    assert re.search(r"k1\s+retired", output) and re.search(r"k2\s+active", output)
    assert re.search(r"k3\s+next", output)
    code, output = _run("keys", "compromise", "k1", "--data-dir", str(data_dir))
    assert code == 0 and re.search(r"k1\s+compromised", output), output
    assert _run("keys", "compromise", "k9", "--data-dir", str(data_dir))[0] == 1
    code, output = _run("audit", "verify", "--data-dir", str(data_dir))
    assert code == 0 and "audit chain OK: 5 entries" in output, output

    with sqlite3.connect(data_dir / "cardsvc.db") as conn:
        conn.execute("UPDATE audit_entries SET details = '{}' WHERE seq = 3")
    code, output = _run("audit", "verify", "--data-dir", str(data_dir))
    assert code == 1 and "BROKEN at entry 3" in output


def test_audit_verify_detects_a_deleted_row(data_dir: Path) -> None:
    assert _run("init", "--data-dir", str(data_dir))[0] == 0
    _run("officer", "add", "--data-dir", str(data_dir), "--name", "A", "--role", "auditor")
    with sqlite3.connect(data_dir / "cardsvc.db") as conn:
        conn.execute("DELETE FROM audit_entries WHERE seq = 2")
    assert _run("audit", "verify", "--data-dir", str(data_dir))[0] == 1


@pytest.mark.parametrize("command", [["keys", "rotate"], ["audit", "verify"],
                                     ["officer", "list"], ["serve"]])
def test_commands_on_an_uninitialised_dir_fail_cleanly(data_dir: Path,
                                                       command: list[str]) -> None:
    code, output = _run(*command, "--data-dir", str(data_dir))
    assert code == 2 and "NOT_INITIALISED" in output
    assert not data_dir.exists()  # nothing was created on the way


def test_audit_head_anchors_catch_a_consistently_rewritten_history(
    data_dir: Path, tmp_path: Path
) -> None:
    from cardsvc.services.audit import entry_hash

    assert _run("init", "--data-dir", str(data_dir))[0] == 0
    _run("officer", "add", "--data-dir", str(data_dir), "--name", "A", "--role", "auditor")
    code, printed = _run("audit", "head", "--data-dir", str(data_dir))
    assert code == 0 and re.fullmatch(r"[1-9][0-9]*:[0-9a-f]{64}\n", printed), printed
    anchors = tmp_path / "anchors"  # elsewhere: another host, WORM storage
    anchors.write_text("# audit anchors\n" + printed)
    code, output = _run("audit", "verify", "--data-dir", str(data_dir),
                        "--anchors-file", str(anchors))
    assert code == 0 and "1 anchors held" in output, output
    # Rewrite entry 1 and every hash after it, and the head: the chain alone looks intact.
    with sqlite3.connect(data_dir / "cardsvc.db") as conn:
        rows = conn.execute("SELECT seq, at, officer_id, actor, action, subject, details "
                            "FROM audit_entries ORDER BY seq").fetchall()
        prev = "0" * 64
        for seq, at, officer_id, actor, action, subject, details in rows:
            if seq == 1:
                details = '{"rewritten":true}'
            digest = entry_hash(prev_hash=prev, seq=seq, at=datetime.fromisoformat(at),
                                officer_id=officer_id, actor=actor, action=action,
                                subject=subject, details=details)
            conn.execute("UPDATE audit_entries SET details=?, prev_hash=?, hash=? WHERE seq=?",
                         (details, prev, digest, seq))
            prev = digest
        conn.execute("UPDATE audit_head SET hash=? WHERE id=1", (prev,))
    assert _run("audit", "verify", "--data-dir", str(data_dir))[0] == 0
    code, output = _run("audit", "verify", "--data-dir", str(data_dir),
                        "--anchors-file", str(anchors))
    assert code == 1 and "BROKEN" in output, output
    assert _run("audit", "verify", "--data-dir", str(data_dir), "--anchor", "7:xyz")[0] == 2


def test_officer_add_lists_every_role_in_its_help() -> None:
    result = CliRunner().invoke(app, ["officer", "add", "--help"],
                                env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
    assert result.exit_code == 0
    assert "[" + "|".join(role.value for role in Role) + "]" in result.output


def test_the_served_app_puts_what_start_up_built_out_of_the_collectors_sight(
        data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``cardsvc serve``'s app factory freezes the start-up heap (P11: a full collection
    walked ~200,000 objects with every request thread stopped)."""
    assert _run("init", "--data-dir", str(data_dir))[0] == 0
    monkeypatch.setenv("CARDSVC_DATA_DIR", str(data_dir))  # as `cardsvc serve` sets it
    gc.unfreeze()
    try:
        served = app_from_environment()
        assert gc.get_freeze_count() > 0
        with TestClient(served) as client:  # and it serves as before
            assert client.get("/v1/health").status_code == 200
    finally:
        gc.unfreeze()  # the test process keeps collecting as usual


_PASSPHRASE = "a-passphrase-that-must-never-be-printed"


@pytest.mark.parametrize(("command", "bad", "named"), [
    (("serve",), {"CARDSVC_DB_CONCURRENT_TRANSACTIONS": "abc"},
     ["CARDSVC_DB_CONCURRENT_TRANSACTIONS"]),
    (("serve",), {"CARDSVC_DB_POOL_SIZE": "0", "CARDSVC_DB_CONCURRENT_TRANSACTIONS": "-3"},
     ["CARDSVC_DB_POOL_SIZE", "CARDSVC_DB_CONCURRENT_TRANSACTIONS"]),
    (("audit", "verify"), {"CARDSVC_PAY_OFFLINE_PER_DAY": "6",
                           "CARDSVC_ONE_USE_PAY_LIFETIME_DAYS": "7",
                           "CARDSVC_PAY_HANDLES_OUTSTANDING_MAX": "40"},
     ["CARDSVC_PAY_HANDLES_OUTSTANDING_MAX"]),
    (("init",), {"CARDSVC_ISSUER": "Yiwu"}, ["CARDSVC_ISSUER"]),
    (("serve",), {"CARDSVC_DB_POOL_SIZE": "99999999999999999999"}, ["CARDSVC_DB_POOL_SIZE"]),
    # a URL of a database we do not run on, or no URL at all, its password never repeated
    (("audit", "verify"), {"CARDSVC_DATABASE_URL": f"mysql://u:{_PASSPHRASE}@db/x"},
     ["CARDSVC_DATABASE_URL"]),
    (("init",), {"CARDSVC_DATABASE_URL": f"https://u:{_PASSPHRASE}@db/x"},
     ["CARDSVC_DATABASE_URL"]),
    (("serve",), {"CARDSVC_DATABASE_URL": f"{_PASSPHRASE} is not a url"},
     ["CARDSVC_DATABASE_URL"]),
    (("audit", "verify"), {"CARDSVC_DATABASE_URL": f"postgresql://u:{_PASSPHRASE}@db:x/y"},
     ["CARDSVC_DATABASE_URL"]),
])
def test_a_setting_that_cannot_be_used_is_named_without_a_traceback_or_a_secret(
        tmp_path: Path, command: tuple[str, ...], bad: dict[str, str], named: list[str]) -> None:
    """Any command, any variable: exit 2 and SETTINGS_INVALID naming each variable, no
    traceback (its locals once printed every setting given, secrets included)."""
    done = run_cli("cardsvc", *command, "--data-dir", str(tmp_path / "data"),
                   env=clean_env(CARDSVC_KEY_PASSPHRASE=_PASSPHRASE, **bad))
    said = done.stdout + done.stderr
    assert done.returncode == 2, said
    assert "SETTINGS_INVALID" in done.stderr and all(name in done.stderr for name in named)
    assert "Traceback" not in said and _PASSPHRASE not in said


@pytest.mark.parametrize("command", [("init",), ("audit", "verify"), ("serve", "--port", "9")])
def test_a_database_that_does_not_answer_is_named_without_a_traceback_or_its_password(
        tmp_path: Path, command: tuple[str, ...]) -> None:
    """Exit 1 and DATABASE_UNAVAILABLE (the API's 503 code), whatever the command; the
    URL (and its password) is not printed."""
    unreachable = f"postgresql://u:{_PASSPHRASE}@127.0.0.1:1/cardsvc"  # port 1: refused
    done = run_cli("cardsvc", *command, "--data-dir", str(tmp_path / "data"),
                   env=clean_env(CARDSVC_KEY_PASSPHRASE="x", CARDSVC_DATABASE_URL=unreachable))
    said = done.stdout + done.stderr
    assert done.returncode == 1, said
    assert "DATABASE_UNAVAILABLE" in done.stderr
    assert "Traceback" not in said and _PASSPHRASE not in said


@pytest.mark.parametrize("url", [
    "postgresql://u:p@db1:5432,db2:5433/cardsvc",  # libpq's multi-host form
    "postgres://u@db/cardsvc", "postgresql+psycopg://u@db/cardsvc",
    "sqlite:////var/lib/cardsvc/cardsvc.db", "",
])
def test_the_database_urls_we_run_on_are_accepted(url: str) -> None:
    assert Settings(database_url=url).database_url == (url or None)
