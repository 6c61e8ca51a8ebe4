from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kit.net import serving
from wallet_testkit import PIN, FakeAuthority, build_app, portrait_png

from support import NOW
from wallet_sim import Card, KdfLimits, Wallet, create_wallet, provision

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def _running_authority() -> Iterator[FakeAuthority]:
    authority = FakeAuthority()
    with serving(build_app(authority)) as url:
        authority.url = url
        yield authority


@pytest.fixture
def authority(_running_authority: FakeAuthority) -> FakeAuthority:
    """The fake authority on 127.0.0.1, reset: clock at support.NOW, refresh offered."""
    _running_authority.reset()
    return _running_authority


@pytest.fixture
def wallet_path(tmp_path: Path) -> Path:
    return tmp_path / "phone.wallet"


@pytest.fixture
def provisioned(authority: FakeAuthority, wallet_path: Path) -> tuple[Wallet, Card]:
    """A wallet file (PIN 482913) holding one card provisioned at support.NOW."""
    code = authority.issue_code(portrait=portrait_png())
    wallet = create_wallet(wallet_path, PIN, limits=KdfLimits.minimum())
    card = provision(authority.url, code, now=NOW)
    wallet.put(card)
    return wallet, card


@pytest.fixture
def output_dir() -> Path:
    """test-output/wallet_sim (gitignored): screenshots and images worth looking at."""
    path = REPO / "test-output" / "wallet_sim"
    path.mkdir(parents=True, exist_ok=True)
    return path
