"""Private PostgreSQL clusters for fault tests and benchmarks: one made with ``initdb`` in a
temp dir on its own port (never the machine's shared server), and a primary with a
synchronous hot standby made from it with ``pg_basebackup -R``. A cluster can be stopped,
started, SIGKILLed like a dying machine, and a standby promoted.

Example::

    pair = ReplicatedPostgres()
    pair.start()
    url = pair.database_url("cardsvc")   # both hosts, target_session_attrs=read-write
    pair.primary.kill()
    pair.promote()
    pair.remove()
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

__all__ = ["PrivatePostgres", "ReplicatedPostgres"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda path: int(path.parts[-3]) if path.parts[-3].isdigit() else 0)
    if not found:
        raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) are required: "
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
        self.port = _free_port()
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
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr}{done.stdout}"
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
            with contextlib.suppress(RuntimeError):
                self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def _parent_pid(proc_entry: Path) -> int | None:
    try:
        stat = (proc_entry / "stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


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
        deadline = time.monotonic() + 30
        while not self.standby_streaming():
            if time.monotonic() > deadline:
                raise RuntimeError("the standby did not start streaming")
            time.sleep(0.05)

    def standby_streaming(self) -> bool:
        """The primary sees the standby as its synchronous one."""
        with psycopg.connect(host="127.0.0.1", port=self.primary.port, user="postgres",
                             dbname="postgres", autocommit=True) as conn:
            row = conn.execute("SELECT sync_state FROM pg_stat_replication").fetchone()
        return row is not None and row[0] == "sync"

    def database_url(self, name: str) -> str:
        """Both hosts in libpq's multi-host form (as an operator writes it; cardsvc turns it
        into SQLAlchemy's); libpq takes the one that accepts writes."""
        return (f"postgresql://postgres@127.0.0.1:{self.primary.port},"
                f"127.0.0.1:{self.standby.port}/{name}?target_session_attrs=read-write")

    def promote(self) -> None:
        self.standby._run("pg_ctl", "-D", str(self.standby.data), "-w", "-t", "60", "promote")

    def remove(self) -> None:
        self.standby.remove()
        self.primary.remove()
