"""The ``wtflow`` command's first lines, before the CLI and what it imports are loaded."""

from __future__ import annotations

import gc
import sys
from collections.abc import Sequence

_RUNNING = frozenset({"run", "action"})  # the commands that run a workflow (and record it)
_NOT_RUNNING = frozenset({"--dry-run", "--help", "-h"})


def will_run(args: Sequence[str]) -> bool:
    """Whether the command line looks like one that runs a workflow with a database (a guess, before parsing it).

    A wrong guess costs a spare database writer, stopped again once the configuration is known.
    """
    return bool(args) and args[0] in _RUNNING and _NOT_RUNNING.isdisjoint(args) and not _without_database(args)


def _without_database(args: Sequence[str]) -> bool:
    """Whether the arguments turn the database off (``--db-url ""``)."""
    for index, arg in enumerate(args):
        if arg == "--db-url":
            return index + 1 < len(args) and not args[index + 1].strip()
        if arg.startswith("--db-url="):
            return not arg.partition("=")[2].strip()
    return False


def main() -> None:
    """Start a spare database writer for a run, then the CLI (:func:`wtflow.cli.entry`).

    The writer's start, imports and connection then overlap with the runner's own imports
    (:mod:`wtflow.db.writer_process` describes the writer's life).
    """
    # Importing allocates much and frees little: the collector's passes over it find nothing.
    gc.disable()
    try:
        if will_run(sys.argv[1:]):
            from wtflow.db import writer_process

            writer_process.start_spare()
        from wtflow.cli import entry
    finally:
        gc.enable()
    entry()
