"""The encrypted wallet file: PIN, format, atomic writes that survive a kill anywhere."""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from keys import Ed25519Signer, sign_credential
from schemas import Purpose, b64url_encode
from support import ISSUER_KEY, NOW, credential
from wallet_sim import Card, KdfLimits, WalletError, WalletErrorCode, create_wallet, open_wallet
from wallet_sim._atomic import write_atomically

PIN = "482913"
FAST = KdfLimits.minimum()


def make_card(number: str, seed_byte: int, *, portrait: bytes | None = None) -> Card:
    device = Ed25519Signer(bytes([seed_byte]) * 32)
    credentials = {
        p: sign_credential(credential(p, holder_key=device.public_key, card_number=number),
                           ISSUER_KEY)
        for p in Purpose
    }
    return Card(card_number=number, credentials=credentials, server_url="http://127.0.0.1:9",
                provisioned_at=NOW, device_seed=device.seed, portrait=portrait)


def secret_forms(seed: bytes) -> list[bytes]:
    """Every way a careless writer could put the seed in a file."""
    forms = [seed, seed.hex().encode(), seed.hex().upper().encode(),
             b64url_encode(seed).encode(), base64.b64encode(seed)]
    signer = Ed25519Signer(seed)
    full = seed + signer.public_key  # libsodium's 64-byte secret key
    return [*forms, full, base64.b64encode(full), b64url_encode(full).encode()]


def all_bytes_in(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in directory.iterdir() if p.is_file())


def test_round_trip_and_clear_header(wallet_path: Path) -> None:
    wallet = create_wallet(wallet_path, PIN, limits=FAST)
    card = make_card("3300000000000017", 7, portrait=b"\xff\xd8\xff portrait")
    wallet.put(card)
    reopened = open_wallet(wallet_path, PIN)
    assert reopened.cards == (card,)
    header = json.loads(wallet_path.read_bytes())
    assert header["format"] == "fmc-wallet" and header["version"] == 1
    assert header["kdf"]["alg"] == "argon2id13"
    assert (header["kdf"]["opslimit"], header["kdf"]["memlimit"]) == (FAST.opslimit,
                                                                      FAST.memlimit)
    assert set(header) == {"format", "version", "kdf", "box"}
    assert wallet_path.stat().st_mode & 0o777 == 0o600


def test_default_kdf_is_interactive(wallet_path: Path) -> None:
    create_wallet(wallet_path, PIN).put(make_card("3300000000000017", 7))
    assert open_wallet(wallet_path, PIN).kdf_limits == KdfLimits.interactive()


def test_no_private_key_or_personal_data_in_clear(wallet_path: Path) -> None:
    wallet = create_wallet(wallet_path, PIN, limits=FAST)
    cards = [make_card("3300000000000017", 7), make_card("3300000000000025", 9)]
    for card in cards:
        wallet.put(card)
    stored = all_bytes_in(wallet_path.parent)
    for card in cards:
        for form in secret_forms(card.device_seed):
            assert form not in stored
        assert card.credentials[Purpose.ID].encode() not in stored
    assert b"device_seed" not in stored and b"3300000000000017" not in stored
    assert b"MUHAMMAD" not in stored
    assert "device_seed" not in repr(cards[0]) and "seed" not in repr(wallet)


def test_wrong_pin_is_clear_and_changes_nothing(wallet_path: Path) -> None:
    create_wallet(wallet_path, PIN, limits=FAST).put(make_card("3300000000000017", 7))
    before = (wallet_path.read_bytes(), wallet_path.stat().st_mtime_ns)
    with pytest.raises(WalletError) as caught:
        open_wallet(wallet_path, "000000")
    assert caught.value.code is WalletErrorCode.WRONG_PIN
    assert not caught.value.is_usage_error  # a refusal: CLI exit 1
    assert (wallet_path.read_bytes(), wallet_path.stat().st_mtime_ns) == before
    assert sorted(p.name for p in wallet_path.parent.iterdir()) == [wallet_path.name]


def test_pin_is_normalized_full_width_digits(wallet_path: Path) -> None:
    create_wallet(wallet_path, "482913", limits=FAST).put(make_card("3300000000000017", 7))
    assert len(open_wallet(wallet_path, "４８２９１３").cards) == 1


@pytest.mark.parametrize(
    ("pin", "code"),
    [("123", WalletErrorCode.PIN_TOO_SHORT), ("", WalletErrorCode.PIN_TOO_SHORT),
     ("9" * 200, WalletErrorCode.BAD_ARGUMENT)],
)
def test_new_pin_rules(wallet_path: Path, pin: str, code: WalletErrorCode) -> None:
    with pytest.raises(WalletError) as caught:
        create_wallet(wallet_path, pin, limits=FAST)
    assert caught.value.code is code
    assert not wallet_path.exists()


