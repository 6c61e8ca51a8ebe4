"""The wallet against a real ``cardsvc`` process (SQLite, real clock, real HTTP)."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from kit.processes import CardsvcServer, clean_env, run_cli
from PIL import Image
from typer.testing import CliRunner
from wallet_testkit import PIN, POLICY_FOR

from schemas import Purpose
from schemas.codes import ResultCode
from schemas.credential import portrait_digest
from verifier import POLICIES, MemoryReplayCache, TrustedSet, VerifierState, verify_presentation
from wallet_sim import KdfLimits, open_wallet
from wallet_sim.cli import make_app

pytestmark = pytest.mark.e2e



@dataclass
class RunningAuthority:
    url: str
    admin: dict[str, str]
    root_fingerprint: str

    def state(self) -> VerifierState:
        """A verifier synced now from the authority's public routes."""
        now = int(time.time())
        trusted = TrustedSet(root_fingerprint=self.root_fingerprint)
        trusted.update_trust_list(httpx.get(self.url + "/v1/trust-list").text, now=now)
        for entry in httpx.get(self.url + "/v1/status-lists").json()["status_lists"]:
            trusted.update_status_list(
                httpx.get(f"{self.url}/v1/status-lists/{entry['id']}").text, now=now)
        return trusted.snapshot()


@pytest.fixture(scope="module")
def cardsvc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAuthority]:
    data_dir = tmp_path_factory.mktemp("cardsvc") / "data"
    env = clean_env(CARDSVC_KEY_PASSPHRASE="wallet-e2e-pass")
    init = run_cli("cardsvc", "init", "--data-dir", str(data_dir), env=env, timeout=60)
    assert init.returncode == 0, init.stderr
    printed = dict(line.split(":", 1) for line in init.stdout.splitlines() if ":" in line)
    token, fingerprint = printed["admin token"].strip(), printed["root fingerprint"].strip()
    server = CardsvcServer(data_dir, env, data_dir.parent / "serve.log", start_timeout=30)
    try:
        yield RunningAuthority(server.start().url, {"Authorization": f"Bearer {token}"},
                               fingerprint)
    finally:
        server.stop()


def _jpeg_portrait() -> bytes:
    image = Image.new("RGB", (90, 120), (190, 160, 130))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return out.getvalue()


def _issue_card(authority: RunningAuthority, passport: str) -> tuple[str, str]:
    person = httpx.post(authority.url + "/v1/persons", headers=authority.admin, json={
        "surname": "AL-HASHIMI", "given_names": "MOHAMMED", "nationality": "SYR",
        "birth_date": "1984-06-30", "sex": "M", "confirm_new": True,
        "passport": {"number": passport, "country": "SYR", "expires": "2031-05-01"},
        "portrait": base64.b64encode(_jpeg_portrait()).decode()})
    assert person.status_code == 201, person.text
    card = httpx.post(authority.url + "/v1/cards", headers=authority.admin, json={
        "foreigner_code": person.json()["foreigner_code"],
        "entitlements": ["healthcare", "social_insurance", "payment"],
        "valid_until": "2030-12-31"})
    assert card.status_code == 201, card.text
    return card.json()["card_number"], card.json()["provisioning_code"]


def _wallet(args: list[str]) -> tuple[int, str, str]:
    app = make_app(kdf_limits=KdfLimits.minimum())  # the real clock
    result = CliRunner().invoke(app, args, env={"FMC_WALLET_PIN": PIN})
    return result.exit_code, result.stdout, result.stderr


