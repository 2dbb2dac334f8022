"""A node attempt's output on its way: held to whole lines, secrets masked, stored, then forwarded.

:class:`OutputWriter` is the executor's sink (:class:`~wtflow.executors.base.OutputSink`); the
artifact store (:mod:`wtflow.artifacts`) makes one for each attempt, over the files it opened.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, BinaryIO

from wtflow.masking import Masker
from wtflow.model import STDERR, STDOUT

# A partial line longer than this is passed on without waiting for its newline.
MAX_PENDING_LINE = 1 << 16
# Writing into the page cache costs less than handing the write to a thread and back, so output
# is written from the loop; a write that takes longer than this means the disk cannot keep up
# (a network mount, throttled writeback), and the node's later writes go through aiofiles'
# worker threads so the loop and every other node's output are not held up.
SLOW_WRITE = 0.02
Forward = Callable[[str, bytes], None]


class OutputWriter:
    """One node attempt's output: held to whole lines, secrets masked, stored, then forwarded.

    The executor's sink (:class:`~wtflow.executors.base.OutputSink`). ``forward`` receives each
    stream's whole lines, masked (the scheduler turns them into ``NodeOutput`` events). The
    files come from ``opening``, which settles once they exist (the store opens them while the
    node's process starts).
    """

    def __init__(
        self, opening: asyncio.Future[list[BinaryIO]], forward: Forward, *, masker: Masker, mask_files: bool
    ) -> None:
        self._opening = opening
        self._files: dict[str, BinaryIO] | None = None
        self._slow: dict[str, Any] = {}  # stream -> the aiofiles handle its writes go through now
        self._forward = forward
        self._masker = masker
        self._mask_files = mask_files
        self._pending = {STDOUT: b"", STDERR: b""}

    async def ready(self) -> None:
        """Wait until the node's files exist (``OSError`` if they cannot be made)."""
        if self._files is None:
            out, err = await asyncio.shield(self._opening)
            self._files = {STDOUT: out, STDERR: err}

    async def write(self, stream: str, data: bytes) -> None:
        """Take a chunk of ``stream``; whole lines go on, a partial line waits for its newline."""
        pending = self._pending[stream]
        end = data.rfind(b"\n") + 1  # just past the last whole line; 0 if none ends here
        held = len(data) - end if end else len(pending) + len(data)  # what would wait for its newline
        if held > MAX_PENDING_LINE:  # a partial line too long to hold: passed on without its newline
            lines = pending + data
            self._masker.scan(lines)
            # Less the tail where a secret may still be arriving: it waits for the next chunk.
            masked, cut = self._masker.head(lines)
            self._pending[stream] = lines[cut:]
            await self._pass_on(stream, lines[:cut], masked)
        elif not end:
            self._pending[stream] = pending + data
        else:
            self._pending[stream] = data[end:]
            # The whole lines, copied once: output runs to gigabytes.
            lines = b"".join((pending, memoryview(data)[:end])) if pending else data[:end]
            self._masker.scan(lines)
            await self._pass_on(stream, lines, self._masker.bytes(lines))

    async def _pass_on(self, stream: str, lines: bytes, masked: bytes) -> None:
        if not lines:
            return
        await self.ready()
        await self._store(stream, masked if self._mask_files else lines)
        self._forward(stream, masked)

    async def _store(self, stream: str, data: bytes) -> None:
        slow = self._slow.get(stream)
        if slow is not None:
            await slow.write(data)
            return
        assert self._files is not None
        handle = self._files[stream]
        start = time.perf_counter()
        handle.write(data)
        if time.perf_counter() - start > SLOW_WRITE:
            import aiofiles.threadpool  # only once a disk turns slow

            self._slow[stream] = aiofiles.threadpool.wrap(handle, loop=asyncio.get_running_loop())

    async def flush(self) -> None:
        """Pass on what waits for a newline (the stream has ended)."""
        for stream, pending in self._pending.items():
            if pending:
                self._pending[stream] = b""
                self._masker.scan(pending)
                await self._pass_on(stream, pending, self._masker.bytes(pending))

    async def aclose(self) -> None:
        """Pass on what is left and close the files (once they are open, even if cancelled meanwhile)."""
        try:
            await self.flush()
        finally:
            try:
                close_files(await asyncio.shield(self._opening))  # closing without fsync does not block
            except asyncio.CancelledError:
                self._opening.add_done_callback(_close_when_opened)
                raise


def close_files(files: list[BinaryIO]) -> None:
    """Close a node's output files (closing without fsync does not block)."""
    for handle in files:
        handle.close()


def _close_when_opened(opening: asyncio.Future[list[BinaryIO]]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        close_files(opening.result())
