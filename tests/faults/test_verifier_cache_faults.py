"""Faults at the verifier: the disk fills up while ``verifier sync`` writes a new status
list, and cache files are found truncated. The real ``verifier`` command runs against a
real authority served over HTTP.

A failed write leaves the old cache valid and in use, and the command says why; a
damaged cache falls back to the last good state or is refused with a stable code. Never
a traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import pytest
from cardsvc_kit import device_key, provision_request
from kit.names import in_letters
from kit.net import serving

from cardsvc.api import create_app
from cardsvc.services.bootstrap import initialise
from cardsvc.settings import get_settings
from keys import Ed25519Signer, sign_presentation

pytestmark = pytest.mark.e2e

VERIFIER = Path(sys.executable).with_name("verifier")
_serial = count()
_last_proof = [0]


@dataclass
class Counter:
    """An authority on HTTP, one provisioned card, and a verifier cache directory."""

    url: str
    root: str
    admin: dict[str, str]
    id_credential: str
    device: Ed25519Signer

    def presentation(self) -> str:
        """A fresh ``id`` presentation: proof times only go up, so none is seen twice."""
        now = int(time.time())
        proof_time = max(_last_proof[0] + 1, now - 50)
        if proof_time > now + 2:
            time.sleep(proof_time - now - 2)
        _last_proof[0] = proof_time
        return sign_presentation(self.id_credential, self.device, proof_time=proof_time,
                                 purpose="id")

    def new_card(self) -> str:
        with httpx.Client(base_url=self.url, headers=self.admin, timeout=30) as client:
            n = next(_serial)
            person = client.post("/v1/persons", json={
                "surname": f"CACHE{in_letters(n)}", "given_names": "Test", "nationality": "GHA",
                "birth_date": "1979-05-0" + str(1 + n % 9), "sex": "F", "confirm_new": True,
                "passport": {"number": f"VC{n:07d}{os.getpid() % 1000:03d}", "country": "GHA",
                             "expires": "2034-01-01"}})
            assert person.status_code == 201, person.text
            issued = client.post("/v1/cards", json={
                "foreigner_code": person.json()["foreigner_code"],
                "entitlements": ["healthcare"], "valid_until": "2034-01-01"})
            assert issued.status_code == 201, issued.text
            return str(issued.json()["card_number"])

    def revoke(self, card_number: str) -> None:
        answer = httpx.post(f"{self.url}/v1/cards/{card_number}/revoke", headers=self.admin,
                            json={"reason": "fault test"}, timeout=30)
        assert answer.status_code == 200, answer.text


@pytest.fixture(scope="module")
def counter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Counter]:
    data_dir = tmp_path_factory.mktemp("verifier-faults") / "data"
    settings = get_settings(data_dir=data_dir, database_url=f"sqlite:///{data_dir}/cardsvc.db",
                            key_passphrase="fault-pass")
    init = initialise(settings, now=datetime.now(UTC))
    assert init.admin_token is not None
    admin = {"Authorization": f"Bearer {init.admin_token}"}
    app = create_app(settings)  # the system clock: the verifier runs on it too
    try:
        with serving(app) as url:
            settings.public_url = url
            phone = device_key(33)
            with httpx.Client(base_url=url, headers=admin, timeout=30) as client:
                person = client.post("/v1/persons", json={
                    "surname": "OKONKWO", "given_names": "Ada", "nationality": "NGA",
                    "birth_date": "1988-08-08", "sex": "F", "confirm_new": True,
                    "passport": {"number": "VF1234567", "country": "NGA",
                                 "expires": "2034-01-01"}}).json()
                issued = client.post("/v1/cards", json={
                    "foreigner_code": person["foreigner_code"],
                    "entitlements": ["healthcare"], "valid_until": "2034-01-01"}).json()
            bundle = httpx.post(f"{url}/v1/provision", timeout=30,
                                json=provision_request(issued["provisioning_code"], phone))
            assert bundle.status_code == 200, bundle.text
            yield Counter(url, init.root_fingerprint, admin,
                          bundle.json()["credentials"]["id"], phone)
    finally:
        app.state.context.database.dispose()


def verifier(cache: Path, *args: str,
             preexec: Callable[[], None] | None = None) -> tuple[int, dict[str, Any], str]:
    """Run the real command with --json; (exit code, the JSON it printed, stderr). A
    refusal always carries a code."""
    done = subprocess.run([str(VERIFIER), "--cache", str(cache), *args, "--json"],
                          capture_output=True, text=True, timeout=120, check=False,
                          preexec_fn=preexec)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    assert done.returncode in (0, 1, 2), (done.returncode, done.stderr)
    printed = json.loads(done.stdout.strip().splitlines()[-1])
    assert printed.get("ok") is True or isinstance(printed.get("code"), str), printed
    return done.returncode, printed, done.stderr


def sync(counter: Counter, cache: Path, **kwargs: Any) -> tuple[int, dict[str, Any], str]:
    return verifier(cache, "sync", "--server", counter.url, "--root", counter.root, **kwargs)


def check(counter: Counter, cache: Path) -> tuple[int, dict[str, Any], str]:
    return verifier(cache, "check", "--as", "counter", "--text", counter.presentation())


def _cache_files(cache: Path) -> dict[str, bytes]:
    return {str(p.relative_to(cache)): p.read_bytes() for p in sorted(cache.rglob("*"))
            if p.is_file() and not p.name.startswith(("replay", ".sync"))}


# --- the disk fills up during a sync --------------------------------------------------------

@contextlib.contextmanager
def small_filesystem(directory: Path) -> Iterator[bool]:
    """A 512 KiB tmpfs at ``directory`` (True), or nothing when mounting is not permitted
    (False: the caller limits the file size of the process instead)."""
    directory.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs",
                              str(directory)], capture_output=True, check=False).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(directory)], capture_output=True, check=False)


def _fill(directory: Path) -> Path:
    """Write a file until the filesystem is full."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as out:
        block = b"\0" * 4096
        try:
            while True:
                out.write(block)
        except OSError:
            pass
    return filler


