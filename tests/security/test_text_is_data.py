"""P8.1: attacker text is data. Markup, ANSI escapes, bidi overrides and control characters
in QR headers or a server's answer are printed literally; a refused answer never shows an
accepted row, and no input (nor ``--at`` at the ends of the calendar) gives a traceback."""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cardsvc.services._validate import clean_name
from cardsvc.services.errors import Invalid
from schemas._jose import deflate, dump_json
from schemas.codes import ResultCode
from schemas.credential import Purpose
from support import (
    NOW,
    ROOT_FINGERPRINT,
    STANDARD_HEADER,
    World,
    check_code,
    craft,
    credential,
)
from verifier._outside_text import outside, printable
from verifier.cache import CacheContents, CachedList, VerifierCache
from verifier.cli import EXIT_REFUSED, EXIT_USAGE, app
from verifier.terminal import ChargeAnswer
from verifier.terminal import cli as terminal_cli
from wallet_sim import cli as wallet_cli

AT = "2027-01-15T08:00:00Z"  # tests/support.NOW
PAYLOAD = deflate(dump_json(credential(Purpose.SVC).to_payload()))
runner = CliRunner()

HOSTILE = [
    pytest.param("[bold green]ACCEPTED[/]", id="rich-markup"),
    pytest.param("[/]", id="rich-markup-closing-tag-alone"),
    pytest.param("\x1b[32mACCEPTED\x1b[0m", id="ansi-colour"),
    pytest.param("\x1b[2K\x1b[1AACCEPTED", id="ansi-erase-line"),
    pytest.param("\u202eDETPECCA", id="bidi-override"),
    pytest.param("k1\nACCEPTED", id="newline"),
    pytest.param("\r✔ ACCEPTED\x07", id="carriage-return-bell"),
    pytest.param("\u200b\ufeffACCEPTED\x85", id="zero-width-and-c1"),
]


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    world = World()
    VerifierCache(tmp_path / "cache").store(CacheContents(
        root_fingerprint=ROOT_FINGERPRINT, server="http://127.0.0.1:9", synced_at=NOW,
        trust_list=CachedList(world.trust_list_jwt(), '"t"'),
        status_lists={"1": CachedList(world.status_list_jwt(), '"s"')},
    ))
    return tmp_path / "cache"


def _check(cache_dir: Path, text: str, at: str = AT) -> tuple[int, str]:
    result = runner.invoke(app, ["--cache", str(cache_dir), "check", "--as", "hospital",
                                 "--at", at, "-"], input=text)
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        result.exception
    return result.exit_code, result.output


def _shows_no_control_or_accept(output: str) -> None:
    assert "ACCEPTED" not in output.replace("DETPECCA", "").split("\n")[0]
    assert "\x1b[32m" not in output and "\u202e" not in output and "\x07" not in output
    assert "Traceback" not in output


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize(("field", "code"), [
    ("alg", ResultCode.ALGORITHM_NOT_ALLOWED),
    ("kid", ResultCode.UNKNOWN_KEY),
])
def test_attack_hostile_header_field_is_refused_and_printed_as_data(
        cache_dir: Path, field: str, code: ResultCode, value: str) -> None:
    text = craft({**STANDARD_HEADER, field: value}, PAYLOAD)
    exit_code, output = _check(cache_dir, text)
    assert exit_code == EXIT_REFUSED
    assert code.value in output
    assert "✘  REFUSED" in output and "✔  ACCEPTED" not in output  # the headline
    _shows_no_control_or_accept(output)


@pytest.mark.parametrize("value", HOSTILE)
def test_attack_fake_authority_code_cannot_paint_a_refusal_accepted(
        value: str, capsys: pytest.CaptureFixture[str]) -> None:
    answer = ChargeAnswer(ok=False, mode="online", code=value, amount_fen=100)
    with pytest.raises(typer.Exit) as stopped:
        terminal_cli._answer(answer, as_json=False)
    assert stopped.value.exit_code == EXIT_REFUSED
    output = capsys.readouterr().out
    assert output.startswith("REFUSED")
    assert printable(value) in output  # shown literally, controls spelled out
    _shows_no_control_or_accept(output.replace(printable(value), ""))


@pytest.mark.parametrize("value", HOSTILE)
def test_attack_fake_authority_problem_detail_is_data(
        value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit):
        terminal_cli._fail(value, value, as_json=False)
    output = capsys.readouterr().err
    assert output.count(printable(value)) == 2
    _shows_no_control_or_accept(output.replace(printable(value), ""))


