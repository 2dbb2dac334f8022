"""A large run: 2,000 nodes, 64 at a time, every byte of output kept and every row recorded."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from wtflow import Command, Config, DatabaseConfig, Engine, Node, RunConfig, StorageConfig, Workflow
from wtflow.db.connect import normalise_url
from wtflow.db.tables import artifacts, node_runs, runs

NODES = 2000
pytestmark = pytest.mark.slow


def size_of(index: int) -> int:
    return 1000 + (index * 7919) % 50_000  # varied sizes, up to ~50 KB


def test_two_thousand_nodes_keep_every_byte_and_row(tmp_path: Path) -> None:
    nodes = [
        Node(f"n{i}", executable=Command(f"head -c {size_of(i)} /dev/zero; head -c {i} /dev/zero >&2"))
        for i in range(NODES)
    ]
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    config = Config(db=DatabaseConfig(url), storage=StorageConfig(tmp_path / "arts"), run=RunConfig(max_parallel=64))
    engine = Engine(Workflow("scale", Node("root", parallel=True, children=nodes)), config, observers=[])
    assert asyncio.run(engine.run_async()) == 0
    assert engine.result is not None
    for i in range(NODES):
        stored = engine.result[f"n{i}"].artifacts
        assert stored["stdout"].path.stat().st_size == size_of(i)  # type: ignore[union-attr]
        assert stored["stderr"].path.stat().st_size == i  # type: ignore[union-attr]
    db = create_engine(normalise_url(url))
    try:
        with db.connect() as session:
            assert session.scalars(select(runs.c.status)).all() == ["succeeded"]
            assert session.scalar(select(func.count()).select_from(node_runs)) == NODES + 1
            assert session.scalar(select(func.count()).where(node_runs.c.status != "succeeded")) == 0
            sizes = dict(
                session.execute(select(artifacts.c.node, artifacts.c.size).where(artifacts.c.name == "stdout")).all()
            )
            assert sizes == {f"n{i}": size_of(i) for i in range(NODES)}
    finally:
        db.dispose()