def _valid_header(wallet_path: Path) -> dict[str, Any]:
    create_wallet(wallet_path, PIN, limits=FAST).put(make_card("3300000000000017", 7))
    header: dict[str, Any] = json.loads(wallet_path.read_bytes())
    return header


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda h: b"", WalletErrorCode.WALLET_CORRUPT),
        (lambda h: b"not json at all", WalletErrorCode.WALLET_CORRUPT),
        (lambda h: b"[1, 2]", WalletErrorCode.WALLET_CORRUPT),
        (lambda h: {**h, "format": "other"}, WalletErrorCode.WALLET_CORRUPT),
        (lambda h: {**h, "version": 2}, WalletErrorCode.UNSUPPORTED_WALLET_VERSION),
        (lambda h: {**h, "kdf": {**h["kdf"], "memlimit": 2**40}},
         WalletErrorCode.WALLET_CORRUPT),
        (lambda h: {**h, "kdf": {**h["kdf"], "opslimit": 0}},
         WalletErrorCode.WALLET_CORRUPT),
        (lambda h: {**h, "kdf": {**h["kdf"], "alg": "scrypt"}},
         WalletErrorCode.WALLET_CORRUPT),
        (lambda h: {**h, "kdf": {**h["kdf"], "salt": "AAAA"}},
         WalletErrorCode.WALLET_CORRUPT),
        (lambda h: {**h, "box": "AAAA"}, WalletErrorCode.WALLET_CORRUPT),
        (lambda h: {**h, "box": "!!"}, WalletErrorCode.WALLET_CORRUPT),
        (lambda h: {**h, "box": str(h["box"])[:-4] + "AAAA"}, WalletErrorCode.WRONG_PIN),
    ],
)
def test_damaged_files_give_codes(
    wallet_path: Path, mutate: Callable[[dict[str, Any]], object], code: WalletErrorCode
) -> None:
    changed = mutate(_valid_header(wallet_path))
    wallet_path.write_bytes(changed if isinstance(changed, bytes) else json.dumps(changed).encode())
    with pytest.raises(WalletError) as caught:
        open_wallet(wallet_path, PIN)
    assert caught.value.code is code


def test_missing_file_and_directory(tmp_path: Path) -> None:
    for path in (tmp_path / "absent.wallet", tmp_path):
        with pytest.raises(WalletError) as caught:
            open_wallet(path, PIN)
        assert caught.value.code is WalletErrorCode.WALLET_NOT_FOUND


def test_card_selection(wallet_path: Path) -> None:
    wallet = create_wallet(wallet_path, PIN, limits=FAST)
    with pytest.raises(WalletError) as caught:
        wallet.card()
    assert caught.value.code is WalletErrorCode.NO_CARDS
    first, second = make_card("3300000000000017", 7), make_card("3300000000000025", 9)
    wallet.put(first)
    assert wallet.card() == first
    wallet.put(second)
    with pytest.raises(WalletError) as caught:
        wallet.card()
    assert caught.value.code is WalletErrorCode.CARD_REQUIRED
    assert wallet.card(" 3300000000000025 ") == second
    with pytest.raises(WalletError) as caught:
        wallet.card("3300000000000033")
    assert caught.value.code is WalletErrorCode.CARD_NOT_FOUND
    replacement = make_card("3300000000000017", 11)
    wallet.put(replacement)  # a new phone key for the same card replaces the old entry
    assert open_wallet(wallet_path, PIN).cards == (second, replacement)


def test_concurrent_handles_keep_each_others_cards(wallet_path: Path) -> None:
    create_wallet(wallet_path, PIN, limits=FAST).put(make_card("3300000000000017", 7))
    one, two = open_wallet(wallet_path, PIN), open_wallet(wallet_path, PIN)
    one.put(make_card("3300000000000025", 9))
    two.put(make_card("3300000000000033", 11))  # two's view was stale: it re-reads under lock
    numbers = [c.card_number for c in open_wallet(wallet_path, PIN).cards]
    assert numbers == ["3300000000000017", "3300000000000025", "3300000000000033"]


def test_replaced_file_is_not_overwritten(wallet_path: Path, tmp_path: Path) -> None:
    create_wallet(wallet_path, PIN, limits=FAST).put(make_card("3300000000000017", 7))
    stale = open_wallet(wallet_path, PIN)
    other = tmp_path / "other.wallet"
    create_wallet(other, PIN, limits=FAST).put(make_card("3300000000000025", 9))
    os.replace(other, wallet_path)  # someone restored a different wallet meanwhile
    before = wallet_path.read_bytes()
    assert stale.changed_on_disk()
    with pytest.raises(WalletError) as caught:
        stale.put(make_card("3300000000000033", 11))
    assert caught.value.code is WalletErrorCode.WALLET_CHANGED
    assert wallet_path.read_bytes() == before


# --- crashes --------------------------------------------------------------------------

OLD = "3300000000000017"
NEW = "3300000000000025"
BIG_PORTRAIT = bytes(random.Random(5).randrange(256) for _ in range(20_000))  # several chunks


def _steps_of_one_write(wallet_path: Path) -> list[str]:
    steps: list[str] = []
    open_wallet(wallet_path, PIN).put(make_card(NEW, 9, portrait=BIG_PORTRAIT),
                                      on_write_step=steps.append)
    return steps


