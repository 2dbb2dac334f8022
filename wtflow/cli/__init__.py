"""The ``wtflow`` command line: run workflow files, inspect them, and read run history.

:mod:`~wtflow.cli.options` holds what options configure and how errors are shown; each other
module holds a group of commands: :mod:`~wtflow.cli.run` (``run``, ``action``),
:mod:`~wtflow.cli.workflows` (``list``, ``validate``, ``graph``, ``schema``) and
:mod:`~wtflow.cli.history` (``runs``).
"""

from __future__ import annotations

import contextlib
import os
import sys

import click

from wtflow import __version__
from wtflow.cli import cache, history, report, run, workflows
from wtflow.cli.options import EXIT_CODES_HELP, App, WtflowGroup

__all__ = ["entry", "main"]


@click.group(
    cls=WtflowGroup,
    # Options without an explicit variable get one too: WTFLOW_<COMMAND>_<OPTION>, e.g. WTFLOW_RUNS_LIST_LIMIT.
    context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "WTFLOW", "show_default": True},
    # Click keeps lines after a \b line as they are; in a docstring it would have to be raw, and show.
    epilog="\b\nQuick start:\n"
    "  wtflow run                 run wtflow.yml of this directory\n"
    "  wtflow runs list           what ran, newest first\n\n" + EXIT_CODES_HELP,
)
@click.version_option(__version__, prog_name="wtflow")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Wtflow runs workflows of shell commands and Python functions."""
    ctx.ensure_object(App)


for command in (run.run, run.action, workflows.list_, workflows.validate, workflows.graph, workflows.schema):
    main.add_command(command)
main.add_command(history.runs, "runs")
main.add_command(cache.cache, "cache")
main.add_command(report.report, "report")


def entry() -> None:
    """The ``wtflow`` command: :func:`main`, then a quick exit.

    When a command returns, its output is written and its processes, files and database writer
    are closed; what is left is the interpreter freeing every module, which no one needs to wait
    for. Streams are flushed, then the process ends at once.
    """
    try:
        main(prog_name="wtflow")
        code = 0
    except SystemExit as exc:
        if isinstance(exc.code, str):
            click.echo(exc.code, err=True)
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    for stream in (sys.stdout, sys.stderr):  # click and the printers flush; this is the safety net
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more to say
            stream.flush()
    os._exit(code)
