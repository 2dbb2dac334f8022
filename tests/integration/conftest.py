"""Helpers for running real workflows: an engine with artifacts in the test's directory.

Also a scratch project for workflow files run through the CLI (see ``workflow_files``), and runs
told straight to the real observers (the database recorder, whose writer process writes SQLite
files and PostgreSQL, and run.json's writer) as the engine tells them, then read back.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy

from tests.conftest import EventLog
from tests.integration.workflow_files import WAIT_SCRIPT, clear_settings
from wtflow import Config, DatabaseConfig, Engine, Node, RunConfig, StorageConfig, Workflow
from wtflow.db.connect import open_engine
from wtflow.db.history import RunRecord, get_run, open_history
from wtflow.db.recorder import DatabaseRecorder
from wtflow.events import NodeFinished, NodeStarted, RunFinished, RunStarted, RunStatus
from wtflow.observers.runfile import RunFileWriter


class Runner:
    """Runs a workflow for real, keeping its events and result."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.log = EventLog()
        self.engine: Engine | None = None

    def config(self, db_url: str | None = None, **run: object) -> Config:
        return Config(
            db=DatabaseConfig(db_url),
            storage=StorageConfig(self.tmp_path / "artifacts"),
            run=RunConfig(**{"kill_grace": 2.0, **run}),  # type: ignore[arg-type]
        )

    def __call__(
        self, root: Node, *, db_url: str | None = None, observers: list | None = None, **run: object
    ) -> Engine:  # type: ignore[type-arg]
        self.engine = Engine(Workflow("wf", root), self.config(db_url, **run), observers=[self.log, *(observers or [])])
        asyncio.run(self.engine.run_async())
        return self.engine


@pytest.fixture
def run_workflow(tmp_path: Path) -> Runner:
    return Runner(tmp_path)


# -- workflow files run through the CLI -------------------------------------------------------


@pytest.fixture
def project(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The directory a test's workflow file is written to and run in: no wtflow settings or workflow
    variables from the environment, and ``wait.sh`` (see ``WAIT_SCRIPT``) for nodes that wait on a file."""
    clear_settings(monkeypatch)
    (workdir / "wait.sh").write_text(WAIT_SCRIPT)
    return workdir


# -- runs told to the observers, read back from the database --------------------------------------

RUN_ID = "20261206T080000000000Z-0a1b2c3d"  # the run record_run tells
START = datetime(2026, 12, 6, 8, tzinfo=UTC)  # when it and each of its nodes started


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, workdir: Path) -> str:
    """An empty database (and a working directory with none of wtflow's settings from the environment)."""
    if request.param == "sqlite":
        return f"sqlite:///{workdir / 'runs.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def database(database_url: str) -> Iterator[sqlalchemy.Engine]:
    engine = open_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """The directory of the run record_run tells, where run.json's writer puts it."""
    path = tmp_path / "artifacts" / RUN_ID
    path.mkdir(parents=True)
    return path


def record_run(
    url: str, run_dir: Path, workflow: Workflow, ends: Iterable[NodeFinished], finished_at: datetime
) -> None:
    """Run RUN_ID of ``workflow``, every node started at START and ended as ``ends`` say, the run succeeding at
    ``finished_at``: told to a database recorder at ``url`` and to run.json's writer, which must not warn."""
    recorder, run_file = DatabaseRecorder(url, retry=1), RunFileWriter()
    events = [
        RunStarted(RUN_ID, workflow, run_dir, START, "ci-1", os.getpid()),
        *(NodeStarted(RUN_ID, name, workflow.path(name), START) for name in workflow.nodes),
        *ends,
        RunFinished(RUN_ID, workflow.name, RunStatus.SUCCEEDED, 0, START, finished_at),
    ]

    async def tell() -> None:
        await recorder.aopen()
        try:
            for event in events:
                recorder.notify(event)
                run_file.notify(event)
        finally:
            await recorder.aclose()

    asyncio.run(tell())
    assert recorder.warnings() == []


def read_back(url: str, run_id: str = RUN_ID) -> RunRecord:
    """The run ``run_id`` as the history at ``url`` reads it back."""
    engine = open_history(url)
    try:
        return get_run(engine, run_id)
    finally:
        engine.dispose()
