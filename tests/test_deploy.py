"""``deploy/``: the systemd unit and the Containerfile are checked as far as this machine
can (``systemd-analyze verify``; every path, setting and route they name exists), and
``cardsvc serve --workers N`` really serves from N processes and stops cleanly on SIGTERM."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
from kit.postgres import pg_create, pg_drop, pg_url, unique_name
from kit.processes import BIN, CardsvcServer, clean_env, run_cli

from cardsvc.settings import ServeSettings, Settings, variable

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
# Every variable the authority reads (docs/CONFIGURATION.md), `cardsvc serve`'s own included.
KNOWN = {variable(name) for name in [*Settings.model_fields, *ServeSettings.model_fields]}


def test_the_systemd_unit_verifies_cleanly(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze (Debian's systemd) is needed to check deploy/"
    unit = (DEPLOY / "cardsvc.service").read_text()
    # Point it at this machine's executable and user; every directive stays as shipped.
    local = (unit.replace("/opt/fmc/bin/cardsvc", str(BIN / "cardsvc"))
             .replace("User=cardsvc", "User=root").replace("Group=cardsvc", "Group=root"))
    path = tmp_path / "cardsvc-check.service"
    path.write_text(local)
    done = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True,
                          timeout=60, check=False)
    problems = [line for line in (done.stdout + done.stderr).splitlines()
                if "cardsvc-check.service" in line or "Unknown" in line]
    assert done.returncode == 0 and not problems, done.stdout + done.stderr


def test_the_unit_and_the_env_file_name_only_real_settings() -> None:
    env_example = (DEPLOY / "cardsvc.env.example").read_text()
    named = set(re.findall(r"^(CARDSVC_[A-Z_]+)=", env_example, re.M))
    assert named and named <= KNOWN, named - KNOWN
    unit = (DEPLOY / "cardsvc.service").read_text()
    assert "EnvironmentFile=/etc/cardsvc/cardsvc.env" in unit
    assert "ExecStart=/opt/fmc/bin/cardsvc serve --data-dir /var/lib/cardsvc" in unit


def test_the_containerfile_copies_what_exists_and_runs_as_a_user() -> None:
    text = (DEPLOY / "Containerfile").read_text()
    for source in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
        assert (REPO / source).exists(), source
    assert re.search(r"^USER cardsvc$", text, re.M), "the service never runs as root"
    assert all(":" in image and not image.endswith(":latest")
               for image in re.findall(r"^FROM (\S+)", text, re.M))
    env = set(re.findall(r"\b(CARDSVC_[A-Z_]+)=", text))
    assert env and env <= KNOWN, env - KNOWN
    assert "/v1/health" in text and 'ENTRYPOINT ["cardsvc"]' in text


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.postgres
@pytest.mark.e2e
def test_serve_with_workers_serves_from_several_processes_and_stops_on_sigterm(
        tmp_path: Path) -> None:
    name = unique_name("workers")
    pg_create(name)
    try:
        env = clean_env(CARDSVC_KEY_PASSPHRASE="workers-pass", CARDSVC_DATABASE_URL=pg_url(name),
                        CARDSVC_STATUS_LIST_SIZE="1024")
        data_dir = tmp_path / "data"
        init = run_cli("cardsvc", "init", "--data-dir", str(data_dir), env=env)
        assert init.returncode == 0, init.stderr
        token = re.search(r"admin token:\s+(\S+)", init.stdout)
        assert token is not None
        server = CardsvcServer(data_dir, env, tmp_path / "serve.log", args=("--workers", "2"))
        server.start()
        try:
            assert server.process is not None
            # uvicorn's supervisor with its two worker processes under it.
            assert len(_children(server.process.pid)) >= 2
            headers = {"Authorization": f"Bearer {token.group(1)}"}
            with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
                codes = set()
                for n in range(8):  # spread over the workers by the kernel
                    answer = client.post("/v1/persons", json={
                        "surname": f"WORKER{'ABCDEFGH'[n]}", "given_names": "TEST",
                        "nationality": "NGA", "birth_date": "1990-01-01", "sex": "M",
                        "passport": {"number": f"W{n:07d}", "country": "NGA",
                                     "expires": "2031-01-01"}, "confirm_new": True})
                    assert answer.status_code == 201, answer.text
                    codes.add(answer.json()["foreigner_code"])
                assert len(codes) == 8
        finally:
            assert server.process is not None
            server.process.send_signal(signal.SIGTERM)
            assert server.process.wait(timeout=30) == 0
    finally:
        pg_drop(name)
