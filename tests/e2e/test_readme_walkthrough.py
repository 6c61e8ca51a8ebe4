"""The README's walk-through, run as written: the commands are read from README.md.

The demo starts exactly as ``make run`` starts it (the Makefile's recipe, a real process on
a free port); the values it prints beside ``<PLACEHOLDERS>`` fill the commands; the
authority's port, the servers' ports and ``/tmp/`` are moved to free ports and a temporary
directory. Each command runs in bash with ``.venv/bin`` on the PATH and must exit as its
comment says (``→ WORD, exit N``: the status, and every upper-case WORD in its output; no
arrow: exit 0). A command marked ``[another terminal]`` is started in the background, must
answer 200 at the URL its comment names, and must still be running at the end. A renamed
flag, a wrong exit status, a missing placeholder or a dead server fails the test.

Example of the README's syntax::

    verifier --cache /tmp/fmc-h check --as hospital --image /tmp/fmc-svc.png   # → ACCEPTED, exit 0
    verifier --cache /tmp/fmc-h serve --port 8765   # [another terminal] the counter: http://127.0.0.1:8765/
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kit.net import free_port
from kit.processes import BIN, clean_env, stop_process, wait_until_serving

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## A walk through, by hand"
AUTHORITY = "http://127.0.0.1:8000"  # where the README's commands find `make run`
RUN_RECIPE = "$(BIN)/python -m cardsvc.demo --data-dir $(DATA) --host $(HOST) --port $(PORT)"

_FENCE = re.compile(r"^( *)```\n(.*?)^\1```$", re.M | re.S)
_COMMENT = re.compile(r"\s+#\s")
_OUTCOME = re.compile(r"→(?P<said>.*?)\bexit (?P<status>\d+)")
_WORD = re.compile(r"\b[A-Z][A-Z_-]*[A-Z]\b")
_PLACEHOLDER = re.compile(r"<([A-Z_]+)>")
_PRINTED = re.compile(r"^ {2}<([A-Z_]+)> +(\S+)$", re.M)


@dataclass(frozen=True)
class Step:
    """One command of the walk-through and what the README says it does."""

    command: str  # for bash: continuation lines joined, the comment removed
    status: int = 0
    words: tuple[str, ...] = ()  # upper-case words its output must contain
    serves: str | None = None  # a server ([another terminal]): the URL that must answer


def parse_walkthrough(readme: str) -> list[Step]:
    """The commands of the walk-through section's fenced blocks, in order."""
    start = readme.index(SECTION)
    end = readme.find("\n## ", start + len(SECTION))
    section = readme[start:end if end != -1 else None]
    steps = []
    for indent, block in _FENCE.findall(section):
        lines = [line.removeprefix(indent) for line in block.splitlines()]
        joined = "\n".join(lines).replace("\\\n", " ")
        for line in joined.splitlines():
            if line.strip():
                steps.append(_step(line))
    return steps


def _step(line: str) -> Step:
    command, *rest = _COMMENT.split(line, maxsplit=1)
    comment = rest[0] if rest else ""
    if "[another terminal]" in comment:
        url = re.search(r"https?://\S+", comment)
        assert url is not None, f"a server's comment names its URL: {line}"
        return Step(command.strip(), serves=url.group(0))
    outcome = _OUTCOME.search(comment)
    if outcome is None:
        return Step(command.strip())
    return Step(command.strip(), int(outcome["status"]),
                tuple(_WORD.findall(outcome["said"])))


@pytest.mark.parametrize(("line", "expected"), [
    ("wallet-sim list", Step("wallet-sim list")),
    ("verifier check --image /tmp/a.png    # → ACCEPTED, exit 0",
     Step("verifier check --image /tmp/a.png", 0, ("ACCEPTED",))),
    ("verifier check    # the same code again → REPLAYED, exit 1",
     Step("verifier check", 1, ("REPLAYED",))),
    ("curl -d '{}'    # → 409 POSSIBLE_DUPLICATE, exit 22",
     Step("curl -d '{}'", 22, ("POSSIBLE_DUPLICATE",))),
    ("check    # → ACCEPTED OKONKWO-BELLO, exit 0: its new name",
     Step("check", 0, ("ACCEPTED", "OKONKWO-BELLO"))),
    ("verifier serve --port 8765    # [another terminal] the counter: http://127.0.0.1:8765/",
     Step("verifier serve --port 8765", serves="http://127.0.0.1:8765/")),
])
def test_a_walkthrough_line_reads_as_the_readme_explains(line: str, expected: Step) -> None:
    readme = f"{SECTION}\n\n   ```\n   {line}\n   ```\n\n## Next\n\n```\nmake test\n```\n"
    assert parse_walkthrough(readme) == [expected]


def test_continuation_lines_are_one_command() -> None:
    readme = f"{SECTION}\n```\ncurl -X POST \\\n    -d '{{}}'    # → CREATED, exit 0\n```\n"
    assert parse_walkthrough(readme) == [Step("curl -X POST      -d '{}'", 0, ("CREATED",))]