@pytest.mark.parametrize(("value", "shown"), [
    ("[green]ok[/]", "[green]ok[/]"),
    ("a\x1bb", "a\\u001bb"),
    ("\u202e", "\\u202e"),
    ("\ud800", "\\ud800"),
    ("Müller, 李", "Müller, 李"),
])
def test_outside_text_is_literal(value: str, shown: str) -> None:
    assert outside(value).plain == shown
    assert outside(value).spans == []


@pytest.mark.parametrize("at", [
    "0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59-01:00",
    "10000-01-01T00:00:00Z", "-1", "99999999999999999999999", "1e400", "garbage",
    "2027-02-30T00:00:00Z", "\x00", "",
])
def test_attack_at_far_ends_of_the_calendar_is_a_usage_error_or_an_answer(
        cache_dir: Path, at: str) -> None:
    text = craft(STANDARD_HEADER, PAYLOAD)
    exit_code, output = _check(cache_dir, text, at=at)
    assert exit_code in (EXIT_REFUSED, EXIT_USAGE)
    assert "Traceback" not in output


@pytest.mark.parametrize("claim", ["sn", "gn", "iss"])
@pytest.mark.parametrize("value", [
    pytest.param("Ali\ud800", id="lone-surrogate"),
    pytest.param("Ali\x1b[32m", id="ansi-escape"),
    pytest.param("Ali\nACCEPTED", id="newline"),
    pytest.param("\u202eilA", id="bidi-override"),
    pytest.param("A\u200dli", id="zero-width-joiner"),
    pytest.param("Ali\ue000", id="private-use"),
])
def test_attack_signed_text_claim_with_hidden_characters_is_malformed(
        claim: str, value: str) -> None:
    payload = {**credential(Purpose.ID).to_payload(), claim: value}
    # ensure_ascii: a lone surrogate travels as a JSON \\ud800 escape, as an attacker sends it
    signed = craft(STANDARD_HEADER, deflate(json.dumps(payload).encode()), purpose="id")
    assert check_code(signed, service="counter") is ResultCode.MALFORMED


@pytest.mark.parametrize("value", ["Müller", "李 小龙", "O'Brien-Née", "Ali ibn Abi Talib"])
def test_signed_names_in_any_script_still_pass(value: str) -> None:
    payload = {**credential(Purpose.ID).to_payload(), "sn": value}
    signed = craft(STANDARD_HEADER, deflate(json.dumps(payload).encode()), purpose="id")
    assert check_code(signed, service="counter") is ResultCode.OK


@pytest.mark.parametrize("value", ["Ali\ud800", "Ali\x1b[32m", "\u202eilA", "A\u200dli"])
def test_enrolment_refuses_what_the_verifier_refuses(value: str) -> None:
    with pytest.raises(Invalid) as refused:
        clean_name(value, field="surname")
    assert refused.value.code == "INVALID_SURNAME"


@pytest.mark.parametrize("value", HOSTILE)
def test_attack_fake_authority_error_in_wallet_sim_is_data(
        value: str, capsys: pytest.CaptureFixture[str]) -> None:
    wallet_cli._say(f"error [SERVER]: {value}")
    output = capsys.readouterr().err
    assert output == f"error [SERVER]: {printable(value)}\n"
    assert "\x1b" not in output and "\u202e" not in output and output.count("\n") == 1


class _FakeAuthority(http.server.BaseHTTPRequestHandler):
    """Answers every charge with a 402 problem whose code and detail are the attack."""

    unverified_code = ""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        body = json.dumps({"type": "about:blank", "title": self.unverified_code, "status": 402,
                           "code": self.unverified_code, "detail": self.unverified_code})
        self.send_response(402)
        self.send_header("content-type", "application/problem+json")
        self.send_header("content-length", str(len(body.encode())))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("value", HOSTILE)
def test_attack_fake_authority_problem_through_terminal_charge(
        cache_dir: Path, value: str) -> None:
    handler = type("Handler", (_FakeAuthority,), {"unverified_code": value})
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            result = runner.invoke(app, [
                "--cache", str(cache_dir), "terminal", "charge", "--amount", "100",
                "--text", "FMC1:not-a-pay-code", "--token", "t",
                "--server", f"http://127.0.0.1:{server.server_address[1]}"])
        finally:
            server.shutdown()
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.exit_code == EXIT_REFUSED
    assert result.output.startswith("REFUSED (online)")
    assert printable(value) in result.output
    _shows_no_control_or_accept(result.output.replace(printable(value), ""))
