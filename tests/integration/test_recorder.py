"""The database recorder as the engine sees it: events in, helper processes and warnings out."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from sqlalchemy import select

from wtflow import Command, Node, Workflow
from wtflow.db.connect import open_engine
from wtflow.db.recorder import DatabaseRecorder
from wtflow.db.tables import runs
from wtflow.events import RunFinished, RunStarted, RunStatus
from wtflow.scheduler import now

WORKFLOW = Workflow("wf", Node("a", executable=Command("true")))


def test_a_run_that_could_not_start_is_recorded_failed(tmp_path: Path) -> None:
    """The engine's sequence when the artifacts directory cannot be made: open, started, finished failed."""
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    recorder = DatabaseRecorder(url, retry=1)

    async def record() -> None:
        await recorder.aopen()
        started = now()
        recorder.notify(RunStarted("r1", WORKFLOW, tmp_path / "missing" / "r1", started, "h", os.getpid()))
        recorder.notify(RunFinished("r1", "wf", RunStatus.FAILED, 1, started, now(), "no artifacts directory"))
        await recorder.aclose()

    asyncio.run(record())
    engine = open_engine(url)
    with engine.connect() as connection:
        row = connection.execute(select(runs.c.status, runs.c.exit_code, runs.c.error)).one()
    engine.dispose()
    assert tuple(row) == ("failed", 1, "no artifacts directory")
    assert recorder.warnings() == []
    assert list(recorder.helper_pids()) == []


def test_a_writer_that_died_is_a_warning_naming_the_runs_events_file(tmp_path: Path) -> None:
    recorder = DatabaseRecorder(f"sqlite:///{tmp_path / 'runs.db'}", retry=1)
    run_dir = tmp_path / "arts" / "r1"

    async def record() -> None:
        await recorder.aopen()
        recorder.notify(RunStarted("r1", WORKFLOW, run_dir, now(), "h", os.getpid()))
        (pid,) = recorder.helper_pids()
        os.kill(pid, signal.SIGKILL)
        await recorder.aclose()

    asyncio.run(record())
    assert recorder.warnings() == [
        "the database writer ended unexpectedly (exit -9); rows may be missing; "
        f"{run_dir / 'events.jsonl'} has every event"
    ]