def test_the_readme_starts_with_make_run_and_make_test() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first_block = _FENCE.search(readme)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(2).splitlines()]
    assert [c for c in commands if c] == ["make run", "make test"]


# -- the walk-through against the demo ----------------------------------------------------------

class _Walk:
    """The demo, the servers started from the README, and the shell's environment."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.ports: dict[str, str] = {}
        self.values: dict[str, str] = {}
        self.servers: list[subprocess.Popen[bytes]] = []
        home = tmp / "home"
        home.mkdir()
        self.env = clean_env(PATH=f"{BIN}:/usr/local/bin:/usr/bin:/bin", HOME=str(home),
                             XDG_CACHE_HOME=str(home / ".cache"))

    def start_demo(self) -> None:
        """`make run`: the Makefile's recipe, with a free port and a temporary data dir."""
        makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
        recipe = re.search(r"^run: .*\n\t(.*)$", makefile, re.M)
        assert recipe is not None and recipe.group(1) == RUN_RECIPE, "make run changed"
        argv = [str(BIN / "python"), "-m", "cardsvc.demo", "--data-dir", str(self.tmp / "data"),
                "--host", "127.0.0.1", "--port", str(self.port)]
        printed = self.tmp / "make-run.out"
        self.servers.append(self._popen(argv, printed))
        wait_until_serving(f"http://127.0.0.1:{self.port}/v1/health", self.servers[0])
        self.values = dict(_PRINTED.findall(printed.read_text(encoding="utf-8")))
        assert "FINGERPRINT" in self.values, printed.read_text(encoding="utf-8")

    def fill(self, text: str) -> str:
        """Placeholders by the demo's values, the README's ports and /tmp/ by this test's."""
        def value(match: re.Match[str]) -> str:
            assert match[1] in self.values, f"make run does not print <{match[1]}>"
            return self.values[match[1]]

        text = _PLACEHOLDER.sub(value, text)
        text = text.replace(AUTHORITY, f"http://127.0.0.1:{self.port}")
        for port in re.findall(r"--port (\d+)", text):
            self.ports.setdefault(port, str(free_port()))
        for readme_port, port in self.ports.items():
            text = re.sub(rf"(--port |127\.0\.0\.1:){readme_port}\b", rf"\g<1>{port}", text)
        return text.replace("/tmp/", f"{self.tmp}/")

    def run(self, step: Step) -> None:
        command = self.fill(step.command)
        if step.serves is not None:
            log = self.tmp / f"server-{len(self.servers)}.out"
            server = self._popen(["bash", "-c", f"exec {command}"], log)
            self.servers.append(server)
            wait_until_serving(self.fill(step.serves), server)
            return
        if command.startswith("export "):
            # Run by bash, so $PWD and $PATH expand as in a terminal; keep what it exported.
            shell = self._bash(f"{command} && env -0")
            assert shell.returncode == 0, shell.stderr
            self.env = dict(entry.split("=", 1) for entry in shell.stdout.split("\0") if entry)
            return
        done = self._bash(command)
        said = done.stdout + done.stderr
        assert done.returncode == step.status, f"{step.command}\n{said}"
        for word in step.words:
            assert word in said, f"{step.command} did not say {word}\n{said}"

    def _bash(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-c", command], cwd=ROOT, env=self.env, text=True,
                              capture_output=True, timeout=120, check=False)

    def _popen(self, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:  # a file, not a pipe: a chatty server never blocks
            return subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=out,
                                    stderr=subprocess.STDOUT)

    def stop(self) -> list[int | None]:
        """Stop every server; what each had exited with before (None: still running)."""
        before = [server.poll() for server in self.servers]
        for server in reversed(self.servers):
            stop_process(server)
        return before


@pytest.fixture
def walk(tmp_path: Path) -> Iterator[_Walk]:
    walk = _Walk(tmp_path)
    try:
        yield walk
    finally:
        walk.stop()


@pytest.mark.e2e
@pytest.mark.timeout(900)  # some forty real processes, on a busy machine too
def test_the_readme_walkthrough_runs_as_written(walk: _Walk) -> None:
    steps = parse_walkthrough((ROOT / "README.md").read_text(encoding="utf-8"))
    assert steps[0].command == "make run", "the walk-through starts with make run"
    walk.start_demo()
    assert steps[0].serves is not None
    wait_until_serving(walk.fill(steps[0].serves), walk.servers[0])
    shown = 0.0
    for step in steps[1:]:
        if step.command.startswith("wallet-sim") and " show " in step.command:
            # The holder proof counts seconds: two codes in one second would be one code
            # (a person typing never shows two in one second).
            time.sleep(max(0.0, shown + 1.05 - time.monotonic()))
            shown = time.monotonic()
        walk.run(step)
    assert walk.stop() == [None] * len(walk.servers), "a server stopped during the walk"
