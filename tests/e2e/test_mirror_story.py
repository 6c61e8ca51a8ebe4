"""P11.3: `cardsvc publish --out DIR` served by Debian's nginx, and `verifier sync
--mirror URL` (repeatable, tried in order) against such mirrors: a good one, one serving
garbage, a stale one (a rollback), an unreachable one. Real processes, real HTTP."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from kit.net import free_port
from kit.nginx import static_server
from kit.processes import clean_env, run_cli

PASSPHRASE = "mirror-e2e-pass"


@dataclass
class Published:
    data_dir: Path
    env: dict[str, str]
    fingerprint: str

    def publish(self, out: Path) -> list[str]:
        answer = run_cli("cardsvc", "publish", "--data-dir", str(self.data_dir),
                         "--out", str(out), env=self.env)
        assert answer.returncode == 0, answer.stderr
        return [line.removeprefix("wrote ").strip() for line in answer.stdout.splitlines()]


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Published:
    data_dir = tmp_path_factory.mktemp("authority") / "data"
    env = clean_env(CARDSVC_KEY_PASSPHRASE=PASSPHRASE)
    init = run_cli("cardsvc", "init", "--data-dir", str(data_dir), env=env)
    assert init.returncode == 0, init.stderr
    printed = dict(line.split(":", 1) for line in init.stdout.splitlines() if ":" in line)
    return Published(data_dir, env, printed["root fingerprint"].strip())


@pytest.fixture
def mirrors(tmp_path: Path) -> Iterator[list[tuple[Path, str]]]:
    """Three folders, each behind its own nginx."""
    folders = [tmp_path / f"mirror{i}" for i in range(3)]
    for folder in folders:
        folder.mkdir()
    with static_server(folders[0]) as a, static_server(folders[1]) as b, \
            static_server(folders[2]) as c:
        yield list(zip(folders, [a, b, c], strict=True))


def _sync(cache: Path, *args: str) -> tuple[int, dict[str, object]]:
    answer = run_cli("verifier", "--cache", str(cache), "sync", "--json", *args)
    return answer.returncode, json.loads(answer.stdout or "{}")


def test_publish_writes_the_urls_as_files(authority: Published, tmp_path: Path) -> None:
    out = tmp_path / "www"
    written = authority.publish(out)
    names = {Path(path).relative_to(out).as_posix() for path in written}
    assert {"v1/trust-list", "v1/timestamp", "v1/status-lists/index.json"} <= names
    index = json.loads((out / "v1/status-lists/index.json").read_text())
    for entry in index["status_lists"]:
        assert (out / "v1/status-lists" / entry["id"]).read_text().count(".") == 2
    assert not list(out.rglob(".*.tmp"))  # each file replaced atomically


def test_sync_from_an_nginx_mirror(authority: Published,
                                   mirrors: list[tuple[Path, str]], tmp_path: Path) -> None:
    folder, url = mirrors[0]
    authority.publish(folder)
    first = httpx.get(url + "/v1/trust-list")
    assert httpx.get(url + "/v1/trust-list",
                     headers={"If-None-Match": first.headers["etag"]}).status_code == 304
    code, report = _sync(tmp_path / "cache", "--mirror", url, "--root", authority.fingerprint)
    assert code == 0, report
    assert report["source"] == url and report["status_lists"]
    again_code, again = _sync(tmp_path / "cache", "--mirror", url)
    assert again_code == 0 and again["trust_list_updated"] is False


@pytest.mark.parametrize("garbage", [
    {"v1/trust-list": b"<html>gateway error</html>"},
    {"v1/trust-list": b"eyJhbGciOiJFZERTQSJ9.e30.AAAA"},  # a JWT shape, a bad signature
    {"v1/status-lists/index.json": b"{not json"},
    {"v1/timestamp": b"x.y.z"},
], ids=["html", "bad-signature", "bad-index", "bad-timestamp"])
def test_a_mirror_serving_garbage_is_passed_over(
    authority: Published, mirrors: list[tuple[Path, str]], tmp_path: Path,
    garbage: dict[str, bytes],
) -> None:
    (bad, bad_url), (good, good_url) = mirrors[0], mirrors[1]
    authority.publish(bad)
    authority.publish(good)
    for relative, body in garbage.items():
        (bad / relative).write_bytes(body)
    cache = tmp_path / "cache"
    code, report = _sync(cache, "--mirror", bad_url, "--mirror", good_url,
                         "--root", authority.fingerprint)
    assert code == 0, report
    assert report["source"] == good_url
    # Garbage alone: refused, and the cache held is kept as it was.
    held = {p.name: p.read_bytes() for p in cache.iterdir() if p.is_file()}
    code, report = _sync(cache, "--mirror", bad_url)
    assert code == 1 and report["ok"] is False
    assert {p.name: p.read_bytes() for p in cache.iterdir() if p.is_file()} == held


def test_a_stale_mirror_is_refused_and_the_next_one_used(
    authority: Published, mirrors: list[tuple[Path, str]], tmp_path: Path,
) -> None:
    (stale, stale_url), (fresh, fresh_url) = mirrors[0], mirrors[1]
    authority.publish(stale)
    rotated = run_cli("cardsvc", "keys", "rotate", "--data-dir", str(authority.data_dir),
                      env=authority.env)
    assert rotated.returncode == 0, rotated.stderr
    authority.publish(fresh)
    cache = tmp_path / "cache"
    code, report = _sync(cache, "--mirror", fresh_url, "--root", authority.fingerprint)
    assert code == 0, report
    version = report["trust_list_version"]
    unreachable = f"http://127.0.0.1:{free_port()}"
    code, report = _sync(cache, "--mirror", unreachable, "--mirror", stale_url,
                         "--mirror", fresh_url)
    assert code == 0 and report["source"] == fresh_url, report
    assert report["trust_list_version"] == version
    code, report = _sync(cache, "--mirror", stale_url)  # a rollback: refused, cache kept
    assert code == 1 and report["code"] == "TRUST_LIST_ROLLBACK", report
    shutil.rmtree(stale)
    code, report = _sync(cache, "--mirror", fresh_url)
    assert code == 0 and report["trust_list_version"] == version
