"""A run shown the way ``wtflow run`` shows it, with the live progress region: for the terminal tests.

``python tests/integration/progress_run.py DIR [--progress auto|on|off] [--output MODE] [--lines N] [--extra N]
[--max-parallel N]``

The nodes wait for the file ``DIR/go`` (the test creates it once it has seen them run), then
``alpha``, ``beta`` and ``gamma`` print ``--lines`` numbered lines each at once, ``delta`` fails
with exit 3, ``epsilon`` runs after ``alpha``, and ``--extra`` more nodes print a line each.
Failures do not stop the run; it exits 1.

Until ``wtflow run`` has ``--progress``, this script composes the observers itself, as the CLI
will: :func:`wtflow.observers.shown_observers`, less ``SummaryTable`` when the region is shown
(its table replaces the region), plus ``ProgressDisplay`` last.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from wtflow import Command, Config, DatabaseConfig, Engine, Node, RunConfig, StorageConfig, Workflow
from wtflow.engine import secrets_masker
from wtflow.log import LogFormat, configure
from wtflow.observers import shown_observers
from wtflow.observers.console import SummaryTable
from wtflow.observers.progress import ProgressDisplay, wanted


class CurrentStderr:
    """``sys.stderr`` as it is at each write, for structlog: log lines then reach the region's stand-in.

    What ``wtflow.log.configure`` is to give structlog itself (the progress region's hand-over).
    """

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def workflow(directory: Path, lines: int, extra: int) -> Workflow:
    wait = f"while [ ! -e '{directory}/go' ]; do sleep 0.02; done"

    def printing(name: str) -> Node:
        return Node(name, Command(f"{wait}; seq -f '{name} line %03g' 1 {lines}"))

    nodes = [
        printing("alpha"),
        printing("beta"),
        printing("gamma"),
        Node("delta", Command(f"{wait}; echo 'delta fails' >&2; exit 3")),
        Node("epsilon", Command("echo 'epsilon line'"), needs=["alpha"]),
        *(Node(f"extra-{number:02d}", Command(f"{wait}; echo 'extra-{number:02d} line'")) for number in range(extra)),
    ]
    return Workflow("progress-demo", Node("all", children=nodes, parallel=True))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory", type=Path)
    parser.add_argument("--progress", choices=["auto", "on", "off"], default="auto")
    parser.add_argument("--output", default="prefixed")
    parser.add_argument("--lines", type=int, default=200)
    parser.add_argument("--extra", type=int, default=0)
    parser.add_argument("--max-parallel", type=int, default=None)
    args = parser.parse_args()

    log_format = configure(LogFormat.AUTO, stream=CurrentStderr())  # type: ignore[arg-type]
    flow = workflow(args.directory, args.lines, args.extra)
    config = Config(
        db=DatabaseConfig(None),
        storage=StorageConfig(args.directory / "artifacts"),
        run=RunConfig(ignore_failure=True, kill_grace=2.0, max_parallel=args.max_parallel),
    )
    masker = secrets_masker(flow, config)
    observers = shown_observers(
        args.output, json_logs=False, github=False, masker=masker, terminal=log_format is LogFormat.CONSOLE
    )
    if wanted({"auto": None, "on": True, "off": False}[args.progress]):
        observers = [observer for observer in observers if not isinstance(observer, SummaryTable)]
        observers.append(ProgressDisplay(critical_path=lambda _workflow, _finished: ["alpha", "epsilon"]))
    engine = Engine(flow, config, observers=observers, masker=masker)
    return asyncio.run(engine.run_async())


if __name__ == "__main__":
    sys.exit(main())
