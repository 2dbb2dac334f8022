"""PipeReader: a child's output pipe, drained by the event loop into a bounded queue."""

from __future__ import annotations

import asyncio
import fcntl
import os

from wtflow.executors.process import CHUNK, PipeReader


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
