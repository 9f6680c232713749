"""Every shell and Python block in README.md and docs/ runs as written, or says why it cannot.

Sybil extracts the blocks; each page's blocks run in order, as a reader would run them, in a fresh
folder laid out like the checkout (so `source scripts/env.sh`, `services/...` and the shipped configs
resolve, and everything a block writes stays in the folder). Shell blocks run in bash with
`set -eo pipefail`; what they export carries to the page's next block, as in one terminal. The
`PATH` starts without the project's virtual environment, as a new user's shell does: `livo` is found
only because the block sources `scripts/env.sh` as the docs say. Python blocks run in this process,
in one namespace per page, with the page's folder as working directory.

Markers, as HTML comments just above a block (invisible when the page is rendered):

- ``<!-- skip: next "REASON" -->`` (Sybil's skip): not runnable here, with the reason (GPU, cluster,
  hub download, a long run);
- ``<!-- in-tests: "TEXT" -> "SMALLER"; ... -->``: the block runs with these replacements, to keep
  the suite short (smaller sizes through the commands' own documented flags). Each TEXT must occur
  in the block, so a marker cannot go stale silently.

Code fences must name their language; ``bash`` and ``python`` blocks are examples, the others
(``text``, ``json``, ``yaml``) are shown, not run. The table of every block, run or not and why, is
printed at the end of the test session.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from unittest import SkipTest

import pytest
from sybil import Document, Example, Region, Sybil
from sybil.parsers.markdown import SkipParser
from sybil.parsers.markdown.codeblock import CodeBlockParser
from sybil.parsers.markdown.lexers import DirectiveInHTMLCommentLexer

REPO = Path(__file__).resolve().parents[1]
PAGES = ["README.md", *sorted(p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md"))]
EXAMPLE_LANGUAGES = {"bash", "python"}
SHOWN_LANGUAGES = {"text", "json", "yaml"}
# What the checkout offers a reader's working folder. The small folders of configs and scripts are
# copied: their configs name outputs relative to themselves (`../../runs/...`), which through a link
# would land in the checkout. The package sources and the environment `scripts/setup.sh` made are
# linked.
COPIED_ENTRIES = ["scripts", "services", "benchmarks", "docs"]
LINKED_ENTRIES = [".venv", "python", "tests", "pyproject.toml"]
SHELL_BLOCK_TIMEOUT_S = 420
_STATE_FILE = ".livo-docs-shell-state"
_NEXT_REPLACEMENTS = "__in_tests_replacements__"

# Filled as blocks run; printed by tests/conftest.py at the end of the session.
BLOCK_TABLE: list[tuple[str, int, str, str]] = []


def _reader_environment(folder: Path) -> dict[str, str]:
    """A new terminal's environment: the user's PATH without the project's venv, no test settings."""
    venv_bin = str(REPO / ".venv" / "bin")
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin]
    keep = ("HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TERM", "CARGO_HOME", "RUSTUP_HOME")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env["PATH"] = os.pathsep.join(path)
    # The one test setting a reader cannot notice: no model hub look-ups (scripts/env.sh sets it too).
    env["HF_HUB_OFFLINE"] = "1"
    return env


def _record(example: Example, status: str, detail: str) -> None:
    BLOCK_TABLE.append((Path(example.path).relative_to(REPO).as_posix(), example.line, status, detail))


def _first_line(source: str) -> str:
    for line in source.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            return line.strip()[:70]
    return source.strip().splitlines()[0][:70] if source.strip() else ""


def _apply_replacements(example: Example, source: str) -> str:
    replacements = example.namespace.pop(_NEXT_REPLACEMENTS, [])
    for old, new in replacements:
        if old not in source:
            raise AssertionError(f"in-tests marker: {old!r} does not occur in the next block")
        source = source.replace(old, new)
    return source