def test_provision_show_refresh_and_revoke_with_real_cardsvc(
    cardsvc: RunningAuthority, wallet_path: Path
) -> None:
    card_number, code = _issue_card(cardsvc, "N0112233")
    wallet = ["--wallet", str(wallet_path)]
    exit_code, _, stderr = _wallet([*wallet, "provision", "--server", cardsvc.url,
                                    "--code", code])
    assert exit_code == 0, stderr
    (card,) = open_wallet(wallet_path, PIN).cards
    assert card.card_number == card_number and card.portrait is not None
    # The authority re-encodes portraits; the wallet keeps what matches the signed digest.
    assert portrait_digest(card.portrait) == card.claims(Purpose.ID).portrait_digest
    assert card.holder.foreigner_code is not None and card.holder.surname == "AL-HASHIMI"

    state = cardsvc.state()
    for purpose in Purpose:
        exit_code, text, stderr = _wallet([*wallet, "show", "--purpose", purpose.value,
                                           "--text"])
        assert exit_code == 0, stderr
        result = verify_presentation(text.strip(), state=state,
                                     policy=POLICIES[POLICY_FOR[purpose]],
                                     now=int(time.time()), replay_cache=MemoryReplayCache())
        assert result.code is ResultCode.OK, result.detail

    exit_code, _, stderr = _wallet([*wallet, "refresh"])
    assert exit_code == 0, stderr
    (refreshed,) = open_wallet(wallet_path, PIN).cards
    assert refreshed.refreshed_at is not None
    assert refreshed.device_public_key == card.device_public_key

    again, _, stderr = _wallet([*wallet, "provision", "--server", cardsvc.url, "--code", code])
    assert again == 1 and "PROVISIONING_CODE_USED" in stderr

    revoked = httpx.post(f"{cardsvc.url}/v1/cards/{card_number}/revoke",
                         headers=cardsvc.admin, json={"reason": "lost phone"})
    assert revoked.status_code == 200, revoked.text
    exit_code, text, _ = _wallet([*wallet, "show", "--purpose", "id", "--text"])
    result = verify_presentation(text.strip(), state=cardsvc.state(),
                                 policy=POLICIES["counter"], now=int(time.time()),
                                 replay_cache=MemoryReplayCache())
    assert result.code is ResultCode.REVOKED
    exit_code, _, stderr = _wallet([*wallet, "refresh"])
    assert exit_code == 1 and "CARD_REVOKED" in stderr
    # The wallet remembers the authority's answer: no longer "valid", and no code shown.
    (recorded,) = open_wallet(wallet_path, PIN).cards
    assert recorded.revoked_at is not None
    exit_code, listing, _ = _wallet([*wallet, "list"])
    assert exit_code == 0 and "│ REVOKED │" in listing and "│ valid │" not in listing
    exit_code, text, stderr = _wallet([*wallet, "show", "--purpose", "id", "--text"])
    assert exit_code == 1 and "error [CARD_REVOKED]" in stderr and text == ""


def test_after_a_passport_change_a_refresh_is_enough(
    cardsvc: RunningAuthority, wallet_path: Path
) -> None:
    card_number, code = _issue_card(cardsvc, "N0445566")
    wallet = ["--wallet", str(wallet_path)]
    assert _wallet([*wallet, "provision", "--server", cardsvc.url, "--code", code])[0] == 0
    (before,) = open_wallet(wallet_path, PIN).cards
    old_text = _wallet([*wallet, "show", "--purpose", "id", "--text"])[1].strip()
    foreigner_code = before.holder.foreigner_code
    change = httpx.post(f"{cardsvc.url}/v1/persons/{foreigner_code}/passports",
                        headers=cardsvc.admin, json={"number": "N0998877", "country": "SYR",
                                                     "expires": "2034-05-01",
                                                     "surname": "AL-HASHEMI"})
    assert change.status_code == 200, change.text
    # The authority also hands out a new provisioning code (for a phone that lost its
    # wallet); the phone that holds the card needs only a refresh.
    assert [c["card_number"] for c in change.json()["cards_reissued"]] == [card_number]
    exit_code, _, stderr = _wallet([*wallet, "refresh"])
    assert exit_code == 0, stderr
    assert "PERSONAL_DATA_CHANGED" in stderr
    (after,) = open_wallet(wallet_path, PIN).cards
    assert after.holder.surname == "AL-HASHEMI"
    assert after.holder.foreigner_code == foreigner_code
    state = cardsvc.state()
    new_text = _wallet([*wallet, "show", "--purpose", "id", "--text"])[1].strip()
    results = [verify_presentation(text, state=state, policy=POLICIES["counter"],
                                   now=int(time.time()), replay_cache=MemoryReplayCache()).code
               for text in (new_text, old_text)]
    assert results == [ResultCode.OK, ResultCode.REVOKED]  # the old bundle's index is revoked


