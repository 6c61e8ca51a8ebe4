"""Test kit for the fault tests: a private PostgreSQL cluster that a test may stop and
start at will (never the machine's shared one), the authority started by its CLI, and
small waiting helpers.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
from cardsvc_kit import cli
from kit.net import free_port
from kit.processes import CardsvcServer

from bench._loadgen import LoadGenerator, LoadReport

__all__ = ["Authority", "LoggedServer", "PrivatePostgres", "ReplicatedPostgres", "Running",
           "init_authority", "private_postgres", "register_terminals",
           "replicated_postgres", "wait_until"]


def _postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda path: int(path.parts[-3]) if path.parts[-3].isdigit() else 0)
    if not found:
        pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) are required: "
                    "none under /usr/lib/postgresql/*/bin")
    return found[-1].parent


class PrivatePostgres:
    """A throwaway cluster in a temp dir on a free port, owned by the ``postgres`` OS user
    when the tests run as root (initdb refuses root)."""

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        self.settings = dict(settings or {})  # -c name=value at every start
        self.bin = _postgres_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="fmc-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            owner = pwd.getpwnam("postgres")
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)

    def _run(self, tool: str, *args: str, timeout: float = 120) -> None:
        command = [str(self.bin / tool), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              check=False)
        if done.returncode != 0:
            raise AssertionError(f"{tool} failed ({done.returncode}): {done.stderr}{done.stdout}"
                                 f"\n{self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def initdb(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                  "--no-sync", "--no-instructions")

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                   "-c max_connections=60 -c shared_buffers=16MB"
                   + "".join(f" -c {name}={value}" for name, value in self.settings.items()))
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                  "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def kill(self) -> None:
        """The machine dies: the postmaster and every backend stopped at once, then SIGKILLed
        (no shutdown checkpoint, no goodbye to clients or to the standby)."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = [int(entry.name) for entry in Path("/proc").iterdir()
                    if entry.name.isdigit() and _parent_pid(entry) == postmaster]
        for pid in (postmaster, *children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        for pid in (postmaster, *children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        (self.data / "postmaster.pid").unlink(missing_ok=True)

    def create_database(self, name: str) -> str:
        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres",
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(AssertionError):
                self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def _parent_pid(proc_entry: Path) -> int | None:
    try:
        stat = (proc_entry / "stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    cluster = PrivatePostgres()
    try:
        cluster.initdb()
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


class ReplicatedPostgres:
    """A primary and a synchronous hot standby made from it with ``pg_basebackup -R``: a
    commit is acknowledged only once the standby has applied it (``remote_apply``).

    The standby runs without ``synchronous_standby_names``: once promoted it is a primary
    alone (commits are not held for a standby that does not exist yet).
    """

    def __init__(self) -> None:
        self.primary = PrivatePostgres({
            "wal_level": "replica", "max_wal_senders": "5", "synchronous_commit": "remote_apply",
            "synchronous_standby_names": "'*'", "wal_keep_size": "64MB"})
        self.standby = PrivatePostgres({"hot_standby": "on"})

    def start(self) -> None:
        self.primary.initdb()
        self.primary.start()
        self.standby._run("pg_basebackup", "-h", "127.0.0.1", "-p", str(self.primary.port),
                          "-U", "postgres", "-D", str(self.standby.data), "-R",
                          "-X", "stream", "--no-sync", "-c", "fast")
        self.standby.start()
        wait_until(self.standby_streaming, timeout=30, what="the standby to stream")

    def standby_streaming(self) -> bool:
        """The primary sees the standby as its synchronous one."""
        with psycopg.connect(host="127.0.0.1", port=self.primary.port, user="postgres",
                             dbname="postgres", autocommit=True) as conn:
            row = conn.execute("SELECT sync_state FROM pg_stat_replication").fetchone()
        return row is not None and row[0] == "sync"

    def database_url(self, name: str) -> str:
        """Both hosts in one URL; libpq takes the one that accepts writes."""
        return (f"postgresql+psycopg://postgres@/{name}?host=127.0.0.1:{self.primary.port}"
                f"&host=127.0.0.1:{self.standby.port}&target_session_attrs=read-write")

    def promote(self) -> None:
        self.standby._run("pg_ctl", "-D", str(self.standby.data), "-w", "-t", "60", "promote")

    def remove(self) -> None:
        self.standby.remove()
        self.primary.remove()


@contextmanager
def replicated_postgres() -> Iterator[ReplicatedPostgres]:
    pair = ReplicatedPostgres()
    try:
        pair.start()
        yield pair
    finally:
        pair.remove()


class LoggedServer(CardsvcServer):
    """``cardsvc serve`` on a free port with its log in a given file."""

    def __init__(self, data_dir: Path, env: dict[str, str], log: Path) -> None:
        super().__init__(data_dir, env, log_path=log)
        self.log = log

    def logged_bugs(self) -> int:
        """How many unhandled errors (answered 500) the server logged."""
        return self.log.read_text(errors="replace").count("unhandled error")


class Authority:
    """What ``cardsvc init`` printed once."""

    def __init__(self, admin_token: str, root_fingerprint: str) -> None:
        self.admin_token = admin_token
        self.root_fingerprint = root_fingerprint

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}


def init_authority(data_dir: Path, env: dict[str, str]) -> Authority:
    printed = cli(data_dir, env, "init").stdout
    token = re.search(r"admin token:\s+(\S+)", printed)
    root = re.search(r"root fingerprint:\s+(\S+)", printed)
    assert token is not None and root is not None, printed
    return Authority(token.group(1), root.group(1))


def register_terminals(url: str, authority: Authority, count: int) -> list[str]:
    with httpx.Client(base_url=url, headers=authority.admin, timeout=30) as client:
        merchant = client.post("/v1/merchants", json={"name": "Fault Market"})
        assert merchant.status_code == 201, merchant.text
        tokens = []
        for i in range(count):
            terminal = client.post(f"/v1/merchants/{merchant.json()['merchant_id']}/terminals",
                                   json={"name": f"till {i}"})
            assert terminal.status_code == 201, terminal.text
            tokens.append(terminal.json()["token"])
        return tokens


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Running:
    """A load generator running in a thread until :meth:`stop`."""

    def __init__(self, load: LoadGenerator, workers: int) -> None:
        self.load = load
        self._stop = threading.Event()
        self.report: LoadReport | None = None
        self._thread = threading.Thread(target=self._run, args=(workers,), daemon=True)
        self._thread.start()

    def _run(self, workers: int) -> None:
        self.report = self.load.run(workers=workers, stop=self._stop)

    def stop(self) -> LoadReport:
        self._stop.set()
        self._thread.join(timeout=120)
        assert self.report is not None, "the load generator did not finish"
        return self.report
