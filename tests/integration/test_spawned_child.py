"""A child started by posix_spawn and watched by a pidfd: waiting for its exit, and its output, from the loop."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from wtflow.executors.spawn import SpawnedChild, start

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="posix_spawn with a pidfd is Linux's")


async def _started(*argv: str) -> SpawnedChild:
    child = await start(list(argv), stdin=False, env=dict(os.environ), cwd=None)
    assert isinstance(child, SpawnedChild)
    return child


def test_a_cancelled_wait_for_the_exit_leaves_the_other_waits_and_the_status() -> None:
    async def main() -> tuple[bool, int | None]:
        child = await _started("sh", "-c", "read line; exit 3")  # ends when its stdin, /dev/null, is read
        try:
            cancelled = asyncio.create_task(child.exited())
            waiting = asyncio.create_task(child.exited())
            await asyncio.sleep(0)  # both are waiting now
            cancelled.cancel()
            await waiting
            return cancelled.cancelled(), child.returncode
        finally:
            child.close()

    assert asyncio.run(main()) == (True, 3)


def test_waiting_for_a_child_that_has_exited_returns_at_once_with_its_status() -> None:
    async def main() -> int | None:
        child = await _started("true")
        try:
            await child.exited()
            await child.exited()  # again: no waiter is left to wake it
            return child.returncode
        finally:
            child.close()

    assert asyncio.run(main()) == 0


def test_output_written_before_the_loop_watches_the_pipes_is_all_read() -> None:
    async def main() -> bytes:
        child = await _started("sh", "-c", "printf 'a%.0s' $(seq 1000)")
        try:
            await child.exited()
            chunks = []
            while chunk := await child.stdout.read(1 << 16):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            child.close()

    assert asyncio.run(main()) == b"a" * 1000
