"""P11.3: a served process moves what it holds from start-up on out of the cyclic
collector's sight (a full collection walked all of it and paused the event loop); garbage
made later is still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
from fastapi import FastAPI

import cardsvc.api


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the test session collects as before


class _Node:
    def __init__(self) -> None:
        self.peer: _Node | None = None


def test_serving_freezes_the_start_up_heap(unfrozen: None,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    built = FastAPI()
    monkeypatch.setattr(cardsvc.api, "get_settings", lambda: cardsvc.api.Settings())
    monkeypatch.setattr(cardsvc.api, "configure_logging", lambda _format: None)
    monkeypatch.setattr(cardsvc.api, "create_app", lambda _settings: built)
    assert gc.get_freeze_count() == 0
    assert cardsvc.api.app_from_environment() is built
    assert gc.get_freeze_count() > 0  # the app and everything alive before it


def test_garbage_made_after_start_up_is_still_collected(unfrozen: None) -> None:
    cardsvc.api.settle_the_heap()
    first, second = _Node(), _Node()
    first.peer, second.peer = second, first  # a cycle: only the collector frees it
    gone = weakref.ref(first)
    del first, second
    gc.collect()
    assert gone() is None
