"""Printing nodes' output on the console, in the ``--output`` modes.

- ``interleaved``: raw lines as they come (stdout to stdout, stderr to stderr);
- ``prefixed``: each line as ``[node] line``;
- ``grouped``: each node's output as one block when the node ends (read back from its
  artifacts, so nothing is held in memory, and masked again: stored output may be raw); under
  GitHub Actions the blocks are ``::group::`` folds, and a heartbeat line names the nodes still
  running every :data:`HEARTBEAT` seconds with their last output line, so a long node is seen
  before it ends without breaking the folds;
- ``quiet``: nothing.
"""

from __future__ import annotations

import asyncio
import queue
import sys
import threading
import time
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO, TextIO

import click

from wtflow.events import (
    BaseObserver,
    Event,
    NodeFinished,
    NodeOutput,
    NodeStarted,
    Observer,
    RunFinished,
    RunStarted,
)
from wtflow.masking import Masker
from wtflow.model import STDERR, STDOUT

HEARTBEAT = 30.0  # seconds between the lines that name the nodes still running (grouped output on GitHub)
HEARTBEAT_NODES = 10  # nodes named in one heartbeat, the longest-running first; the rest are counted


class OutputMode(StrEnum):
    """How nodes' output reaches the console."""

    INTERLEAVED = "interleaved"
    PREFIXED = "prefixed"
    GROUPED = "grouped"
    QUIET = "quiet"


def write_bytes(stream: TextIO, data: bytes) -> None:
    """Write ``data`` to a text stream's binary buffer (or as text when it has none) and flush."""
    buffer = getattr(stream, "buffer", None)
    if buffer is not None:
        stream.flush()
        buffer.write(data)
        buffer.flush()
    else:
        stream.write(data.decode("utf-8", "replace"))
        stream.flush()


def _console(stream_name: str) -> TextIO:
    return sys.stderr if stream_name == STDERR else sys.stdout


class ConsolePrinter(BaseObserver):
    """Raw, interleaved output: every line as it comes, nothing of wtflow's own."""

    def notify(self, event: Event) -> None:
        """Print node output; ignore everything else."""
        if isinstance(event, NodeOutput):
            write_bytes(_console(event.stream), event.data)


_COLOURS = ("cyan", "magenta", "yellow", "green", "blue", "bright_cyan", "bright_magenta", "bright_yellow")


class PrefixedPrinter(BaseObserver):
    """Each line as ``[node] line``, the prefix coloured on a terminal."""

    def __init__(self) -> None:
        self._prefixes: dict[tuple[str, str], bytes] = {}

    def _prefix(self, node: str, stream: str) -> bytes:
        key = (node, stream)
        prefix = self._prefixes.get(key)
        if prefix is None:
            text = f"[{node}] "
            if _console(stream).isatty():
                text = click.style(text, fg=_COLOURS[len(self._prefixes) % len(_COLOURS)])
            prefix = self._prefixes[key] = text.encode()
        return prefix

    def notify(self, event: Event) -> None:
        """Print each line of node output behind its node's name."""
        if not isinstance(event, NodeOutput):
            return
        prefix = self._prefix(event.node, event.stream)
        data = event.data
        if not data.endswith(b"\n"):
            data += b"\n"  # a piece without its newline still ends its own line here
        # One C-level replace instead of a Python loop over lines: output can be millions of lines.
        write_bytes(_console(event.stream), prefix + data[:-1].replace(b"\n", b"\n" + prefix) + b"\n")