def _no_writes_at_all() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # every write past byte 0 fails


def test_fault_disk_full_during_a_status_list_write(counter: Counter, tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "small") as mounted:
        cache = tmp_path / "small" / "cache"
        assert sync(counter, cache)[0] == 0
        assert check(counter, cache)[1]["code"] == "OK"
        counter.revoke(counter.new_card())  # the status list changes: a new file to write
        before = _cache_files(cache)
        if mounted:
            filler = _fill(tmp_path / "small")
            exit_code, printed, _ = sync(counter, cache)
        else:
            filler = None
            exit_code, printed, _ = sync(counter, cache, preexec=_no_writes_at_all)
        assert exit_code == 1
        assert printed["ok"] is False and printed["code"] == "CACHE_WRITE_FAILED"
        assert "previous cache is kept" in printed["detail"]
        assert _cache_files(cache) == before  # nothing half-written, no temp file left
        if filler is not None:
            filler.unlink()
        # The old cache is intact and in use: the card still reads as it did at that sync.
        exit_code, printed, _ = check(counter, cache)
        assert (exit_code, printed["code"], printed["cache_fallback"]) == (0, "OK", False)
        assert sync(counter, cache)[0] == 0  # space again: the sync completes


def test_fault_a_failed_sync_is_caught_up_by_the_next(
    counter: Counter, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    assert sync(counter, cache)[0] == 0
    card = counter.new_card()
    phone = device_key(44)
    with httpx.Client(base_url=counter.url, headers=counter.admin, timeout=30) as client:
        code = client.post(f"/v1/cards/{card}/provisioning-codes").json()["provisioning_code"]
    bundle = httpx.post(f"{counter.url}/v1/provision", json=provision_request(code, phone),
                        timeout=30).json()
    revoked = Counter(counter.url, counter.root, counter.admin, bundle["credentials"]["id"],
                      phone)
    counter.revoke(card)
    assert sync(counter, cache, preexec=_no_writes_at_all)[0] == 1
    assert check(revoked, cache)[1]["code"] == "OK"  # the old list: the counter cannot know
    assert sync(counter, cache)[0] == 0
    assert check(revoked, cache)[1]["code"] == "REVOKED"


# --- truncated cache files -------------------------------------------------------------------

@pytest.fixture(scope="module")
def synced_twice(counter: Counter, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache synced twice with a status change between: manifest.prev.json names other
    status list bytes than manifest.json; one check has made the replay store."""
    cache = tmp_path_factory.mktemp("synced") / "cache"
    assert sync(counter, cache)[0] == 0
    counter.revoke(counter.new_card())
    assert sync(counter, cache)[0] == 0
    assert check(counter, cache)[1]["code"] == "OK"
    return cache


def _manifest(cache: Path, name: str = "manifest.json") -> dict[str, Any]:
    return dict(json.loads((cache / name).read_bytes()))


def _cut(path: Path, keep: float = 0.5) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])


def _status_file(cache: Path, manifest: str = "manifest.json") -> Path:
    entry = next(iter(_manifest(cache, manifest)["status_lists"].values()))
    return cache / "lists" / str(entry["file"])


def _trust_file(cache: Path) -> Path:
    return cache / "lists" / str(_manifest(cache)["trust_list"]["file"])


def _zero(path: Path) -> None:
    path.write_bytes(b"\0" * len(path.read_bytes()))


def _both_manifests_emptied(cache: Path) -> None:
    _cut(cache / "manifest.json", 0)
    _cut(cache / "manifest.prev.json", 0)


def _both_status_files_cut(cache: Path) -> None:
    _cut(_status_file(cache, "manifest.prev.json"))
    _cut(_status_file(cache))


TRUNCATIONS: list[tuple[str, Callable[[Path], object], int, str, bool]] = [
    # (what, damage, exit code, code, served from the previous manifest)
    # The previous manifest names the status list from before the revocation: falling
    # back to it would hide the revocation (P8.7), so the cache is refused until a sync.
    ("manifest cut in half", lambda c: _cut(c / "manifest.json"), 2, "CACHE_ROLLBACK", False),
    ("manifest emptied", lambda c: _cut(c / "manifest.json", 0), 2, "CACHE_ROLLBACK", False),
    ("manifest zeroed, same length", lambda c: _zero(c / "manifest.json"), 2,
     "CACHE_ROLLBACK", False),
    ("current status list file cut", lambda c: _cut(_status_file(c)), 2, "CACHE_ROLLBACK",
     False),
    ("both manifests emptied", _both_manifests_emptied, 2, "CACHE_CORRUPT", False),
    ("both status list files cut", _both_status_files_cut, 2, "CACHE_CORRUPT", False),
    ("trust list file cut (shared by both)", lambda c: _cut(_trust_file(c)), 2,
     "CACHE_CORRUPT", False),
    ("pinned root emptied", lambda c: _cut(c / "pinned-root", 0), 2, "CACHE_CORRUPT", False),
    ("pinned root cut", lambda c: _cut(c / "pinned-root"), 2, "CACHE_CORRUPT", False),
    ("replay store cut in half", lambda c: _cut(c / "replay.sqlite"), 2, "REPLAY_STORE",
     False),
]


@pytest.mark.parametrize(("what", "damage", "exit_code", "code", "fallback"), TRUNCATIONS,
                         ids=[t[0] for t in TRUNCATIONS])
def test_fault_truncated_cache_file(counter: Counter, synced_twice: Path, tmp_path: Path,
                                    what: str, damage: Callable[[Path], object], exit_code: int,
                                    code: str, fallback: bool) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(synced_twice, cache)
    damage(cache)
    got_exit, printed, _ = check(counter, cache)
    assert (got_exit, printed["code"]) == (exit_code, code), printed
    if got_exit == 0:
        assert printed["cache_fallback"] is fallback
    # A sync repairs damaged lists (a damaged pin or replay store needs a person).
    if code in ("CACHE_CORRUPT", "CACHE_ROLLBACK") and not what.startswith("pinned"):
        assert sync(counter, cache)[0] == 0
        repaired_exit, repaired, _ = check(counter, cache)
        assert (repaired_exit, repaired["code"], repaired["cache_fallback"]) == (0, "OK", False)