def evaluate_shell(example: Example) -> None:
    """Runs a bash block in the page's folder; exported variables carry to the next block."""
    source = _apply_replacements(example, str(example.parsed))
    folder = Path(example.namespace["__folder__"])
    state = folder / _STATE_FILE
    script = "\n".join(
        [
            "set -eo pipefail",
            f"if [ -f {shlex.quote(str(state))} ]; then source {shlex.quote(str(state))}; fi",
            source,
            f"export -p > {shlex.quote(str(state))}",
        ]
    )
    started = time.monotonic()
    # Its own process group, so that a block which times out is ended with everything it started
    # (a benchmark, a server), not only the shell.
    block = subprocess.Popen(
        ["bash", "-c", script],
        cwd=folder,
        env=_reader_environment(folder),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = block.communicate(timeout=SHELL_BLOCK_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        os.killpg(block.pid, signal.SIGKILL)
        block.communicate()
        _record(example, "FAILED", f"timed out after {SHELL_BLOCK_TIMEOUT_S} s")
        raise AssertionError(f"block timed out after {SHELL_BLOCK_TIMEOUT_S} s:\n{source}") from exc
    done = subprocess.CompletedProcess(block.args, block.returncode, output)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        _record(example, "FAILED", f"exit {done.returncode}")
        tail = "\n".join(done.stdout.splitlines()[-40:])
        raise AssertionError(f"block exited {done.returncode}:\n{source}\n--- output (last lines) ---\n{tail}")
    _record(example, "run", f"{seconds:.1f} s: {_first_line(source)}")


def evaluate_python(example: Example) -> None:
    """Runs a Python block in the page's namespace, with the page's folder as working directory."""
    source = _apply_replacements(example, str(example.parsed))
    started = time.monotonic()
    previous = Path.cwd()
    os.chdir(example.namespace["__folder__"])
    try:
        code = compile(source, example.path, "exec", dont_inherit=True)
        exec(code, example.namespace)
    except BaseException:
        _record(example, "FAILED", "raised")
        raise
    finally:
        os.chdir(previous)
    _record(example, "run", f"{time.monotonic() - started:.1f} s: {_first_line(source)}")


_REPLACEMENT = re.compile(r'\s*"(?P<old>[^"]+)"\s*->\s*"(?P<new>[^"]*)"\s*')


def _parse_replacements(arguments: str) -> list[tuple[str, str]]:
    pairs = []
    for part in arguments.strip().removesuffix("-->").split(";"):
        match = _REPLACEMENT.fullmatch(part)
        if match is None:
            raise ValueError(f'in-tests marker: expected "TEXT" -> "SMALLER", got {part.strip()!r}')
        pairs.append((match["old"], match["new"]))
    return pairs


def _evaluate_replacements(example: Example) -> None:
    example.namespace[_NEXT_REPLACEMENTS] = example.parsed


class InTestsParser:
    """``<!-- in-tests: "A" -> "B"; ... -->``: replacements for the next block when the suite runs it."""

    def __init__(self) -> None:
        self.lexer = DirectiveInHTMLCommentLexer("in-tests", arguments=".+?")

    def __call__(self, document: Document) -> Iterator[Region]:
        for lexed in self.lexer(document):
            pairs = _parse_replacements(lexed.lexemes["arguments"])
            yield Region(lexed.start, lexed.end, pairs, _evaluate_replacements)


class FenceCheckParser:
    """Every fence names a language, and only bash and python blocks are examples."""

    FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>```+|~~~+)(?P<info>[^\n`]*)$", re.MULTILINE)

    def __call__(self, document: Document) -> Iterator[Region]:
        inside = False
        for match in self.FENCE.finditer(document.text):
            if inside:
                inside = False
                continue
            inside = True
            language = match["info"].strip().split(" ")[0]
            if language not in EXAMPLE_LANGUAGES | SHOWN_LANGUAGES:
                yield Region(match.start(), match.end(), language, _unlabelled_fence)


def _unlabelled_fence(example: Example) -> None:
    raise AssertionError(
        f"code fence with language {example.parsed!r}: name one of "
        f"{sorted(EXAMPLE_LANGUAGES | SHOWN_LANGUAGES)} (bash and python blocks are run)"
    )


SYBIL = Sybil(
    parsers=[
        FenceCheckParser(),
        SkipParser(),
        InTestsParser(),
        CodeBlockParser(language="bash", evaluator=evaluate_shell),
        CodeBlockParser(language="python", evaluator=evaluate_python),
    ],
)


def _page_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "reader"
    folder.mkdir()
    for entry in COPIED_ENTRIES:
        shutil.copytree(REPO / entry, folder / entry, ignore=shutil.ignore_patterns("__pycache__"))
    for entry in LINKED_ENTRIES:
        if (REPO / entry).exists():
            (folder / entry).symlink_to(REPO / entry)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_the_page_s_examples_run_in_order(page: str, tmp_path: Path) -> None:
    document = SYBIL.parse(REPO / page)
    folder = _page_folder(tmp_path)
    document.namespace["__folder__"] = str(folder)
    for example in document.examples():
        try:
            example.evaluate()
        except SkipTest as skipped:
            if example.region.evaluator in (evaluate_shell, evaluate_python):
                _record(example, "not run", str(skipped))
            # Replacements meant for a skipped block must not leak to the one after it.
            example.namespace.pop(_NEXT_REPLACEMENTS, None)


def test_every_skipped_block_gives_its_reason() -> None:
    bare = []
    for page in PAGES:
        text = (REPO / page).read_text(encoding="utf-8")
        for number, line in enumerate(text.splitlines(), start=1):
            if re.match(r"\s*<!--\s*skip:\s*next\s*-->", line):
                bare.append(f"{page}:{number}")
    assert not bare, f"skip markers without a reason: {bare}"


def format_block_table(rows: list[tuple[str, int, str, str]]) -> str:
    """The Markdown table printed at the end of the session."""
    lines = ["| page | line | status | time, command or reason |", "| --- | --- | --- | --- |"]
    for page, line, status, detail in sorted(rows):
        lines.append(f"| {page} | {line} | {status} | {detail.replace('|', '/')} |")
    return textwrap.dedent("\n".join(lines))