class GroupedPrinter(BaseObserver):
    """Each node's output as one block when it ends, copied from its artifact files by a thread.

    ``masker`` masks what is copied (stored output is raw with ``--no-mask-artifacts``). With
    ``github``, blocks are ``::group::`` folds and a heartbeat names the nodes still running.
    """

    def __init__(self, *, github: bool = False, masker: Masker | None = None, heartbeat: float = HEARTBEAT) -> None:
        self._queue: queue.SimpleQueue[NodeFinished | str | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._github = github  # GitHub Actions folds ::group:: blocks
        self._masker = masker or Masker()
        self._heartbeat = heartbeat
        self._beating: asyncio.Task[None] | None = None
        self._runs: set[str] = set()  # nodes with an executable: the ones whose output is waited for
        self._running: dict[str, tuple[float, str]] = {}  # node -> (started, monotonic; its last output line)

    async def aopen(self) -> None:
        """Start the copying thread (and, on GitHub, the heartbeat)."""
        self._thread = threading.Thread(target=self._copy_blocks, name="wtflow-grouped-output", daemon=True)
        self._thread.start()
        if self._github:
            self._beating = asyncio.create_task(self._beat_every())

    def notify(self, event: Event) -> None:
        """Queue a finished node's output for printing; follow what runs for the heartbeat."""
        if isinstance(event, NodeFinished):
            self._running.pop(event.node, None)
            if event.artifacts:
                self._queue.put(event)
        elif isinstance(event, NodeOutput):
            if event.node in self._running:
                last = event.data.rstrip(b"\n").rsplit(b"\n", 1)[-1].decode("utf-8", "replace").strip()
                if last:
                    self._running[event.node] = (self._running[event.node][0], last)
        elif isinstance(event, NodeStarted):
            if event.node in self._runs and event.node not in self._running:
                self._running[event.node] = (time.monotonic(), "")
        elif isinstance(event, RunStarted):
            self._runs = {name for name, node in event.workflow.nodes.items() if node.executable is not None}

    def annotate(self, line: str) -> None:
        """Print ``line`` between blocks, never inside one (GitHub's ``::error`` annotations)."""
        self._queue.put(line)

    def beat(self) -> None:
        """Print, between blocks, a line for each node still running: how long, and its last output line."""
        now = time.monotonic()
        running = sorted(self._running.items(), key=lambda item: item[1][0])
        for name, (started, last) in running[:HEARTBEAT_NODES]:
            said = f"; last output: {last[:200]}" if last else ""
            self._queue.put(f"wtflow: {name} still running after {_elapsed(now - started)}{said}\n")
        if len(running) > HEARTBEAT_NODES:
            self._queue.put(f"wtflow: ... and {len(running) - HEARTBEAT_NODES} more nodes running\n")

    async def _beat_every(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat)
            self.beat()

    async def aclose(self) -> None:
        """Print what is queued, then stop."""
        if self._beating is not None:
            self._beating.cancel()
            await asyncio.gather(self._beating, return_exceptions=True)
            self._beating = None
        if self._thread is not None:
            self._queue.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None

    def _copy_blocks(self) -> None:
        while (event := self._queue.get()) is not None:
            if isinstance(event, str):
                write_bytes(sys.stdout, event.encode())
                continue
            paths = {info.name: info.path for info in event.artifacts if info.size}
            if not paths.get(STDOUT) and not paths.get(STDERR):
                continue
            title = f"{event.node} ({event.status})"
            header = f"::group::{title}\n" if self._github else f"── {title} ──\n"
            write_bytes(sys.stdout, header.encode())
            for name in (STDOUT, STDERR):
                if name in paths:
                    _copy_file(paths[name], sys.stdout if self._github else _console(name), self._masker)
            if self._github:
                write_bytes(sys.stdout, b"::endgroup::\n")


class SummaryTable(BaseObserver):
    """At the end of a run on a terminal: a table of the nodes that ran something, failed ones first."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._runs: list[str] = []
        self._finished: dict[str, NodeFinished] = {}

    def notify(self, event: Event) -> None:
        """Keep each node's end; print the table when the run ends."""
        if isinstance(event, NodeFinished):
            self._finished[event.node] = event
        elif isinstance(event, RunStarted):
            self._runs = [name for name, node in event.workflow.nodes.items() if node.executable is not None]
        elif isinstance(event, RunFinished):
            self.print_table()

    def print_table(self) -> None:
        """Print the table: node, status, duration, exit code."""
        finished = [self._finished[name] for name in self._runs if name in self._finished]
        finished.sort(key=lambda event: not event.status.is_failure)  # stable: tree order within each part
        rows = [["NODE", "STATUS", "DURATION", "EXIT"]] + [
            [
                event.node,
                str(event.status) + (f" (attempt {event.attempt})" if event.attempt > 1 else ""),
                "-" if event.duration is None else f"{event.duration:.2f}s",
                "-" if event.exit_code is None else str(event.exit_code),
            ]
            for event in finished
        ]
        widths = [max(len(row[column]) for row in rows) for column in range(4)]
        text = "".join(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n"
            for row in rows
        )
        stream = self._stream or sys.stderr
        stream.write(text)
        stream.flush()


def _elapsed(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"


def _copy_file(path: Path, stream: TextIO, masker: Masker) -> None:
    """Copy a stored stream to the console a block of whole lines at a time, masked."""
    stream.flush()
    target: BinaryIO | None = getattr(stream, "buffer", None)
    try:
        with open(path, "rb") as source:
            held = b""
            while block := source.read(1 << 20):
                block, held = held + block, b""
                end = block.rfind(b"\n") + 1
                if end and len(block) - end < 1 << 16:  # hold a partial line back, unless it is very long
                    block, held = block[:end], block[end:]
                _write(stream, target, masker.bytes(block))
            if held:
                _write(stream, target, masker.bytes(held))
            if target is not None:
                target.flush()
    except OSError as exc:
        stream.write(f"(output unavailable: {exc})\n")


def _write(stream: TextIO, target: BinaryIO | None, data: bytes) -> None:
    if target is None:
        stream.write(data.decode("utf-8", "replace"))
    else:
        target.write(data)


def console_observer(mode: OutputMode, masker: Masker | None = None) -> Observer | None:
    """The printer for ``mode``; ``None`` when nothing is printed. ``masker`` masks what grouped output copies."""
    if mode is OutputMode.GROUPED:
        return GroupedPrinter(masker=masker)
    printers: dict[OutputMode, type[BaseObserver]] = {
        OutputMode.INTERLEAVED: ConsolePrinter,
        OutputMode.PREFIXED: PrefixedPrinter,
    }
    printer = printers.get(mode)
    return printer() if printer is not None else None
