"""Runs :class:`~wtflow.model.Command` nodes as local processes."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path

from wtflow.executors.base import BaseExecutor, Job, Outcome, OutputSink
from wtflow.executors.descriptors import make_room
from wtflow.executors.supervise import run_process
from wtflow.model import Command, Workflow

# A command string the shell would only split at spaces: words of these characters, nothing
# it expands, quotes, redirects, pipes, chains or globs.
_PLAIN = re.compile(r"[A-Za-z0-9_./,:@%+=-]+(?: +[A-Za-z0-9_./,:@%+=-]+)*")
# Words the shell runs itself, not as a program (POSIX and dash), and its reserved words.
_SHELL_WORDS = frozenset(
    """
    . : [ alias bg break cd chdir command continue echo eval exec exit export false fc fg getopts hash jobs kill
    local printf pwd read readonly return set shift test times trap true type ulimit umask unalias unset wait
    case do done elif else esac fi for function if in select then until while
    """.split()  # noqa: SIM905 - a list of fifty words reads better as words
)


def plain_argv(command: str) -> tuple[str, ...] | None:
    """The program and arguments of ``command`` if ``sh -c`` would just run them, else ``None``.

    ``sh -c 'pytest -q tests'`` starts a shell that only execs ``pytest``: starting pytest
    directly gives it the same argv, environment and process, and saves an exec of the shell.
    GNU make does the same for its recipes.
    """
    text = command.strip(" ")
    if not _PLAIN.fullmatch(text):
        return None
    argv = tuple(text.split())
    if argv[0] in _SHELL_WORDS or "=" in argv[0]:  # a builtin, or a variable assignment
        return None
    return argv


def shell_env(env: Mapping[str, str], cwd: Path | None) -> dict[str, str]:
    """``env`` as the shell would pass it on: with ``PWD`` naming the working directory.

    A directory that cannot be named (this process's own was deleted) leaves ``env`` as it is:
    the program still runs, as it did under the shell. (``os.path`` on strings: this runs as
    each node starts, and does less work than pathlib.)
    """
    try:
        # Strings, as the docstring says; an absolute cwd needs no getcwd() (nor a runner's
        # directory that still exists).
        here = os.getcwd() if cwd is None else os.fspath(cwd)  # noqa: PTH109
        if not os.path.isabs(here):  # noqa: PTH117
            here = os.path.join(os.getcwd(), here)  # noqa: PTH109, PTH118
        pwd = env.get("PWD")
        if pwd is not None and _names(pwd, here):
            return dict(env)  # the shell keeps a PWD that is right (a path through a symlink, say)
        return {**env, "PWD": os.path.realpath(here, strict=True)}
    except OSError:  # ELOOP included: a symlink loop
        return dict(env)


def _names(pwd: str, directory: str) -> bool:
    try:
        return os.path.isabs(pwd) and os.path.samefile(pwd, directory)  # noqa: PTH117, PTH121 - strings
    except OSError:  # PWD names nothing (any more)
        return False


class CommandExecutor(BaseExecutor):
    """A string through ``/bin/sh -c`` (a plain ``program args`` directly); a list executed directly."""

    async def preflight(self, workflow: Workflow, max_parallel: int) -> None:
        """Make room in the descriptor table for every node that can run at once."""
        make_room(workflow, max_parallel)

    async def execute(self, job: Job, sink: OutputSink) -> Outcome:
        """Run the command of ``job``."""
        command = job.executable
        assert isinstance(command, Command)
        if isinstance(command.cmd, str) and (argv := plain_argv(command.cmd)) is not None:
            # Whatever the program cannot do alone (not found, a script without #!) is left to
            # the shell, which then reports or runs it as it always does.
            direct = dataclasses.replace(job, env=shell_env(job.env, job.cwd))
            return await run_process(argv, direct, sink, fallback=command.argv)
        return await run_process(command.argv, job, sink)
