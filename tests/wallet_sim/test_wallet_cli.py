"""The wallet-sim CLI in process (fixed clock), plus the real console script in a subprocess."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import time
from dataclasses import replace
from io import BytesIO
from pathlib import Path

import httpx
import pytest
from kit.processes import BIN
from PIL import Image
from typer.testing import CliRunner, Result
from wallet_testkit import (
    PIN,
    FakeAuthority,
    assert_fresh_then_stale,
    decode_qr,
    halfblocks_to_image,
    verify,
)

from schemas import Purpose
from schemas.codes import ResultCode
from schemas.qr import presentation_qr
from support import DAY, NOW, SALE, World
from verifier import POLICIES, verify_presentation
from wallet_sim import Card, KdfLimits, Wallet, open_wallet
from wallet_sim.cli import make_app

RUNNER = CliRunner()
WALLET_SIM = BIN / "wallet-sim"


def run(args: list[str], *, now: int = NOW, pin: str | None = PIN,
        sleep: list[float] | None = None) -> Result:
    env = {"FMC_WALLET_PIN": pin} if pin is not None else {"FMC_WALLET_PIN": ""}
    sleeps = sleep if sleep is not None else []

    def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) >= 3:
            raise KeyboardInterrupt  # the user presses Ctrl-C during the third wait

    # The clock moves 30 s with each (fake) sleep, as it would in --watch.
    app = make_app(clock=lambda: now + 30 * len(sleeps), sleep=fake_sleep,
                   kdf_limits=KdfLimits.minimum())
    return RUNNER.invoke(app, args, env=env)


def error_code(result: Result) -> str:
    line = next(x for x in result.stderr.splitlines() if x.startswith("error ["))
    return line.split("[", 1)[1].split("]", 1)[0]


def test_provision_list_show_text(authority: FakeAuthority, wallet_path: Path) -> None:
    code = authority.issue_code()
    result = run(["--wallet", str(wallet_path), "provision", "--server", authority.url,
                  "--code", code])
    assert result.exit_code == 0, result.output
    listed = run(["--wallet", str(wallet_path), "list"])
    assert listed.exit_code == 0 and "3300012345678901" in listed.stdout
    for purpose in Purpose:
        shown = run(["--wallet", str(wallet_path), "show", "--purpose", purpose.value, "--text"])
        assert shown.exit_code == 0, shown.output
        text = shown.stdout.strip()
        assert text.startswith("FMC1:") and "\n" not in text  # stdout is the text alone
        assert_fresh_then_stale(text, purpose, proof_time=NOW)


def test_show_draws_a_scannable_terminal_code(provisioned: tuple[Wallet, Card]) -> None:
    wallet, _ = provisioned
    shown = run(["--wallet", str(wallet.path), "show", "--purpose", "pay"])
    assert shown.exit_code == 0, shown.output
    lines = [line for line in shown.stdout.splitlines() if line and set(line) <= set(" ▀▄█")]
    (text,) = decode_qr(halfblocks_to_image(lines))
    assert verify(text, Purpose.PAY, now=NOW).code is ResultCode.OK


def test_watch_renews_every_30_seconds(provisioned: tuple[Wallet, Card], tmp_path: Path
                                       ) -> None:
    wallet, _ = provisioned
    sleeps: list[float] = []
    shown = run(["--wallet", str(wallet.path), "show", "--purpose", "id", "--text", "--watch",
                 "--png", str(tmp_path / "id.png")], sleep=sleeps)
    assert shown.exit_code == 0, shown.output
    texts = shown.stdout.split()
    assert sleeps == [30, 30, 30] and len(texts) == 3 and len(set(texts)) == 3
    for n, text in enumerate(texts):
        assert verify(text, Purpose.ID, now=NOW + 30 * n).code is ResultCode.OK
    assert decode_qr(Image.open(tmp_path / "id.png")) == [texts[-1]]


def test_wrong_pin_changes_nothing_and_spends_no_code(
    provisioned: tuple[Wallet, Card], authority: FakeAuthority
) -> None:
    wallet, _ = provisioned
    before = wallet.path.read_bytes(), wallet.path.stat().st_mtime_ns
    requests_before = len(authority.requests)
    code = authority.issue_code("3300000000000025")
    for args in (["provision", "--server", authority.url, "--code", code],
                 ["show", "--purpose", "pay"], ["list"], ["refresh"], ["serve", "--port", "0"]):
        result = run(["--wallet", str(wallet.path), *args], pin="999999")
        assert result.exit_code == 1, (args, result.output)
        assert error_code(result) == "WRONG_PIN"
        assert "Traceback" not in result.output
    assert (wallet.path.read_bytes(), wallet.path.stat().st_mtime_ns) == before
    assert len(authority.requests) == requests_before  # the code is still unspent
    assert run(["--wallet", str(wallet.path), "provision", "--server", authority.url,
                "--code", code]).exit_code == 0


@pytest.mark.parametrize(
    ("args", "pin", "exit_code", "code"),
    [
        (["show", "--purpose", "pay"], PIN, 2, "WALLET_NOT_FOUND"),
        (["provision", "--server", "http://127.0.0.1:9", "--code", "ABCD-EFGH"], None, 2,
         "PIN_REQUIRED"),
        (["provision", "--server", "ftp://x", "--code", "ABCD-EFGH"], PIN, 2, "BAD_ARGUMENT"),
        (["provision", "--server", "http://127.0.0.1:9", "--code", "ABCD-EFGH"], "12", 2,
         "PIN_TOO_SHORT"),
    ],
)
def test_usage_errors(wallet_path: Path, args: list[str], pin: str | None, exit_code: int,
                      code: str) -> None:
    result = run(["--wallet", str(wallet_path), *args], pin=pin)
    assert result.exit_code == exit_code, result.output
    assert error_code(result) == code
    assert not wallet_path.exists()


@pytest.mark.parametrize("command", ["provision", "show", "list", "refresh", "serve"])
def test_every_help_works_without_a_wallet(command: str) -> None:
    result = RUNNER.invoke(make_app(), [command, "--help"], env={"FMC_WALLET": None})
    assert result.exit_code == 0, result.output
    assert "--wallet" not in result.stderr and "Usage:" in result.stdout


@pytest.mark.parametrize("args", [["list"], ["show", "--purpose", "pay"], ["refresh"]])
def test_a_command_without_a_wallet_is_a_usage_error(args: list[str]) -> None:
    result = RUNNER.invoke(make_app(), args, env={"FMC_WALLET": None, "FMC_WALLET_PIN": PIN})
    assert result.exit_code == 2 and error_code(result) == "WALLET_REQUIRED"


def test_click_usage_errors_exit_2(provisioned: tuple[Wallet, Card]) -> None:
    wallet, _ = provisioned
    for args in (["show", "--purpose", "cash"], ["show"], ["nonsense"]):
        assert run(["--wallet", str(wallet.path), *args]).exit_code == 2


def test_refusals_exit_1(authority: FakeAuthority, wallet_path: Path) -> None:
    result = run(["--wallet", str(wallet_path), "provision", "--server", authority.url,
                  "--code", "ZZZZ-ZZZZ-ZZZZ"])
    assert result.exit_code == 1 and error_code(result) == "SERVER_REFUSED"
    assert "PROVISIONING_CODE_UNKNOWN" in result.stderr  # the server's code, shown plainly
    assert not wallet_path.exists()  # nothing was written for a refused code


def test_several_cards(authority: FakeAuthority, wallet_path: Path) -> None:
    for number in ("3300000000000017", "3300000000000025"):
        code = authority.issue_code(number)
        assert run(["--wallet", str(wallet_path), "provision", "--server", authority.url,
                    "--code", code]).exit_code == 0
    ambiguous = run(["--wallet", str(wallet_path), "show", "--purpose", "pay"])
    assert ambiguous.exit_code == 2 and error_code(ambiguous) == "CARD_REQUIRED"
    chosen = run(["--wallet", str(wallet_path), "show", "--purpose", "pay", "--text",
                  "--card", "3300000000000025"])
    result = verify(chosen.stdout.strip(), Purpose.PAY, now=NOW)
    assert result.ok and result.credential is not None
    assert result.credential.card_number == "3300000000000025"
    cards = open_wallet(wallet_path, PIN).cards
    assert cards[0].device_public_key != cards[1].device_public_key  # unlinkable cards


def test_expiry_messages_and_refresh(authority: FakeAuthority, wallet_path: Path) -> None:
    code = authority.issue_code(lifetime=30 * DAY)
    assert run(["--wallet", str(wallet_path), "provision", "--server", authority.url,
                "--code", code]).exit_code == 0
    soon = run(["--wallet", str(wallet_path), "show", "--purpose", "pay", "--text"],
               now=NOW + 20 * DAY)
    assert soon.exit_code == 0 and "warning [EXPIRING_SOON]" in soon.stderr
    assert "refresh --card 3300012345678901" in soon.stderr
    late = NOW + 31 * DAY
    expired = run(["--wallet", str(wallet_path), "show", "--purpose", "pay", "--text"],
                  now=late)
    assert expired.exit_code == 1 and error_code(expired) == "CREDENTIALS_EXPIRED"
    assert expired.stdout == ""
    assert "EXPIRED" in run(["--wallet", str(wallet_path), "list"], now=late).stdout

    authority.clock = lambda: late
    refreshed = run(["--wallet", str(wallet_path), "refresh"], now=late)
    assert refreshed.exit_code == 0, refreshed.output
    shown = run(["--wallet", str(wallet_path), "show", "--purpose", "pay", "--text"], now=late)
    assert shown.exit_code == 0 and "warning" not in shown.stderr
    assert shown.stdout.startswith("FMC1:")

    authority.refresh_enabled = False
    unsupported = run(["--wallet", str(wallet_path), "refresh"], now=late)
    assert unsupported.exit_code == 1 and error_code(unsupported) == "REFRESH_UNSUPPORTED"


# --- the real console script, real clock, real processes --------------------------------


def _script_env(pin: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FMC_")}
    env["FMC_WALLET_PIN"] = pin
    return env


@pytest.mark.e2e
def test_console_script_provision_show_and_serve(authority: FakeAuthority, wallet_path: Path
                                                 ) -> None:
    authority.clock = lambda: int(time.time())
    code = authority.issue_code()
    env = _script_env(PIN)
    provisioned = subprocess.run(
        [str(WALLET_SIM), "--wallet", str(wallet_path), "provision", "--server",
         authority.url, "--code", code], env=env, capture_output=True, text=True, timeout=60)
    assert provisioned.returncode == 0, provisioned.stderr
    shown = subprocess.run([str(WALLET_SIM), "--wallet", str(wallet_path), "show", "--purpose",
                            "svc", "--text"], env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert verify(shown.stdout.strip(), Purpose.SVC, now=int(time.time())).ok

    server = subprocess.Popen(
        [str(WALLET_SIM), "--wallet", str(wallet_path), "serve", "--port", "0"], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None
        banner = server.stderr.readline()
        url = banner.split("wallet page: ", 1)[1].split()[0]
        page = _get_when_up(url)
        assert page.status_code == 200 and "933566199001010017" in page.text
        png = httpx.get(url + "qr/3300012345678901/pay.png", timeout=10)
        (text,) = decode_qr(Image.open(BytesIO(png.content)))
        assert verify(text, Purpose.PAY, now=int(time.time())).ok
    finally:
        server.terminate()
        server.wait(timeout=15)


def _get_when_up(url: str) -> httpx.Response:
    deadline = time.monotonic() + 20
    while True:
        try:
            return httpx.get(url, timeout=5)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_card_without_a_pay_credential(authority: FakeAuthority, wallet_path: Path) -> None:
    code = authority.issue_code(purposes=(Purpose.ID, Purpose.SVC))
    assert run(["--wallet", str(wallet_path), "provision", "--server", authority.url,
                "--code", code]).exit_code == 0
    missing = run(["--wallet", str(wallet_path), "show", "--purpose", "pay", "--text"])
    assert missing.exit_code == 1 and error_code(missing) == "CREDENTIAL_MISSING"
    shown = run(["--wallet", str(wallet_path), "show", "--purpose", "svc", "--text"])
    assert verify(shown.stdout.strip(), Purpose.SVC, now=NOW).ok


def _talk(args: list[str], answers: list[str]) -> tuple[int, str]:
    """Run the console script on a pseudo-terminal, answering each PIN prompt."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FMC_")}
    pid, terminal = pty.fork()
    if pid == 0:  # child
        os.execve(str(WALLET_SIM), [str(WALLET_SIM), *args], env)
    seen = b""
    pending = list(answers)
    deadline = time.monotonic() + 30
    while True:
        ready, _, _ = select.select([terminal], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(terminal)
            raise AssertionError(f"wallet-sim stalled; it printed {seen!r}")
        try:
            chunk = os.read(terminal, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
        # click prints "Wallet PIN:" then getpass turns echo off (flushing typed input)
        # and prints the final space: answer only after that space.
        if pending and seen.endswith(b": "):
            os.write(terminal, pending.pop(0).encode() + b"\n")
    _, status = os.waitpid(pid, 0)
    os.close(terminal)
    return os.waitstatus_to_exitcode(status), seen.decode(errors="replace")


@pytest.mark.e2e
def test_pin_is_asked_for_hidden_when_not_in_the_environment(
    provisioned: tuple[Wallet, Card], tmp_path: Path
) -> None:
    wallet, _ = provisioned
    exit_code, screen = _talk(["--wallet", str(wallet.path), "list"], [PIN])
    assert exit_code == 0 and "3300012345678901" in screen
    assert PIN not in screen  # typed without echo
    exit_code, screen = _talk(["--wallet", str(wallet.path), "list"], ["000000"])
    assert exit_code == 1 and "WRONG_PIN" in screen
    fresh = tmp_path / "new.wallet"
    exit_code, screen = _talk(["--wallet", str(fresh), "provision", "--server",
                               "http://127.0.0.1:9", "--code", "ABCD-EFGH"], ["1234", "4321"])
    assert exit_code == 2 and "PIN_MISMATCH" in screen and not fresh.exists()


def test_each_pay_display_is_a_new_code_even_in_the_same_second(
        provisioned: tuple[Wallet, Card]) -> None:
    """Two sales at two shops within one renewal period: two codes, never one code twice
    (which the authority would book as a double spend)."""
    wallet, _ = provisioned
    shown = [run(["--wallet", str(wallet.path), "show", "--purpose", "pay", "--text"])
             for _ in range(3)]
    codes = [result.stdout.strip() for result in shown]
    assert all(result.exit_code == 0 for result in shown)
    assert len(set(codes)) == 3
    ids = [run(["--wallet", str(wallet.path), "show", "--purpose", "id", "--text"]).stdout
           for _ in range(2)]
    assert ids[0] == ids[1]  # identity codes renew with the clock only


def test_pay_answers_a_challenge_with_a_code_bound_to_that_sale(
    provisioned: tuple[Wallet, Card], tmp_path: Path,
) -> None:
    wallet, _ = provisioned
    picture = tmp_path / "challenge.png"
    presentation_qr(SALE.text).make_image().save(picture)
    codes = []
    for source in (["--challenge", SALE.text], ["--challenge-image", str(picture)]):
        paid = run(["--wallet", str(wallet.path), "pay", *source, "--text"])
        assert paid.exit_code == 0, paid.output
        codes.append(paid.stdout.strip())
    state = World().state(NOW)
    for code in codes:
        assert code.startswith("FMC2:")
        bound = verify_presentation(code, state=state, policy=POLICIES["payment"], now=NOW,
                                    replay_cache=None, challenge=SALE)
        assert bound.code is ResultCode.OK
        other = replace(SALE, amount_fen=SALE.amount_fen + 1)
        assert verify_presentation(code, state=state, policy=POLICIES["payment"], now=NOW,
                                   replay_cache=None, challenge=other).code is (
            ResultCode.CHALLENGE_MISMATCH)
    assert codes[0] != codes[1]  # one code per display


@pytest.mark.parametrize(("args", "code", "exit_code"), [
    (["pay", "--text"], "BAD_ARGUMENT", 2),
    (["pay", "--challenge", SALE.text, "--challenge-image", "x.png"], "BAD_ARGUMENT", 2),
    (["pay", "--challenge", "FMC1:123"], "BAD_CHALLENGE", 2),
    (["pay", "--challenge", "FMCC9:123"], "BAD_CHALLENGE", 2),
    (["pay", "--challenge-image", "/nonexistent.png"], "BAD_CHALLENGE", 2),
])
def test_pay_refuses_what_is_not_a_challenge(provisioned: tuple[Wallet, Card],
                                             args: list[str], code: str,
                                             exit_code: int) -> None:
    wallet, card = provisioned
    result = run(["--wallet", str(wallet.path), *args])
    assert (result.exit_code, error_code(result)) == (exit_code, code)
    assert open_wallet(wallet.path, PIN).card(card.card_number).last_pay_proof_time is None
