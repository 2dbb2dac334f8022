"""The database writer's life as the runner sees it: the spare ``wtflow run`` starts first, handed over, stopped."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from wtflow.db import recorder, writer_process
from wtflow.entry import will_run


@pytest.fixture(autouse=True)
def no_writer_left() -> Iterator[None]:
    yield
    writer_process.discard_prestarted()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run"], True),
        (["run", "ci.yml", "--target", "unit"], True),
        (["action"], True),
        (["run", "--dry-run"], False),
        (["run", "--help"], False),
        (["run", "--db-url", ""], False),
        (["run", "--db-url="], False),
        (["run", "--db-url", "sqlite:///x.db"], True),
        (["runs", "list"], False),
        (["--version"], False),
        ([], False),
    ],
)
def test_only_a_command_line_that_runs_a_workflow_with_a_database_starts_a_spare(
    args: list[str], expected: bool
) -> None:
    assert will_run(args) is expected


def open_and_close(database: recorder.DatabaseRecorder) -> tuple[list[int], list[int]]:
    """The recorder's helper pids while it is open, and after it closed."""

    async def run() -> tuple[list[int], list[int]]:
        await database.aopen()
        while_open = list(database.helper_pids())
        await database.aclose()
        return while_open, list(database.helper_pids())

    return asyncio.run(run())


def test_the_run_records_through_the_spare_writer(tmp_path: Path) -> None:
    spare = writer_process.start_spare()
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    writer_process.prestart(url)
    database = recorder.DatabaseRecorder(url, retry=1)
    assert open_and_close(database) == ([spare.pid], [])
    assert database.warnings() == []
    assert (tmp_path / "runs.db").exists()


def test_a_run_without_prestart_takes_the_spare(tmp_path: Path) -> None:
    spare = writer_process.start_spare()
    database = recorder.DatabaseRecorder(f"sqlite:///{tmp_path / 'runs.db'}", retry=1)
    assert open_and_close(database) == ([spare.pid], [])
    assert writer_process.take_spare() is None


def test_a_library_run_starts_its_own_writer(tmp_path: Path) -> None:
    database = recorder.DatabaseRecorder(f"sqlite:///{tmp_path / 'runs.db'}", retry=1)
    while_open, after = open_and_close(database)
    assert len(while_open) == 1
    assert after == []


def test_an_unneeded_spare_is_stopped() -> None:
    spare = writer_process.start_spare()
    writer_process.discard_prestarted()
    assert spare._process.poll() is not None
    assert writer_process.take_spare() is None


def test_a_writer_prestarted_for_a_run_that_did_not_start_is_stopped(tmp_path: Path) -> None:
    writer_process.prestart(f"sqlite:///{tmp_path / 'runs.db'}")
    (prestarted,) = writer_process._prestarted.values()
    writer_process.discard_prestarted()
    assert prestarted._process.poll() is not None
    assert not (tmp_path / "runs.db").exists()  # it never connected


def test_a_spare_whose_runner_is_gone_ends_by_itself() -> None:
    spare = writer_process.start_spare()
    assert writer_process.take_spare() is spare
    process = spare._process
    assert process.stdin is not None
    process.stdin.close()  # what the runner's exit does to the pipe
    assert process.wait(timeout=30) != 0
    assert process.stdout is not None
    process.stdout.close()