def test_suspend_and_reinstate_reach_the_phone_on_refresh(
    cardsvc: RunningAuthority, wallet_path: Path
) -> None:
    card_number, code = _issue_card(cardsvc, "N0778899")
    wallet = ["--wallet", str(wallet_path)]
    assert _wallet([*wallet, "provision", "--server", cardsvc.url, "--code", code])[0] == 0
    show = [*wallet, "show", "--purpose", "id", "--text"]
    for action, refresh_note, state, show_exit in [
        ("suspend", "warning [CARD_SUSPENDED]", "│ SUSPENDED │", 1),
        ("reinstate", "note [REINSTATED]", "│ valid │", 0),
    ]:
        answer = httpx.post(f"{cardsvc.url}/v1/cards/{card_number}/{action}",
                            headers=cardsvc.admin, json={"reason": "test"})
        assert answer.status_code == 200, answer.text
        exit_code, _, stderr = _wallet([*wallet, "refresh"])
        assert exit_code == 0 and refresh_note in stderr, stderr
        assert state in _wallet([*wallet, "list"])[1]
        exit_code, _, stderr = _wallet(show)
        assert exit_code == show_exit, stderr
        if show_exit:
            assert "error [CARD_SUSPENDED]" in stderr


def test_pay_codes_come_from_a_refilled_batch_of_one_use_credentials(
    cardsvc: RunningAuthority, wallet_path: Path
) -> None:
    """P13.3: provisioning fetches a batch (today's and tomorrow's: each credential is
    valid on one day); each pay showing takes the next one-use credential for today (no
    card number, a fresh holder key); with none left for today no code is shown, even
    after `refresh` (it pre-issues later days; the card-bound pay credential is never
    shown again)."""
    from wallet_sim.authority import PAY_BATCH_SIZE
    from wallet_sim.card import read_unverified_credential

    _, code = _issue_card(cardsvc, "N0131313")
    wallet = ["--wallet", str(wallet_path)]
    assert _wallet([*wallet, "provision", "--server", cardsvc.url, "--code", code])[0] == 0
    (card,) = open_wallet(wallet_path, PIN).cards
    assert card.one_use_pay and len(card.pay_batch) == PAY_BATCH_SIZE
    today = card.pay_today(int(time.time()))
    assert today == 5  # CARDSVC_PAY_OFFLINE_PER_DAY; the rest are tomorrow's
    state = cardsvc.state()
    handles = set()
    for _ in range(today):
        exit_code, text, stderr = _wallet([*wallet, "show", "--purpose", "pay", "--text"])
        assert exit_code == 0, stderr
        result = verify_presentation(text.strip(), state=state, policy=POLICIES["payment"],
                                     now=int(time.time()), replay_cache=MemoryReplayCache())
        assert result.ok and result.credential is not None, result.detail
        assert result.credential.card_number == "" and result.credential.pay_handle
        assert result.credential.holder_key != card.device_public_key
        handles.add(result.credential.pay_handle)
    assert len(handles) == today
    exit_code, text, stderr = _wallet([*wallet, "show", "--purpose", "pay", "--text"])
    assert exit_code == 1 and "PAY_BATCH_EMPTY" in stderr and text == ""
    assert _wallet([*wallet, "refresh"])[0] == 0
    (refilled,) = open_wallet(wallet_path, PIN).cards
    # Two more days; today's are issued (none charged yet): no sixth for today.
    assert len(refilled.pay_batch) == PAY_BATCH_SIZE - today + PAY_BATCH_SIZE
    assert all(read_unverified_credential(one.credential).is_one_use
               for one in refilled.pay_batch)
    exit_code, text, stderr = _wallet([*wallet, "show", "--purpose", "pay", "--text"])
    assert exit_code == 1 and "PAY_BATCH_EMPTY" in stderr and text == ""
