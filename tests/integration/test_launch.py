"""The spare database writer ``wtflow run`` starts before its own imports."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from wtflow.db import launch, recorder
from wtflow.entry import will_run


@pytest.fixture(autouse=True)
def no_writer_left() -> Iterator[None]:
    yield
    recorder.discard_prestarted()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run"], True),
        (["run", "ci.yml", "--target", "unit"], True),
        (["action"], True),
        (["run", "--dry-run"], False),
        (["run", "--help"], False),
        (["runs", "list"], False),
        (["--version"], False),
        ([], False),
    ],
)
def test_only_a_command_line_that_runs_a_workflow_starts_a_spare(args: list[str], expected: bool) -> None:
    assert will_run(args) is expected


def test_the_run_records_through_the_spare_writer(tmp_path: Path) -> None:
    spare = launch.start_spare()
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    recorder.prestart(url)
    database = recorder.DatabaseRecorder(url, retry=1)

    async def open_and_close() -> int | None:
        await database.aopen()
        pid = database.pid
        await database.aclose()
        return pid

    assert asyncio.run(open_and_close()) == spare.pid
    assert (tmp_path / "runs.db").exists()


def test_an_unneeded_spare_is_stopped() -> None:
    spare = launch.start_spare()
    recorder.discard_prestarted()
    assert spare.poll() is not None
    assert launch.take_spare() is None


def test_a_spare_whose_runner_is_gone_ends_by_itself() -> None:
    spare = launch.start_spare()
    assert launch.take_spare() is spare
    assert spare.stdin is not None
    spare.stdin.close()  # what the runner's exit does to the pipe
    assert spare.wait(timeout=30) != 0
    assert spare.stdout is not None
    spare.stdout.close()
