"""Printing nodes' output on the console, in the ``--output`` modes.

- ``interleaved``: raw lines as they come (stdout to stdout, stderr to stderr);
- ``prefixed``: each line as ``[node] line``;
- ``grouped``: each node's output as one block when the node ends (read back from its
  artifacts, so nothing is held in memory);
- ``quiet``: nothing.
"""

from __future__ import annotations

import asyncio
import queue
import shutil
import sys
import threading
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO, TextIO

import click

from wtflow.events import BaseObserver, Event, NodeFinished, NodeOutput, Observer
from wtflow.model import STDERR, STDOUT


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
    """Each node's output as one block when it ends, copied from its artifact files by a thread."""

    def __init__(self, *, github: bool = False) -> None:
        self._queue: queue.SimpleQueue[NodeFinished | str | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._github = github  # GitHub Actions folds ::group:: blocks

    async def aopen(self) -> None:
        """Start the copying thread."""
        self._thread = threading.Thread(target=self._copy_blocks, name="wtflow-grouped-output", daemon=True)
        self._thread.start()

    def notify(self, event: Event) -> None:
        """Queue a finished node's output for printing."""
        if isinstance(event, NodeFinished) and event.artifacts:
            self._queue.put(event)

    def annotate(self, line: str) -> None:
        """Print ``line`` between blocks, never inside one (GitHub's ``::error`` annotations)."""
        self._queue.put(line)

    async def aclose(self) -> None:
        """Print what is queued, then stop."""
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
                    _copy_file(paths[name], sys.stdout if self._github else _console(name))
            if self._github:
                write_bytes(sys.stdout, b"::endgroup::\n")


def _copy_file(path: Path, stream: TextIO) -> None:
    stream.flush()
    target: BinaryIO | None = getattr(stream, "buffer", None)
    try:
        with open(path, "rb") as source:
            if target is None:
                stream.write(source.read().decode("utf-8", "replace"))
            else:
                shutil.copyfileobj(source, target, 1 << 20)
                target.flush()
    except OSError as exc:
        stream.write(f"(output unavailable: {exc})\n")


def console_observer(mode: OutputMode) -> Observer | None:
    """The printer for ``mode``; ``None`` when nothing is printed."""
    printers: dict[OutputMode, type[BaseObserver]] = {
        OutputMode.INTERLEAVED: ConsolePrinter,
        OutputMode.PREFIXED: PrefixedPrinter,
        OutputMode.GROUPED: GroupedPrinter,
    }
    printer = printers.get(mode)
    return printer() if printer is not None else None
