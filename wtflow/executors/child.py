"""A started child process leading its own process group: its output, its exit, how to stop it.

Every child starts a new session, so it and all it starts share one process group. Stopping
means SIGTERM to the whole group, then SIGKILL after a grace period.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Protocol


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to process group ``pgid``; ``False`` if no process is left in it."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member changed user: nothing more we may do
        return False
    return True


class Readable(Protocol):
    """An output stream of a child: ``read`` returns up to ``n`` bytes, ``b""`` at the end."""

    async def read(self, n: int) -> bytes:
        """Up to ``n`` bytes, as soon as some are there; ``b""`` once the stream has ended."""
        ...


class Child:
    """A started process leading its own process group: its output streams, its exit, how to stop it."""

    pid: int
    stdout: Readable
    stderr: Readable

    @property
    def returncode(self) -> int | None:
        """The exit status (negative for a signal), once the process has exited."""
        raise NotImplementedError

    async def exited(self) -> None:
        """Wait until the process itself has exited (its pipes may still be open)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the pipes (a process that left the group may still hold their other ends)."""

    async def terminate(self, grace: float) -> None:
        """SIGTERM the process's group, then SIGKILL it if the process outlives ``grace`` seconds."""
        signal_group(self.pid, signal.SIGTERM)
        try:
            async with asyncio.timeout(grace):
                await self.exited()
        except TimeoutError:
            signal_group(self.pid, signal.SIGKILL)
            await self.exited()
