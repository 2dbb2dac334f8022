"""Which command strings start their program directly: only those the shell would merely exec."""

from __future__ import annotations

import pytest

from wtflow.executors.shell import plain_argv


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        ("sleep 1", ("sleep", "1")),
        ("pytest -q tests/unit", ("pytest", "-q", "tests/unit")),
        ("  make   build  ", ("make", "build")),
        ("./ci/run.sh --fast", ("./ci/run.sh", "--fast")),
        ("dd if=/dev/zero of=out bs=1M count=1", ("dd", "if=/dev/zero", "of=out", "bs=1M", "count=1")),
        ("uv run ruff check src,tests", ("uv", "run", "ruff", "check", "src,tests")),
    ],
)
def test_a_program_and_plain_words_start_directly(command: str, argv: tuple[str, ...] | None) -> None:
    assert plain_argv(command) == argv


@pytest.mark.parametrize(
    "command",
    [
        "true",  # the shell's own commands behave differently from the programs of the same name
        "echo hi",
        "cd sub",
        "exit 3",
        ". ./env.sh",
        "if",
        "FOO=1 make",  # an assignment
        "echo $HOME",
        "ls *.py",
        "ls ~",
        "make && make install",
        "make; make install",
        "make | tee log",
        "make > log",
        "make 2>&1",
        "echo 'quoted'",
        'echo "quoted"',
        "echo `date`",
        "echo $(date)",
        "make # a comment",
        "make\nmake install",
        "make\tinstall",
        "a\\ b",
        "(make)",
        "! make",
        "sleep 1 &",
        "git log main@{0}",  # braces: some shells expand them
    ],
)
def test_anything_the_shell_would_interpret_goes_through_the_shell(command: str) -> None:
    assert plain_argv(command) is None
