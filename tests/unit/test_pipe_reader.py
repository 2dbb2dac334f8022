"""PipeReader: a child's output pipe, drained by the event loop into a bounded queue."""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path

import pytest

from wtflow.executors.pipes import CHUNK, GROWN_PIPE_SIZE, MAX_GROWN_PIPES, PIPE_SIZE, PipeReader, grown_pipe_count

needs_growable_pipes = pytest.mark.skipif(
    not hasattr(fcntl, "F_SETPIPE_SZ") or int(Path("/proc/sys/fs/pipe-max-size").read_text()) < GROWN_PIPE_SIZE,
    reason="pipes cannot be grown to 1 MiB here (Linux's fs.pipe-max-size)",
)


async def _fill(write_end: int, block: bytes) -> int:
    """Write until the pipe stays full while the loop runs on; the number of bytes written."""
    written = 0
    idle_turns = 0
    while idle_turns < 20 and written < 64 << 20:  # a reader that never stops would take it all
        try:
            written += os.write(write_end, block)
            idle_turns = 0
        except BlockingIOError:
            idle_turns += 1
        await asyncio.sleep(0)  # the reader takes from the pipe on the loop's turns
    return written


def test_a_reader_nobody_reads_stops_taking_from_the_pipe_and_loses_nothing() -> None:
    async def main() -> tuple[int, int, bytes, bytes]:
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)
        reader = PipeReader(read_end, asyncio.get_running_loop(), limit=4 * 65536)
        block = bytes(range(256)) * 256  # 64 KiB with a pattern, so order is checked too
        written = await _fill(write_end, block)
        pipe_size = fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ)
        os.close(write_end)
        received = bytearray()
        while chunk := await reader.read(CHUNK):
            received += chunk
        reader.close()
        expected = (block * (written // len(block) + 1))[:written]
        return written, pipe_size, bytes(received), expected

    written, pipe_size, received, expected = asyncio.run(main())
    # Queued at most the limit plus one read, and the pipe's own buffer: then the writer waits.
    assert written <= 4 * 65536 + CHUNK + pipe_size
    assert received == expected


async def _read_once(size: int = PIPE_SIZE) -> tuple[PipeReader, int]:
    """A reader of a pipe its writer put ``size`` bytes in (all of a new pipe by default), after
    one read; and the pipe's write end."""
    read_end, write_end = os.pipe()
    os.write(write_end, b"x" * size)
    reader = PipeReader(read_end, asyncio.get_running_loop())
    assert len(await reader.read(CHUNK)) == size
    return reader, write_end


async def _grown_and_size(written: int) -> tuple[bool, int]:
    reader, write_end = await _read_once(written)
    size = fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ)
    grown = reader.grown
    reader.close()
    os.close(write_end)
    return grown, size


@needs_growable_pipes
def test_a_pipe_its_writer_fills_is_grown_to_a_megabyte() -> None:
    assert asyncio.run(_grown_and_size(PIPE_SIZE)) == (True, GROWN_PIPE_SIZE)


def test_a_pipe_never_filled_keeps_its_size() -> None:
    assert asyncio.run(_grown_and_size(PIPE_SIZE - 1)) == (False, PIPE_SIZE)


@needs_growable_pipes
def test_only_so_many_pipes_are_grown_at_once_and_closing_one_frees_its_place() -> None:
    async def main() -> tuple[list[bool], int, bool]:
        opened = [await _read_once() for _ in range(MAX_GROWN_PIPES + 1)]
        grown = [reader.grown for reader, _ in opened]
        over_budget = fcntl.fcntl(opened[-1][1], fcntl.F_GETPIPE_SZ)
        opened[0][0].close()  # a grown pipe's node ended
        later, later_write_end = await _read_once()
        grown_later = later.grown
        for reader, write_end in [*opened, (later, later_write_end)]:
            reader.close()
            os.close(write_end)
        return grown, over_budget, grown_later

    assert grown_pipe_count() == 0
    grown, over_budget, grown_later = asyncio.run(main())
    assert grown == [True] * MAX_GROWN_PIPES + [False]
    assert over_budget == PIPE_SIZE
    assert grown_later
    assert grown_pipe_count() == 0  # every grown pipe closed: the whole budget is back
