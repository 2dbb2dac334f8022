"""Reading a child's output pipe from the event loop, and the budget of pipes grown to read faster.

A pipe holds 64 KiB. One a child fills (output as fast as it can write) is grown to 1 MiB, so a
read takes up to ``CHUNK`` at once: the runner reads less often, and the child waits less for it.
Grown pipes count against the user's pipe memory (``fs.pipe-user-pages-soft``, 64 MiB by default,
past which each new pipe of the user gets two pages, the nodes' own pipelines included), so only
``MAX_GROWN_PIPES`` are grown at a time.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections import deque

CHUNK = 1 << 18  # bytes per read: large reads keep per-byte Python work low
PIPE_SIZE = 1 << 16
GROWN_PIPE_SIZE = 1 << 20
MAX_GROWN_PIPES = 8
_grown_pipes = 0


def grown_pipe_count() -> int:
    """How many pipes of this process are grown now (at most ``MAX_GROWN_PIPES``)."""
    return _grown_pipes


class PipeReader:
    """The read end of a child's output pipe, drained by the loop into a bounded queue of chunks.

    The loop reads whenever the pipe has data, so the child seldom waits on a full pipe while the
    consumer stores the previous chunk. Past ``limit`` queued bytes it stops reading until the
    consumer catches up: a slow consumer makes the child wait rather than fill the memory.
    """

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop, limit: int = 2 * CHUNK) -> None:
        os.set_blocking(fd, False)
        self._fd = fd
        self._loop = loop
        self._limit = limit
        self._chunks: deque[bytes] = deque()
        self._queued = 0
        self._eof = False
        self._reading = False
        self._closed = False
        self._may_grow = hasattr(fcntl, "F_SETPIPE_SZ")  # Linux
        self._grown = False
        self._waiter: asyncio.Future[None] | None = None
        loop.call_soon(self._resume)  # see spawn.SpawnedChild: after the other processes of this turn start

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, CHUNK)
        except BlockingIOError:
            return
        except OSError:  # EIO and the like: the stream is over
            data = b""
        if data:
            if len(data) >= PIPE_SIZE and self._may_grow:
                self._grow()
            self._chunks.append(data)
            self._queued += len(data)
            if self._queued >= self._limit:
                self._stop_reading()
        else:
            self._eof = True
            self._stop_reading()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _grow(self) -> None:
        global _grown_pipes  # noqa: PLW0603 - a budget shared by every pipe of this process
        self._may_grow = False  # tried once
        if _grown_pipes >= MAX_GROWN_PIPES:
            return
        try:
            fcntl.fcntl(self._fd, fcntl.F_SETPIPE_SZ, GROWN_PIPE_SIZE)
        except OSError:  # above fs.pipe-max-size, or the user's pipe memory is spent: keep 64 KiB
            return
        self._grown = True
        _grown_pipes += 1

    @property
    def grown(self) -> bool:
        """Whether this pipe was grown to ``GROWN_PIPE_SIZE`` (and still counts in the budget)."""
        return self._grown

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)

    async def read(self, n: int) -> bytes:
        """Up to ``n`` bytes, as soon as some are there; ``b""`` once every writer has closed the pipe."""
        waited = False
        while not self._chunks:
            if self._eof or self._closed:
                return b""
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
            waited = True
        if waited and not self._eof and self._queued < n // 4:
            await asyncio.sleep(0)  # let a stream in full flow queue up more than a pipe's worth
        if len(self._chunks[0]) >= n:
            first = self._chunks.popleft()
            data, rest = first[:n], first[n:]
            if rest:
                self._chunks.appendleft(rest)
        else:  # what has queued up, joined into one chunk of at most n bytes
            parts = []
            size = 0
            while self._chunks and size + len(self._chunks[0]) <= n:
                part = self._chunks.popleft()
                parts.append(part)
                size += len(part)
            data = parts[0] if len(parts) == 1 else b"".join(parts)
        self._queued -= len(data)
        self._resume()
        return data

    def _resume(self) -> None:
        if not self._reading and not self._eof and not self._closed and self._queued < self._limit:
            self._reading = True
            self._loop.add_reader(self._fd, self._on_readable)

    def close(self) -> None:
        """Stop reading and close the read end (once)."""
        global _grown_pipes  # noqa: PLW0603 - see _grow
        if not self._closed:
            self._closed = True
            self._stop_reading()
            os.close(self._fd)
            if self._grown:
                self._grown = False
                _grown_pipes -= 1
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_result(None)
