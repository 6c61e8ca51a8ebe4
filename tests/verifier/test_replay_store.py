"""The SQLite replay store: once per window, across instances and processes."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest

from schemas import Purpose
from support import NOW, World, present
from verifier import POLICIES, ResultCode, verify_presentation
from verifier.replay_store import ReplayStoreError, SqliteReplayCache


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "replay.sqlite"


def test_a_key_is_accepted_once_until_it_expires(db: Path) -> None:
    with SqliteReplayCache(db) as replay:
        assert replay.check_and_add(b"k", expires_at=NOW + 70, now=NOW)
        assert not replay.check_and_add(b"k", expires_at=NOW + 70, now=NOW + 1)
        assert not replay.check_and_add(b"k", expires_at=NOW + 140, now=NOW + 69)
        assert replay.check_and_add(b"other", expires_at=NOW + 70, now=NOW + 1)
        # Past its window the proof is stale anyway; the key may be taken again.
        assert replay.check_and_add(b"k", expires_at=NOW + 140, now=NOW + 70)
        assert not replay.check_and_add(b"k", expires_at=NOW + 140, now=NOW + 71)


def test_it_lasts_across_runs(db: Path) -> None:
    with SqliteReplayCache(db) as first:
        assert first.check_and_add(b"k", expires_at=NOW + 70, now=NOW)
    with SqliteReplayCache(db) as second:
        assert not second.check_and_add(b"k", expires_at=NOW + 70, now=NOW + 5)


def test_expired_entries_are_dropped(db: Path) -> None:
    with SqliteReplayCache(db) as replay:
        for i in range(50):
            replay.check_and_add(i.to_bytes(4, "big"), expires_at=NOW + 10, now=NOW)
        assert len(replay) == 50
        replay.check_and_add(b"late", expires_at=NOW + 100, now=NOW + 40)
        assert len(replay) == 1


def test_verify_presentation_reports_a_replay_from_an_earlier_run(db: Path) -> None:
    state = World().state()
    text = present(Purpose.SVC)
    codes = []
    for _ in range(2):
        with SqliteReplayCache(db) as replay:
            codes.append(verify_presentation(text, state=state, policy=POLICIES["hospital"],
                                             now=NOW, replay_cache=replay).code)
    assert codes == [ResultCode.OK, ResultCode.REPLAYED]


def _race(path: str, keys: int, start: threading.Barrier | None, out: list[int]) -> None:
    replay = SqliteReplayCache(Path(path))
    if start is not None:
        start.wait()
    out.extend(i for i in range(keys)
               if replay.check_and_add(i.to_bytes(4, "big"), expires_at=NOW + 70, now=NOW))
    replay.close()


def _race_process(path: str, keys: int, queue: multiprocessing.Queue[list[int]]) -> None:
    won: list[int] = []
    _race(path, keys, None, won)
    queue.put(won)


def test_two_processes_never_both_accept_a_code(db: Path) -> None:
    SqliteReplayCache(db).close()  # create the schema before the race
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[list[int]] = context.Queue()
    workers = [context.Process(target=_race_process, args=(str(db), 300, queue))
               for _ in range(3)]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    won = [key for result in results for key in result]
    assert sorted(won) == list(range(300))  # each key accepted exactly once overall


def test_threads_sharing_one_store_never_both_accept_a_code(db: Path) -> None:
    start = threading.Barrier(4, timeout=60)  # a thread that dies breaks it: no hang
    results: list[list[int]] = [[] for _ in range(4)]
    threads = [threading.Thread(target=_race, args=(str(db), 200, start, results[i]))
               for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(k for result in results for k in result) == list(range(200))


def test_many_first_opens_at_the_same_moment_all_succeed(tmp_path: Path) -> None:
    # A new file turning to WAL is locked in a way SQLite's busy handler does not wait
    # for; this raced "database is locked" before the open retried.
    from verifier.terminal.queue import OfflineQueue

    for trial in range(25):
        for opener in (SqliteReplayCache, OfflineQueue):
            path = tmp_path / f"{trial}-{opener.__name__}" / "store.sqlite"
            start = threading.Barrier(6, timeout=60)
            failures: list[BaseException] = []

            def open_once(opener: type = opener, path: Path = path,
                          start: threading.Barrier = start,
                          failures: list[BaseException] = failures) -> None:
                start.wait()
                try:
                    opener(path).close()
                except Exception as error:  # any failure fails the test
                    failures.append(error)

            threads = [threading.Thread(target=open_once) for _ in range(6)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
            assert failures == [], (opener.__name__, failures)


def test_an_unusable_path_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ReplayStoreError) as error:
        SqliteReplayCache(blocker / "replay.sqlite")
    assert error.value.code == "REPLAY_STORE"


def test_a_broken_store_fails_closed(db: Path) -> None:
    replay = SqliteReplayCache(db)
    replay.close()
    with pytest.raises(ReplayStoreError):
        replay.check_and_add(b"k", expires_at=NOW + 70, now=NOW)
