"""A run's progress on a terminal: a live region at the bottom of the screen, then a table of its nodes.

While the run goes on, the region shows each running node with how long it has run (the first
few; the rest are counted), how many nodes succeeded, failed, came from the cache, were skipped,
run and wait, a bar and the run's time. It is redrawn :data:`REFRESH_PER_SECOND` times a second
and after each piece of output. Node output and log lines scroll above it: while the region is
shown, ``sys.stdout`` and ``sys.stderr`` are stand-ins that hold text to whole lines and print
each batch of lines above the region, in one write, with its bytes unchanged. When the run ends
the region gives way to a table of the nodes (failed ones first) and the run's critical path.

rich draws it, and is imported only when a region is shown: its import costs more than the rest
of a short run's start.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO, cast

from wtflow.events import BaseObserver, Event, NodeFinished, NodeStarted, NodeStatus, RunFinished, RunStarted

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
    from rich.live import Live
    from rich.segment import Segment
    from rich.text import Text

    from wtflow.model import Workflow

REFRESH_PER_SECOND = 4.0  # how often the region's times and counts are brought up to date
MAX_ROWS = 8  # running nodes named in the region, the longest-running first; the rest are counted

# The names of a run's nodes on its critical path, from the workflow and how each node ended.
CriticalPath = Callable[["Workflow", Mapping[str, NodeFinished]], Sequence[str] | None]

# Where each final status is counted in the region (a reused result is, like a cached one, not run now).
_COUNTED = {
    NodeStatus.SUCCEEDED: "succeeded",
    NodeStatus.FAILED: "failed",
    NodeStatus.TIMED_OUT: "failed",
    NodeStatus.CACHED: "cached",
    NodeStatus.REUSED: "cached",
    NodeStatus.SKIPPED: "skipped",
    NodeStatus.CANCELLED: "cancelled",
}
_STYLES = {
    "succeeded": "green",
    "failed": "bold red",
    "cached": "cyan",
    "skipped": "yellow",
    "cancelled": "magenta",
    "running": "bold blue",
    "waiting": "dim",
}


def wanted(setting: bool | None, stream: TextIO | None = None) -> bool:
    """Whether to show progress: as ``--progress``/``--no-progress`` say (``setting``, ``None`` when neither).

    Unless told, only where ``stream`` (``sys.stderr``) is a terminal that can draw it: not a pipe
    or a file (CI logs), not ``TERM=dumb``.
    """
    if setting is not None:
        return setting
    stream = stream or sys.stderr
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False
    return terminal and os.environ.get("TERM", "") not in {"dumb", "unknown"}


class ProgressDisplay(BaseObserver):
    """The live region of a run on a terminal, then the table of its nodes; see the module's docstring.

    ``stream`` is where it draws (``sys.stderr`` when the run opens). ``force_terminal`` draws there
    even when it is not a terminal (``--progress`` in a pipe). ``critical_path`` names the nodes of
    the run's critical path to show under the table: the names, or a function of the workflow and
    the nodes' ends that returns them when the run is over.
    """

    def __init__(
        self,
        *,
        stream: TextIO | None = None,
        force_terminal: bool | None = None,
        critical_path: CriticalPath | Sequence[str] | None = None,
        refresh_per_second: float = REFRESH_PER_SECOND,
        max_rows: int = MAX_ROWS,
    ) -> None:
        self._stream = stream
        self._force_terminal = force_terminal
        self._critical_path = critical_path
        self._interval = 1 / refresh_per_second
        self._max_rows = max_rows
        # What the events said; kept and read on the event loop only.
        self._workflow: Workflow | None = None
        self._runs: frozenset[str] = frozenset()  # the nodes with an executable: the ones counted and shown
        self._running: dict[str, tuple[float, int]] = {}  # node -> (started, monotonic; attempt), oldest first
        self._counts: Counter[str] = Counter()
        self._finished: dict[str, NodeFinished] = {}
        self._started: float | None = None
        self._ended: float | None = None
        # Held by every write to the terminal, from any thread (the console printers' own, too).
        self.lock = threading.RLock()
        self._console: Console | None = None
        self._live: Live | None = None
        self._standins: list[tuple[str, _LinesAbove]] = []  # ("stdout" or "stderr", its stand-in)
        self._ticking: asyncio.Task[None] | None = None
        self._loop_thread: int | None = None  # the thread that owns the state: the event loop's
        self._rendered_at = 0.0

    async def aopen(self) -> None:
        """Start the region: stand in for ``sys.stdout`` and ``sys.stderr`` where they reach the terminal."""
        from rich.live import Live

        stream = self._stream or sys.stderr
        for original in (sys.stdout, sys.stderr, stream):
            with contextlib.suppress(OSError, ValueError):
                original.flush()
        console = self._console = _console(stream, self._force_terminal)
        self._live = Live(
            console=console, auto_refresh=False, redirect_stdout=False, redirect_stderr=False, transient=True
        )
        self._live.start()
        for name in ("stdout", "stderr"):
            original = getattr(sys, name)
            if original is stream or _same_file(original, stream):
                standin = _LinesAbove(self, original)
                setattr(sys, name, standin)
                self._standins.append((name, standin))
        self._loop_thread = threading.get_ident()
        self._ticking = asyncio.create_task(self._tick())

    def notify(self, event: Event) -> None:
        """Follow the run's nodes; the region shows them at its next refresh."""
        if isinstance(event, NodeStarted):
            if event.node in self._runs and event.replaying is None:
                started = self._running.get(event.node, (time.monotonic(), 1))[0]
                self._running[event.node] = (started, event.attempt)
        elif isinstance(event, NodeFinished):
            self._running.pop(event.node, None)
            if event.node in self._runs:
                self._finished[event.node] = event
                self._counts[_COUNTED.get(event.status, "cancelled")] += 1
        elif isinstance(event, RunStarted):
            self._workflow = event.workflow
            self._runs = frozenset(name for name, node in event.workflow.nodes.items() if node.executable is not None)
            self._started = time.monotonic()
            self.refresh()
        elif isinstance(event, RunFinished):
            self._ended = time.monotonic()
            self.refresh()

    async def aclose(self) -> None:
        """Put ``sys.stdout`` and ``sys.stderr`` back, replace the region by the table of the nodes."""
        if self._ticking is not None:
            self._ticking.cancel()
            await asyncio.gather(self._ticking, return_exceptions=True)
            self._ticking = None
        if self._live is None or self._console is None:
            return
        with self.lock:
            for name, standin in self._standins:
                if getattr(sys, name) is standin:
                    setattr(sys, name, standin.original)
            live, self._live = self._live, None
            try:
                live.stop()
            finally:
                for _, standin in self._standins:
                    standin.release()  # a last line without its newline; whoever still holds it writes through
                self._standins = []
            if self._workflow is not None:
                self._console.print(self._summary(), end="")

    def refresh(self) -> None:
        """Bring the region up to date and redraw it (skipped while another thread prints)."""
        if self._live is None or not self.lock.acquire(blocking=False):
            return
        try:
            self._render()
            self._live.refresh()
        finally:
            self.lock.release()

    def print_above(self, text: str) -> None:
        """Print whole lines above the region, as they are; the region is drawn again below them."""
        with self.lock:
            if self._console is None:
                return
            stale = time.monotonic() - self._rendered_at >= self._interval
            if stale and self._live is not None and self._loop_thread == threading.get_ident():
                self._render()  # the events a busy loop delivers between two ticks show with their output
            self._console.print(_Raw(text), crop=False, end="")

    def _render(self) -> None:
        """Render the region once; it is drawn again as it is after each piece of output, until the next render."""
        assert self._console is not None
        assert self._live is not None
        self._rendered_at = time.monotonic()
        self._live.update(_Lines(self._console.render_lines(self._region(), pad=False)))

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self.refresh()

    def _region(self) -> RenderableType:
        """The region: the running nodes, a bar of the finished ones and the counts of all."""
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        if self._workflow is None:
            return Group()
        now = time.monotonic()
        running = Table.grid(padding=(0, 2))
        running.add_column(no_wrap=True, overflow="ellipsis", max_width=60)
        running.add_column(justify="right", no_wrap=True)
        assert self._console is not None
        rows = max(1, min(self._max_rows, self._console.height // 2 - 3))  # the region stays within the screen
        shown = list(self._running.items())[:rows]
        for name, (started, attempt) in shown:
            again = f" (attempt {attempt})" if attempt > 1 else ""
            running.add_row(Text.assemble(("▸ ", _STYLES["running"]), name, (again, "yellow")), _clock(now - started))
        parts: list[RenderableType] = [running] if shown else []
        if len(self._running) > len(shown):
            parts.append(Text(f"  + {len(self._running) - len(shown)} more running", style="dim"))
        total = len(self._runs)
        done = sum(self._counts.values())
        counts = {**self._counts, "running": len(self._running)}
        counts["waiting"] = max(0, total - done - counts["running"])
        said = [
            (f"{counts.get(key, 0)} {key}", _STYLES[key])
            for key in ("succeeded", "failed", "cached", "skipped", "cancelled", "running", "waiting")
            if key != "cancelled" or counts.get(key)
        ]
        line = Text.assemble(*_joined(said, ("  ", "")))
        elapsed = _clock((self._ended or now) - (self._started or now))
        parts.append(Text.assemble(self._bar(total), f"  {done}/{total}  ", (elapsed, "bold")))
        parts.append(line)
        return Group(*parts)

    def _bar(self, total: int, width: int = 40) -> Text:
        """A bar of ``width`` cells: the finished nodes by how they ended, the rest dim."""
        from rich.text import Text

        bar = Text()
        filled = 0
        reached = 0
        for key in ("succeeded", "cached", "skipped", "cancelled", "failed"):
            reached += self._counts.get(key, 0)
            cells = reached * width // total - filled if total else 0
            bar.append("━" * cells, style=_STYLES[key].replace("bold ", ""))
            filled += cells
        bar.append("━" * (width - filled), style="grey35")
        return bar

    def _summary(self) -> RenderableType:
        """The table of the nodes that ran something (failed ones first), then the critical path.

        Plain lines of padded cells: a rich ``Table`` measures every cell, which for a thousand
        nodes takes a second.
        """
        from rich.text import Text

        assert self._workflow is not None
        order = [name for name in self._workflow.nodes if name in self._finished]
        order.sort(key=lambda name: not self._finished[name].status.is_failure)  # stable: tree order within each part
        header = ("NODE", "STATUS", "DURATION", "EXIT")
        rows: list[tuple[str, str, str, str]] = []
        styles: list[str] = []
        for name in order:
            event = self._finished[name]
            rows.append(
                (
                    name,
                    str(event.status) + (f" (attempt {event.attempt})" if event.attempt > 1 else ""),
                    "-" if event.duration is None else f"{event.duration:.2f}s",
                    "-" if event.exit_code is None else str(event.exit_code),
                )
            )
            styles.append(_STYLES[_COUNTED.get(event.status, "cancelled")])
        widths = [max(len(row[column]) for row in [header, *rows]) for column in range(4)]

        def line(row: tuple[str, str, str, str]) -> tuple[str, str, str]:
            node, status, duration, code = row
            return (
                f"{node.ljust(widths[0])}  ",
                status.ljust(widths[1]),
                f"  {duration.rjust(widths[2])}  {code.rjust(widths[3])}\n",
            )

        table = Text()
        table.append("".join(line(header)), style="bold")
        for row, style in zip(rows, styles, strict=True):
            node, status, rest = line(row)
            table.append_text(Text.assemble(node, (status, style), rest))
        path, why = self._path()
        if path:
            seconds = [self._finished[name].duration or 0.0 if name in self._finished else 0.0 for name in path]
            steps = " → ".join(f"{name} ({second:.2f}s)" for name, second in zip(path, seconds, strict=True))
            table.append_text(Text.assemble(("critical path: ", "bold"), steps, f"  = {sum(seconds):.2f}s\n"))
        elif why:
            table.append_text(Text.assemble(("critical path: ", "bold"), why, "\n"))
        return table

    def _path(self) -> tuple[Sequence[str], str | None]:
        """The critical path's nodes, or why there are none to show."""
        if self._critical_path is None or self._workflow is None:
            return (), None
        if not callable(self._critical_path):
            return self._critical_path, None
        try:
            return self._critical_path(self._workflow, self._finished) or (), None
        except Exception as exc:  # noqa: BLE001 - the table is shown all the same; the line says what went wrong
            return (), f"unavailable ({exc!r})"


class _LinesAbove:
    """Stands in for ``sys.stdout`` or ``sys.stderr``: whole lines go above the region, bytes unchanged.

    Text is held until its newline: a line is never split by the region. Bytes written to
    ``buffer`` (how the console printers write node output) are decoded with ``surrogateescape``
    and encoded back the same way on their way to the terminal, so they arrive as they were.
    """

    def __init__(self, display: ProgressDisplay, original: TextIO) -> None:
        self._display: ProgressDisplay | None = display
        self.original = original
        self.encoding = getattr(original, "encoding", None) or "utf-8"
        self.buffer = _BytesAbove(self)
        self._held = ""

    def write(self, text: str) -> int:
        """Print the whole lines of what was held and ``text``; hold the rest."""
        display = self._display
        if display is None:  # the region is gone: straight through
            return self.original.write(text)
        with display.lock:  # one lock for holding and printing: lines keep their order across threads
            end = text.rfind("\n") + 1
            if not end:
                self._held += text
                return len(text)
            lines, self._held = self._held + text[:end], text[end:]
            display.print_above(lines)
        return len(text)

    @property
    def released(self) -> bool:
        """Whether the region is gone and writes go straight to the stream stood in for."""
        return self._display is None

    def release(self) -> None:
        """Write what waits for its newline to the stream stood in for, as all that comes after."""
        self._display = None
        held, self._held = self._held, ""
        if held:
            self.original.write(held)
            self.original.flush()

    def flush(self) -> None:
        """Nothing to do while the region is shown: whole lines are printed at once, a partial line waits."""
        if self._display is None:
            self.original.flush()

    def isatty(self) -> bool:
        """Whether the stream stood in for is a terminal."""
        return self.original.isatty()

    def fileno(self) -> int:
        """The descriptor of the stream stood in for."""
        return self.original.fileno()

    def writable(self) -> bool:
        """Always: it is an output stream."""
        return True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.original, name)


class _BytesAbove:
    """The ``buffer`` of a :class:`_LinesAbove`: bytes in, through the same lines (or, once released, straight on)."""

    def __init__(self, lines: _LinesAbove) -> None:
        self._lines = lines

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Take ``data`` as text that keeps every byte."""
        target: BinaryIO | None = getattr(self._lines.original, "buffer", None)
        if self._lines.released and target is not None:
            return target.write(data)
        self._lines.write(bytes(data).decode(self._lines.encoding, "surrogateescape"))
        return len(data)

    def flush(self) -> None:
        """Nothing to do while the region is shown (see :meth:`_LinesAbove.flush`)."""
        if self._lines.released:
            getattr(self._lines.original, "buffer", self._lines.original).flush()

    def writable(self) -> bool:
        """Always: it is an output stream."""
        return True


class _TerminalFile:
    """rich's file: its text goes to ``stream``'s bytes, with the bytes of node output put back as they came."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._buffer: BinaryIO | None = getattr(stream, "buffer", None)
        self.encoding: str = getattr(stream, "encoding", None) or "utf-8"

    def write(self, text: str) -> int:
        """Write ``text`` and flush: what rich writes is meant to be seen now."""
        if self._buffer is None:  # a stream of text only (a test's StringIO)
            self._stream.write(text)
            self._stream.flush()
            return len(text)
        try:
            data = text.encode(self.encoding, "surrogateescape")
        except UnicodeEncodeError:  # a character the terminal's encoding has no bytes for
            data = text.encode(self.encoding, "backslashreplace")
        self._buffer.write(data)
        self._buffer.flush()
        return len(text)

    def flush(self) -> None:
        """Written already."""

    def isatty(self) -> bool:
        """Whether the stream is a terminal."""
        return self._stream.isatty()

    def fileno(self) -> int:
        """The stream's descriptor (rich asks the terminal's size with it)."""
        return self._stream.fileno()


class _Raw:
    """Text printed exactly as it is: no wrapping, cropping or markup."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Segment]:
        from rich.segment import Segment

        yield Segment(self.text)


class _Lines:
    """Lines rendered once, drawn again as they are after each piece of output above them."""

    def __init__(self, lines: list[list[Segment]]) -> None:
        self.lines = lines

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.segment import Segment

        for number, line in enumerate(self.lines):
            if number:
                yield Segment.line()
            yield from line


def _console(stream: TextIO, force_terminal: bool | None) -> Console:
    from rich.console import Console

    class TerminalConsole(Console):
        def on_broken_pipe(self) -> None:
            """Raise the error like any write would (rich's default quits the process)."""
            raise  # noqa: PLE0704 - called inside rich's `except BrokenPipeError`

    return TerminalConsole(
        file=cast("TextIO", _TerminalFile(stream)),
        force_terminal=force_terminal,
        highlight=False,
        markup=False,
        emoji=False,
    )


def _same_file(one: TextIO, other: TextIO) -> bool:
    """Whether two streams write to the same file or terminal."""
    try:
        first, second = os.fstat(one.fileno()), os.fstat(other.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return False
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


def _joined(items: list[tuple[str, str]], separator: tuple[str, str]) -> list[tuple[str, str]]:
    joined: list[tuple[str, str]] = []
    for item in items:
        if joined:
            joined.append(separator)
        joined.append(item)
    return joined


def _clock(seconds: float) -> str:
    """``7s``, ``1m05s``, ``2h03m``."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, second = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{second:02d}s" if minutes else f"{second}s"