def _fresh_old_wallet(wallet_path: Path) -> None:
    for leftover in wallet_path.parent.iterdir():
        leftover.unlink()
    create_wallet(wallet_path, PIN, limits=FAST).put(make_card(OLD, 7))


def _numbers(wallet_path: Path) -> list[str]:
    return [c.card_number for c in open_wallet(wallet_path, PIN).cards]


def test_write_failure_at_each_step_leaves_old_or_new(wallet_path: Path) -> None:
    _fresh_old_wallet(wallet_path)
    steps = _steps_of_one_write(wallet_path)
    assert steps[0] == "created" and steps[-2:] == ["renamed", "directory_synced"]
    assert steps.count("wrote") >= 5
    renamed_at = steps.index("renamed")
    for failing in range(len(steps)):
        _fresh_old_wallet(wallet_path)
        calls = iter(range(len(steps)))

        def fail_here(step: str, failing: int = failing, calls: Iterator[int] = calls) -> None:
            if next(calls) == failing:
                raise OSError(28, "No space left on device")

        wallet = open_wallet(wallet_path, PIN)
        if failing < renamed_at:
            with pytest.raises(WalletError) as caught:
                wallet.put(make_card(NEW, 9, portrait=BIG_PORTRAIT), on_write_step=fail_here)
            assert caught.value.code is WalletErrorCode.WRITE_FAILED
            assert _numbers(wallet_path) == [OLD]
            assert wallet.cards[-1].card_number == OLD  # memory did not run ahead of disk
            assert [p.name for p in wallet_path.parent.iterdir()] == [wallet_path.name]
        else:
            with pytest.raises(WalletError):
                wallet.put(make_card(NEW, 9, portrait=BIG_PORTRAIT), on_write_step=fail_here)
            assert _numbers(wallet_path) == [OLD, NEW]


def _killed_child(wallet_path: Path, kill_at: int | None, *, loop: bool = False) -> int:
    """Fork a writer that SIGKILLs itself after step ``kill_at`` (or loops until killed).

    In loop mode the call returns once the child has completed its first write.
    """
    started_reading, started_writing = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        os.close(started_reading)
        try:
            wallet = open_wallet(wallet_path, PIN)
            calls = 0

            def die_here(step: str) -> None:
                nonlocal calls
                if calls == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                calls += 1

            for round_number in range(10, 250):
                # The same card again and again, each time with another device key.
                wallet.put(make_card(NEW, round_number, portrait=BIG_PORTRAIT),
                           on_write_step=die_here)
                if not loop:
                    break
                if round_number == 10:
                    os.write(started_writing, b"!")
        finally:
            os._exit(0)
    os.close(started_writing)
    if loop:
        assert os.read(started_reading, 1) == b"!"
    os.close(started_reading)
    return pid


def test_sigkill_after_every_write_step(wallet_path: Path) -> None:
    _fresh_old_wallet(wallet_path)
    steps = _steps_of_one_write(wallet_path)
    renamed_at = steps.index("renamed")
    seen = set()
    for kill_at in range(len(steps)):
        _fresh_old_wallet(wallet_path)
        pid = _killed_child(wallet_path, kill_at)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        numbers = _numbers(wallet_path)  # always opens: never a torn file
        assert numbers == ([OLD] if kill_at < renamed_at else [OLD, NEW])
        seen.add(tuple(numbers))
        for form in secret_forms(make_card(NEW, 9).device_seed):
            assert form not in all_bytes_in(wallet_path.parent)  # leftovers are ciphertext
    assert seen == {(OLD,), (OLD, NEW)}
    # The next successful write sweeps temporaries left by killed writers.
    open_wallet(wallet_path, PIN).put(make_card("3300000000000041", 13))
    assert [p.name for p in wallet_path.parent.iterdir()] == [wallet_path.name]


def test_sigkill_at_random_moments(wallet_path: Path) -> None:
    _fresh_old_wallet(wallet_path)
    chooser = random.Random(20270115)
    written: set[int] = set()
    for _ in range(12):
        pid = _killed_child(wallet_path, None, loop=True)
        time.sleep(chooser.uniform(0.0, 0.03))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        cards = open_wallet(wallet_path, PIN).cards  # always opens: never a torn file
        assert [c.card_number for c in cards] == [OLD, NEW]
        assert cards[1] == make_card(NEW, cards[1].device_seed[0], portrait=BIG_PORTRAIT)
        written.add(cards[1].device_seed[0])
    assert len(written) > 1  # the kills landed at different points


def test_write_atomically_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "code.png"
    write_atomically(target, b"first", mode=0o644)
    write_atomically(target, b"second")
    assert target.read_bytes() == b"second"
    assert [p.name for p in tmp_path.iterdir()] == ["code.png"]


def test_pay_proof_times_never_repeat_for_a_card() -> None:
    from wallet_sim.card import PayProofClock

    clock = PayProofClock()
    times = [clock.next("A", now=100), clock.next("A", now=100), clock.next("B", now=100),
             clock.next("A", now=200)]
    assert times == [100, 101, 100, 200]
