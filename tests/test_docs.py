"""The docs stay true: every ``DESIGN.md section N`` a doc or docstring cites exists in
docs/DESIGN.md, docs/CONFIGURATION.md is what the settings classes generate, and every
environment variable a command line reads is declared in its settings class."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import typer

from cardsvc.cli import app as cardsvc_app
from cardsvc.settings import ServeSettings, Settings
from tools import config_doc
from verifier.checkpoint import DEFAULT_STATUS_GRACE, DEFAULT_TRUST_GRACE
from verifier.cli import app as verifier_app
from verifier.settings import VerifierSettings
from wallet_sim.cli import make_app as make_wallet_app
from wallet_sim.settings import WalletSettings

REPO = Path(__file__).resolve().parents[1]
DESIGN = REPO / "docs" / "DESIGN.md"
SCANNED = ("schemas", "keys", "verifier", "wallet_sim", "cardsvc", "tests", "bench", "docs",
           "tools", "deploy", "README.md")
# "DESIGN.md section 7", "DESIGN.md sections 6 to 8", "DESIGN.md sections 4, 5 and 8",
# "DESIGN.md §3"
_CITATION = re.compile(r"DESIGN\.md,?\s+(?:sections?|§)\s*(\d+(?:(?:\s*(?:,|and|to|-|–)\s*)\d+)*)")


def _sections() -> set[int]:
    return {int(n) for n in re.findall(r"^## (\d+)\. ", DESIGN.read_text("utf-8"), re.M)}


def _files() -> Iterator[Path]:
    for name in SCANNED:
        path = REPO / name
        if path.is_file():
            yield path
        else:
            yield from (p for p in sorted(path.rglob("*"))
                        if p.suffix in {".py", ".md"} and ".venv" not in p.parts)


def _cited(text: str) -> set[int]:
    cited: set[int] = set()
    for match in _CITATION.finditer(text):
        numbers = [int(n) for n in re.findall(r"\d+", match.group(1))]
        if re.search(r"to|-|–", match.group(1)) and len(numbers) == 2:
            numbers = list(range(numbers[0], numbers[1] + 1))
        cited.update(numbers)
    return cited


@pytest.mark.parametrize(("text", "expected"), [
    ("(DESIGN.md section 7)", {7}),
    ("DESIGN.md sections 4, 5 and 8", {4, 5, 8}),
    ("DESIGN.md sections 6 to 8", {6, 7, 8}),
    ("DESIGN.md §3", {3}),
    ("docs/DESIGN.md section 12", {12}),
    ("the design", set()),
])
def test_citations_are_parsed(text: str, expected: set[int]) -> None:
    assert _cited(text) == expected


def test_every_cited_design_section_exists() -> None:
    sections = _sections()
    assert set(range(1, 11)) <= sections  # the starting design's numbering is kept
    missing = [f"{path.relative_to(REPO)}: section {n}"
               for path in _files() if path != Path(__file__)  # its examples cite section 12
               for n in sorted(_cited(path.read_text("utf-8"))) if n not in sections]
    assert not missing


def test_no_reference_points_outside_the_repository() -> None:
    stale = [str(path.relative_to(REPO)) for path in _files()
             if re.search(r"shared/DESIGN\.md|\.\./shared/", path.read_text("utf-8"))
             and path != Path(__file__)]
    assert not stale


def test_configuration_doc_is_generated_from_the_settings() -> None:
    assert config_doc.DOC_PATH.read_text("utf-8") == config_doc.render(), (
        "docs/CONFIGURATION.md is out of date: run python -m tools.config_doc")


def _options(command: click.Command) -> Iterator[click.Parameter]:
    yield from command.params
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            yield from _options(sub)


def _declared(*classes: type) -> dict[str, object]:
    return {config_doc._variable(cls, field): info.default
            for cls in classes for field, info in cls.model_fields.items()}


@pytest.mark.parametrize(("name", "app", "classes"), [
    ("cardsvc", cardsvc_app, (Settings, ServeSettings)),
    ("verifier", verifier_app, (VerifierSettings,)),
    ("wallet-sim", make_wallet_app(), (WalletSettings,)),
])
def test_every_variable_a_command_reads_is_declared(
    name: str, app: typer.Typer, classes: tuple[type, ...]
) -> None:
    declared = _declared(*classes)
    read = {param.envvar: param.default for param in _options(typer.main.get_command(app))
            if isinstance(param.envvar, str)}
    assert read, name
    assert set(read) <= set(declared), name
    for variable, default in read.items():
        if default is not None and declared[variable] is not None:
            assert str(default) == str(declared[variable]), variable


def test_the_verifier_grace_defaults_are_the_checkpoint_defaults() -> None:
    settings = VerifierSettings()
    assert (settings.status_grace, settings.trust_grace) == (
        str(DEFAULT_STATUS_GRACE), str(DEFAULT_TRUST_GRACE))


def test_an_empty_xdg_cache_home_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    assert VerifierSettings().cache_base() == Path.home() / ".cache"
    monkeypatch.setenv("XDG_CACHE_HOME", "/var/cache/x")
    assert VerifierSettings().cache_base() == Path("/var/cache/x")
