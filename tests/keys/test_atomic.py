"""keys._atomic: the one crash-safe file write every package uses."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from keys import Ed25519Signer, KeyStore
from keys._atomic import WRITE_STEPS, atomic_writer, remove_stale_temporaries, write_atomically


@pytest.mark.parametrize("mode", [0o600, 0o644, 0o400])
def test_the_file_gets_the_content_and_mode_and_nothing_is_left_beside_it(
    tmp_path: Path, mode: int
) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    write_atomically(target, b"new" * 5000, mode=mode)
    assert target.read_bytes() == b"new" * 5000
    assert stat.S_IMODE(target.stat().st_mode) == mode
    assert sorted(os.listdir(tmp_path)) == ["state.json"]


def test_every_step_runs_in_order_and_a_failure_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    steps: list[str] = []
    write_atomically(target, b"first", on_step=steps.append)
    assert [step for step in steps if step != "wrote"] == [
        step for step in WRITE_STEPS if step != "wrote"]

    def crash(step: str) -> None:
        if step == "synced":
            raise OSError("power cut")

    with pytest.raises(OSError):
        write_atomically(target, b"second", on_step=crash)
    assert target.read_bytes() == b"first"
    assert sorted(os.listdir(tmp_path)) == ["state.json"]


def test_temporaries_have_unique_names_and_stale_ones_are_removed(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    names: set[str] = set()

    def remember(step: str) -> None:
        if step == "created":
            names.update(os.listdir(tmp_path))

    for _ in range(3):
        write_atomically(target, b"x", on_step=remember)
    names.discard("state.json")
    assert len(names) == 3  # never a fixed name another writer could share
    (tmp_path / ".state.json.leftover.tmp").write_bytes(b"killed writer")
    remove_stale_temporaries(target)
    assert sorted(os.listdir(tmp_path)) == ["state.json"]


def test_the_key_store_writes_through_it(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys", passphrase=b"correct horse")
    signer = Ed25519Signer(bytes(range(32)), kid="k1")
    path = store.save(signer)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path / "keys")) == ["k1.pem"]
    assert store.load("k1").seed == signer.seed


def test_a_streamed_write_is_private_from_the_first_byte_and_dropped_on_error(
    tmp_path: Path,
) -> None:
    target = tmp_path / "backup.tar.gz"
    with atomic_writer(target, mode=0o600) as stream:
        stream.write(b"part one")
        (temporary,) = [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
        assert stat.S_IMODE((tmp_path / temporary).stat().st_mode) == 0o600
        assert not target.exists()  # nothing at the final name until the block ends
    assert target.read_bytes() == b"part one"
    with pytest.raises(RuntimeError), atomic_writer(target) as stream:
        stream.write(b"half an archive")
        raise RuntimeError("the disk filled up")
    assert target.read_bytes() == b"part one"
    assert sorted(os.listdir(tmp_path)) == ["backup.tar.gz"]
