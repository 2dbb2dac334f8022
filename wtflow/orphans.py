"""Processes that escaped their node's process group (``setsid``, double forks) and outlived it.

When wtflow is a *child subreaper* (Linux ``prctl(PR_SET_CHILD_SUBREAPER)``), such orphans are
re-parented to wtflow instead of to init, so at the end of a run they can be found (their parent
is wtflow) and stopped like any node: SIGTERM to their group, then SIGKILL after the grace period.
The CLI turns this on; a library user's process is left as it is.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37


def _prctl(option: int, value: int | ctypes.c_int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(option, value, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


@contextlib.contextmanager
def adopting_orphans() -> Iterator[bool]:
    """Within the block, adopt orphaned descendants (Linux); yields whether that is on."""
    if not sys.platform.startswith("linux"):
        yield False
        return
    before = ctypes.c_int(0)
    had = _prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(before))  # type: ignore[arg-type]
    on = _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    try:
        yield on
    finally:
        if on and had and not before.value:
            _prctl(_PR_SET_CHILD_SUBREAPER, 0)


def children(parent: int | None = None) -> list[int]:
    """The pids whose parent is ``parent`` (this process by default)."""
    parent = parent or os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == parent:
            found.append(int(entry.name))
    return found


SWEEPS = 10  # rounds of stopping adopted children, for orphans that fork again as they are stopped


def sweep(grace: float, spare: set[int]) -> None:
    """Stop every child this process adopted, except ``spare``, until none is left (at most :data:`SWEEPS` rounds).

    A process that double-forks while it is stopped leaves a grandchild that is adopted only
    after its parent died: one pass would miss it, so the children are looked at again.
    """
    for _ in range(SWEEPS):
        pids = [pid for pid in children() if pid not in spare]
        if not pids:
            return
        stop(pids, grace)


def stop(pids: list[int], grace: float) -> None:
    """SIGTERM each process and its group, SIGKILL what is left after ``grace`` seconds; reap them all."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if not _reaped(pid)]
        if alive:
            time.sleep(0.02)
    for pid in alive:
        _signal(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _reaped(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == pid
