"""Helpers for running real workflows: an engine with artifacts in the test's directory."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import EventLog
from wtflow import Config, DatabaseConfig, Engine, Node, RunConfig, StorageConfig, Workflow


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
