"""A run's room in the descriptor table: asked for in preflight, made in one step, nothing closed or left open."""

from __future__ import annotations

import asyncio
import os
import resource
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from wtflow import Command, Node, Workflow
from wtflow.executors import descriptors
from wtflow.executors.base import Executor
from wtflow.executors.descriptors import FDS_PER_NODE, reserve_descriptors
from wtflow.executors.pyfunc import PyFuncExecutor
from wtflow.executors.shell import CommandExecutor

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads the table's size from /proc (Linux)")


def _table_size() -> int:
    """How many descriptors this process's table holds now (``FDSize``)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("FDSize:"))


def _open_descriptors() -> set[int]:
    return {int(entry.name) for entry in Path("/proc/self/fd").iterdir()} - {_lowest_free()}


def _lowest_free() -> int:
    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)
    return fd


@pytest.fixture
def soft_limit() -> Iterator[int]:
    """The open-files soft limit, put back as it was after the test."""
    limits = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield limits[0]
    resource.setrlimit(resource.RLIMIT_NOFILE, limits)


def test_the_table_grows_at_once_to_hold_the_reserved_descriptors(soft_limit: int) -> None:
    count = 4 * _table_size()
    if _lowest_free() + count >= soft_limit:
        pytest.skip(f"the open-files limit ({soft_limit}) leaves no room to grow the table")
    reserve_descriptors(count)
    assert _table_size() > _lowest_free() + count - 1


def test_reserving_leaves_no_descriptor_open_or_closed() -> None:
    before = _open_descriptors()
    reserve_descriptors(100)
    assert _open_descriptors() == before


def test_reserving_never_replaces_a_descriptor_where_the_room_ends(soft_limit: int) -> None:
    count = 100
    read_end, write_end = os.pipe()
    target = _lowest_free() + count  # where the reservation's end falls
    if target >= soft_limit:
        pytest.skip(f"the open-files limit ({soft_limit}) leaves no room to grow the table")
    os.dup2(write_end, target)
    try:
        reserve_descriptors(count)
        os.write(target, b"still the pipe")
        assert os.read(read_end, 100) == b"still the pipe"
    finally:
        for fd in (read_end, write_end, target):
            os.close(fd)


def test_a_reservation_past_the_open_files_limit_stops_below_it(soft_limit: int) -> None:
    low = max(_lowest_free() + 16, 256)
    if low > soft_limit:
        pytest.skip(f"the open-files limit ({soft_limit}) is already lower")
    resource.setrlimit(resource.RLIMIT_NOFILE, (low, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    before = _open_descriptors()
    reserve_descriptors(1 << 20)  # far past the limit: no error, nothing left open
    assert _open_descriptors() == before
    fd = os.open(os.devnull, os.O_RDONLY)  # and descriptors can still be opened
    os.close(fd)


@pytest.mark.parametrize(
    "make_executor", [CommandExecutor, lambda: PyFuncExecutor(fork_server=False)], ids=["commands", "functions"]
)
@pytest.mark.parametrize(("max_parallel", "running"), [(2, 2), (8, 3)])
def test_preflight_reserves_descriptors_for_every_node_that_can_run_at_once(
    make_executor: Callable[[], Executor], max_parallel: int, running: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An executor of local processes reserves the run's descriptors before any node starts."""
    reserved: list[int] = []
    monkeypatch.setattr(descriptors, "reserve_descriptors", reserved.append)
    children = [Node(f"n{index}", executable=Command("true")) for index in range(3)]
    workflow = Workflow("wide", Node("root", parallel=True, children=children))  # root runs nothing
    asyncio.run(make_executor().preflight(workflow, max_parallel))
    assert reserved == [FDS_PER_NODE * running]
