"""``verifier`` CLI: check (text, image, stdin, JSON, --at, exit codes, replay across runs,
stale caches and grace), sync, status, portraits. The clock is fixed with --at."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_sync_authority import FakeAuthority, flip_one_byte, running, unused_url
from typer.testing import CliRunner

from schemas import STATUS_REVOKED, Purpose
from schemas.credential import portrait_digest
from schemas.qr import presentation_qr
from support import DAY, NOW, ROOT_FINGERPRINT, TIMESTAMP_KEYS, World, present, timestamp_jwt
from verifier.cache import CacheContents, CachedList, VerifierCache
from verifier.cli import app, parse_duration, parse_time

AT = "2027-01-15T08:00:00Z"  # tests/support.NOW
REVOKED_INDEX = 777
CJK = re.compile(r"[\u4e00-\u9fff]")
JSON_KEYS = {"ok", "code", "service", "card", "purpose", "holder", "entitlements", "checked_at"}
VERIFIER = Path(sys.executable).with_name("verifier")

runner = CliRunner()


def _store(directory: Path, world: World, *, synced_at: int = NOW) -> VerifierCache:
    cache = VerifierCache(directory)
    cache.store(CacheContents(
        root_fingerprint=ROOT_FINGERPRINT, server="http://127.0.0.1:9", synced_at=synced_at,
        trust_list=CachedList(world.trust_list_jwt(), '"t"'),
        status_lists={"1": CachedList(world.status_list_jwt(), '"s"')},
    ))
    return cache


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    world = World()
    world.statuses.set(REVOKED_INDEX, STATUS_REVOKED)
    _store(tmp_path / "cache", world)
    return tmp_path / "cache"


def _check(cache_dir: Path, service: str, *args: str, stdin: bytes | str | None = None,
           at: str = AT) -> tuple[int, str]:
    result = runner.invoke(app, ["--cache", str(cache_dir), "check", "--as", service,
                                 "--at", at, *args], input=stdin)
    return result.exit_code, result.output


def _json(output: str) -> dict[str, Any]:
    answer = json.loads(output)
    assert isinstance(answer, dict)
    return answer


def _png(text: str) -> bytes:
    out = io.BytesIO()
    presentation_qr(text, box_size=4).make_image().save(out)
    return out.getvalue()


# -- check -------------------------------------------------------------------------------

def test_accepted_shows_the_verdict_reason_and_disclosed_fields(cache_dir: Path) -> None:
    code, output = _check(cache_dir, "hospital", "--text", present(Purpose.SVC))
    assert code == 0
    for expected in ("ACCEPTED", "通过", "ABDULRAHMAN", "933566199001010017", "NGA",
                     "1990-01-01", "Healthcare", "医疗", "3300012345678901", "1 min ago"):
        assert expected in output


def test_json_has_the_contract_fields(cache_dir: Path) -> None:
    code, output = _check(cache_dir, "hospital", "--text", present(Purpose.SVC), "--json")
    answer = _json(output)
    assert code == 0 and answer.keys() >= JSON_KEYS
    assert answer["ok"] is True and answer["code"] == "OK" and answer["service"] == "hospital"
    assert answer["card"] == "3300012345678901" and answer["purpose"] == "svc"
    assert answer["entitlements"] == ["healthcare", "social_insurance"]
    holder = answer["holder"]
    assert isinstance(holder, dict) and holder["foreigner_code"] == "933566199001010017"
    # The age is that of the newest signed list (tests/support signs them at NOW - 60).
    assert answer["cache_age_seconds"] == 60 and answer["trust_list_version"] == 1
    assert answer["entitlement_asked"] == "healthcare"
    assert answer["portrait"] == "not_cached"
    assert str(answer["checked_at"]).startswith("2027-01-15T")


CASES = [
    # service, purpose, presentation overrides, exit code, result code
    ("hospital", Purpose.SVC, {}, 0, "OK"),
    ("counter", Purpose.ID, {}, 0, "OK"),
    ("payment", Purpose.PAY, {}, 0, "OK"),
    ("social", Purpose.SVC, {}, 0, "OK"),
    ("school", Purpose.SVC, {}, 1, "ENTITLEMENT_MISSING"),
    ("transport", Purpose.SVC, {}, 1, "ENTITLEMENT_MISSING"),
    ("hospital", Purpose.ID, {}, 1, "WRONG_PURPOSE"),
    ("counter", Purpose.SVC, {}, 1, "WRONG_PURPOSE"),
    ("hospital", Purpose.SVC, {"status": ("1", REVOKED_INDEX)}, 1, "REVOKED"),
    ("hospital", Purpose.SVC, {"status": ("9", 1)}, 1, "STATUS_UNAVAILABLE"),
    ("hospital", Purpose.SVC, {"proof_time": NOW - 600}, 1, "HOLDER_PROOF_STALE"),
    ("hospital", Purpose.SVC, {"expires_at": NOW - DAY}, 1, "EXPIRED"),
]


@pytest.mark.parametrize(("service", "purpose", "overrides", "exit_code", "result"), CASES)
def test_exit_codes_and_result_codes(cache_dir: Path, service: str, purpose: Purpose,
                                     overrides: dict[str, Any], exit_code: int,
                                     result: str) -> None:
    from schemas import StatusRef

    if "status" in overrides:
        overrides = {**overrides, "status": StatusRef(*overrides["status"])}
    code, output = _check(cache_dir, service, "--json", "--text", present(purpose, **overrides))
    answer = _json(output)
    assert (code, answer["code"]) == (exit_code, result)
    if result != "OK":
        assert answer["holder"] is None and answer["card"] is None  # nothing disclosed


def test_refused_names_the_reason_in_both_languages(cache_dir: Path) -> None:
    code, output = _check(cache_dir, "school", "--text", present(Purpose.SVC))
    assert code == 1
    for expected in ("REFUSED", "拒绝", "ENTITLEMENT_MISSING", "not entitled", "无权"):
        assert expected in output
    assert "ABDULRAHMAN" not in output


@pytest.mark.parametrize(("lang", "present_word", "absent_word"), [
    ("en", "ACCEPTED", "通过"), ("zh", "通过", "ACCEPTED"),
])
def test_one_language(cache_dir: Path, lang: str, present_word: str, absent_word: str) -> None:
    code, output = _check(cache_dir, "hospital", "--lang", lang, "--text", present(Purpose.SVC))
    assert code == 0 and present_word in output and absent_word not in output
    if lang == "en":
        assert not CJK.search(output)


def test_the_same_code_twice_is_replayed_across_runs(cache_dir: Path) -> None:
    text = present(Purpose.SVC)
    first, _ = _check(cache_dir, "hospital", "--json", "--text", text)
    second, output = _check(cache_dir, "hospital", "--json", "--text", text)
    assert (first, second) == (0, 1) and _json(output)["code"] == "REPLAYED"
    assert (cache_dir / "replay.sqlite").exists()


def test_image_and_stdin_inputs(cache_dir: Path, tmp_path: Path) -> None:
    picture = tmp_path / "card.png"
    picture.write_bytes(_png(present(Purpose.SVC, proof_time=NOW - 1)))
    assert _check(cache_dir, "hospital", "--image", str(picture))[0] == 0
    text_code, _ = _check(cache_dir, "hospital", "-", stdin=present(Purpose.SVC) + "\n")
    image_code, _ = _check(cache_dir, "hospital", "-", stdin=_png(present(Purpose.SVC,
                                                                          proof_time=NOW - 2)))
    assert (text_code, image_code) == (0, 0)


def test_a_picture_without_a_code_is_refused_with_the_scan_reason(cache_dir: Path,
                                                                  tmp_path: Path) -> None:
    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.new("L", (300, 300), 255).save(blank)
    code, output = _check(cache_dir, "hospital", "--json", "--image", str(blank))
    answer = _json(output)
    assert code == 1 and answer["code"] == "QR_NOT_FOUND" and answer["scan_error"] == "QR_NOT_FOUND"


@pytest.mark.parametrize(("args", "error"), [
    (["--text", "x", "--image", "y.png"], "BAD_INPUT"),
    ([], "BAD_INPUT"),
    (["--image", "/nonexistent/card.png"], "FILE_NOT_FOUND"),
])
def test_usage_errors_exit_2(cache_dir: Path, args: list[str], error: str) -> None:
    code, output = _check(cache_dir, "hospital", "--json", *args)
    assert code == 2 and _json(output)["code"] == error


def test_unknown_service_exits_2(cache_dir: Path) -> None:
    code, output = _check(cache_dir, "casino", "--json", "--text", present(Purpose.SVC))
    assert code == 2 and _json(output)["code"] == "UNKNOWN_SERVICE"


def test_no_cache_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    code, output = _check(tmp_path / "empty", "hospital", "--text", present(Purpose.SVC))
    assert code == 2 and "NO_CACHE" in output and "verifier sync" in output
    assert "Traceback" not in output


def test_bad_time_exits_2(cache_dir: Path) -> None:
    code, _ = _check(cache_dir, "hospital", "--text", present(Purpose.SVC), at="yesterday")
    assert code == 2


def test_a_damaged_cache_exits_2_without_a_traceback(cache_dir: Path) -> None:
    for path in (cache_dir / "lists").iterdir():
        path.write_bytes(path.read_bytes()[:100])
    code, output = _check(cache_dir, "hospital", "--text", present(Purpose.SVC))
    assert code == 2 and "CACHE_CORRUPT" in output and "Traceback" not in output


# -- staleness (docs/DESIGN.md section 6) ------------------------------------------------------

HOUR = 3600


@pytest.mark.parametrize(("later", "grace", "trust_grace", "result"), [
    (2 * HOUR, "0", "0", "STATUS_UNAVAILABLE"),   # iat + ttl (1 h) passed, no grace
    (2 * HOUR, "24h", "0", "OK"),                 # the default offline grace covers it
    (2 * HOUR, "1h", "0", "STATUS_UNAVAILABLE"),
    (DAY + HOUR, "7d", "0", "STATUS_UNAVAILABLE"),  # the status list's hard exp (1 d)
    (8 * DAY, "24h", "0", "TRUST_LIST_STALE"),    # the trust list expired (7 d)
    (8 * DAY, "24h", "2d", "STATUS_UNAVAILABLE"),  # trust grace passes step 3 only
])
def test_a_stale_cache(cache_dir: Path, later: int, grace: str, trust_grace: str,
                       result: str) -> None:
    text = present(Purpose.SVC, proof_time=NOW + later)
    code, output = _check(cache_dir, "hospital", "--json", "--text", text,
                          "--status-grace", grace, "--trust-grace", trust_grace,
                          at=str(NOW + later))
    answer = _json(output)
    assert answer["code"] == result and code == (0 if result == "OK" else 1)
    assert answer["cache_age_seconds"] == later + 60  # signed at NOW - 60


def test_stale_answer_shows_the_cache_age(cache_dir: Path) -> None:
    text = present(Purpose.SVC, proof_time=NOW + 2 * HOUR)
    code, output = _check(cache_dir, "hospital", "--text", text, "--status-grace", "0",
                          at=str(NOW + 2 * HOUR))
    assert code == 1 and "STATUS_UNAVAILABLE" in output and "2 h 1 min ago" in output
    assert "sync" in output


def test_grace_from_the_environment(cache_dir: Path) -> None:
    text = present(Purpose.SVC, proof_time=NOW + 2 * HOUR)
    result = runner.invoke(app, ["--cache", str(cache_dir), "check", "--as", "hospital",
                                 "--json", "--text", text, "--at", str(NOW + 2 * HOUR)],
                           env={"VERIFIER_STATUS_GRACE": "0"})
    assert _json(result.output)["code"] == "STATUS_UNAVAILABLE"


# -- sync and status ------------------------------------------------------------------------

def test_sync_then_check_with_the_network_gone(tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    with running(FakeAuthority()) as authority:
        synced = runner.invoke(app, ["--cache", cache, "sync", "--server", authority.url,
                                     "--root", ROOT_FINGERPRINT, "--at", AT])
        again = runner.invoke(app, ["--cache", cache, "sync", "--json", "--at", AT])
    assert synced.exit_code == 0 and "trust list v1" in synced.output
    assert again.exit_code == 0 and json.loads(again.output)["bytes_received"] == 0
    # The authority is gone now.
    assert _check(Path(cache), "hospital", "--text", present(Purpose.SVC))[0] == 0
    down = runner.invoke(app, ["--cache", cache, "sync", "--at", AT])
    assert down.exit_code == 1 and "NETWORK_UNAVAILABLE" in down.output
    assert "previous cache is kept" in down.output


def test_sync_refuses_a_tampered_list_and_keeps_the_cache(tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    authority = FakeAuthority()
    with running(authority):
        runner.invoke(app, ["--cache", cache, "sync", "--server", authority.url,
                            "--root", ROOT_FINGERPRINT, "--at", AT])
        authority.world.statuses.set(123_456, STATUS_REVOKED)
        authority.override["1"] = flip_one_byte(authority.body("1"))
        refused = runner.invoke(app, ["--cache", cache, "sync", "--json", "--at", AT])
    assert refused.exit_code == 1 and json.loads(refused.output)["code"] == "BAD_SIGNATURE"
    # The old status list is still the one used: the card is not (yet) revoked here.
    assert _check(Path(cache), "hospital", "--text", present(Purpose.SVC))[0] == 0


def test_sync_holds_the_timestamp_and_refuses_a_frozen_trust_list(tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    trust_list = World().trust_list_jwt(timestamp_keys=TIMESTAMP_KEYS)
    authority = FakeAuthority(override={"trust-list": trust_list,
                                        "timestamp": timestamp_jwt(trust_list, version=4)})
    with running(authority):
        synced = runner.invoke(app, ["--cache", cache, "sync", "--server", authority.url,
                                     "--root", ROOT_FINGERPRINT, "--at", AT])
        status = runner.invoke(app, ["--cache", cache, "status", "--json", "--at", AT])
        # A newer trust list exists (the timestamp names it); the old one is served again.
        newer = World(trust_version=2).trust_list_jwt(timestamp_keys=TIMESTAMP_KEYS)
        authority.override["timestamp"] = timestamp_jwt(newer, version=5)
        refused = runner.invoke(app, ["--cache", cache, "sync", "--at", AT])
    assert synced.exit_code == 0 and "signed timestamp v4" in synced.output
    assert json.loads(status.output)["timestamp"]["version"] == 4
    assert refused.exit_code == 1 and "TRUST_LIST_OUTDATED" in refused.output
    assert json.loads(runner.invoke(app, ["--cache", cache, "status", "--json", "--at", AT]
                                    ).output)["timestamp"]["version"] == 4


@pytest.mark.parametrize(("args", "code"), [
    (["--server", "http://127.0.0.1:9"], "NO_ROOT"),
    (["--root", ROOT_FINGERPRINT], "NO_SERVER"),
    # The fingerprint's form is checked before the network: port 9 is never asked.
    (["--server", "http://127.0.0.1:9", "--root", "hello"], "BAD_ROOT"),
    (["--server", "http://127.0.0.1:9", "--root", ROOT_FINGERPRINT + "="], "BAD_ROOT"),
    (["--server", "http://127.0.0.1:9", "--root", "+" * 43], "BAD_ROOT"),
    (["--server", "http://127.0.0.1:9", "--root", "é" * 43], "BAD_ROOT"),
])
def test_sync_usage_errors_exit_2(tmp_path: Path, args: list[str], code: str) -> None:
    result = runner.invoke(app, ["--cache", str(tmp_path), "sync", "--json", *args])
    assert result.exit_code == 2 and json.loads(result.output)["code"] == code


def test_sync_with_another_root_exits_2(cache_dir: Path) -> None:
    result = runner.invoke(app, ["--cache", str(cache_dir), "sync", "--server", unused_url(),
                                 "--root", "A" * 43])
    assert result.exit_code == 2 and "ROOT_MISMATCH" in result.output


def test_status_shows_the_cache(cache_dir: Path) -> None:
    result = runner.invoke(app, ["--cache", str(cache_dir), "status", "--json",
                                 "--at", str(NOW + 90)])
    summary = json.loads(result.output)
    assert result.exit_code == 0 and summary["cache_age_seconds"] == 90 + 60
    assert summary["root"] == ROOT_FINGERPRINT and summary["trust_list_version"] == 1
    human = runner.invoke(app, ["--cache", str(cache_dir), "status", "--at", str(NOW + 90)])
    assert "2 min ago" in human.output


def test_portraits_add_makes_the_portrait_available(cache_dir: Path, tmp_path: Path) -> None:
    portrait = tmp_path / "portrait.jpg"
    portrait.write_bytes(b"\xff\xd8\xff\xe0 a tiny jpeg")
    added = runner.invoke(app, ["--cache", str(cache_dir), "portraits", "add", str(portrait)])
    assert added.exit_code == 0
    text = present(Purpose.ID, portrait_digest=portrait_digest(portrait.read_bytes()))
    code, output = _check(cache_dir, "counter", "--json", "--text", text)
    assert code == 0 and _json(output)["portrait"] == "available"
    not_image = runner.invoke(app, ["--cache", str(cache_dir), "portraits", "add",
                                    str(cache_dir / "pinned-root")])
    assert not_image.exit_code == 2 and "BAD_PORTRAIT" in not_image.output


# -- parsing -----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "seconds"), [
    ("0", 0), ("90", 90), ("90s", 90), ("15m", 900), ("24h", 86_400), ("7d", 604_800),
])
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "epoch"), [
    ("2027-01-15T08:00:00Z", NOW), ("2027-01-15T16:00:00+08:00", NOW),
    ("2027-01-15T08:00:00", NOW), (str(NOW), NOW),
])
def test_parse_time(text: str, epoch: int) -> None:
    assert parse_time(text) == epoch


# -- real processes ------------------------------------------------------------------------

def test_the_console_script_across_processes(cache_dir: Path) -> None:
    """The installed `verifier` script; the replay store is shared between processes."""
    text = present(Purpose.ID)
    env = {**os.environ, "VERIFIER_CACHE": str(cache_dir)}
    runs = [subprocess.run([str(VERIFIER), "check", "--as", "counter", "--at", AT, "-"],
                           input=text.encode(), capture_output=True, env=env, timeout=60)
            for _ in range(2)]
    assert [run.returncode for run in runs] == [0, 1]
    assert b"ACCEPTED" in runs[0].stdout and b"REPLAYED" in runs[1].stdout
    assert not runs[0].stderr and not runs[1].stderr
