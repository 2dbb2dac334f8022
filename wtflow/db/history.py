"""Reading run history back: opening the database, lists of runs, one run with its nodes, one node's artifact."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import DBAPIError

from wtflow.db.connect import open_engine, unavailable
from wtflow.db.crashes import mark_crashed
from wtflow.db.schema import upgrade
from wtflow.db.tables import artifacts, node_runs, runs
from wtflow.errors import UsageError
from wtflow.events import ArtifactInfo


@dataclass(frozen=True)
class NodeRecord:
    """One node's execution within a run, with its artifacts."""

    name: str
    position: int
    path: str
    status: str
    exit_code: int | None
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    artifacts: list[ArtifactInfo] = field(default_factory=list)


@dataclass(frozen=True)
class RunRecord:
    """One run; ``nodes`` is filled by :func:`get_run` (in the workflow's order), empty in lists."""

    id: str
    workflow: str
    status: str
    exit_code: int | None
    started_at: datetime
    finished_at: datetime | None
    host: str
    pid: int
    heartbeat_at: datetime | None
    error: str | None
    nodes: list[NodeRecord] = field(default_factory=list)


def open_history(url: str) -> Engine:
    """An engine for ``url`` with the schema created or migrated and runs whose owner died marked ``crashed``.

    Used by the database writer before a run and by ``wtflow runs``. :class:`BackendUnavailable`
    (naming ``url`` without its password) if the database cannot be reached; the engine is
    disposed of if anything fails. Blocking: call from a worker thread.
    """
    engine = open_engine(url)
    try:
        upgrade(engine)
        mark_crashed(engine)
    except DBAPIError as exc:
        engine.dispose()
        raise unavailable(url, exc.orig or exc) from None
    except BaseException:  # e.g. a revision this wtflow does not know
        engine.dispose()
        raise
    return engine


def _run(row: Any) -> RunRecord:
    return RunRecord(**row._mapping)


def list_runs(
    engine: Engine, *, workflow: str | None = None, status: str | None = None, limit: int = 20
) -> list[RunRecord]:
    """The newest runs first, filtered by workflow and status."""
    query = select(runs).order_by(runs.c.started_at.desc(), runs.c.id.desc()).limit(limit)
    if workflow is not None:
        query = query.where(runs.c.workflow == workflow)
    if status is not None:
        query = query.where(runs.c.status == status)
    with engine.connect() as connection:
        return [_run(row) for row in connection.execute(query)]


def get_run(engine: Engine, run_id: str) -> RunRecord:
    """The run ``run_id`` (or the only run whose id starts with it), with its nodes and artifacts."""
    with engine.connect() as connection:
        row = connection.execute(select(runs).where(runs.c.id == run_id)).first()
        if row is None:
            escaped = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            matches = connection.execute(select(runs).where(runs.c.id.like(f"{escaped}%", escape="\\")).limit(3)).all()
            if not matches:
                raise UsageError(f"no run {run_id!r}; `wtflow runs list` shows the runs")
            if len(matches) > 1:
                raise UsageError(f"run id {run_id!r} is ambiguous: {', '.join(m.id for m in matches)}, ...")
            row = matches[0]
        run = _run(row)
        run.nodes.extend(_nodes(connection, run.id))
    return run


def _nodes(connection: Connection, run_id: str) -> list[NodeRecord]:
    stored: dict[str, list[ArtifactInfo]] = {}
    for row in connection.execute(select(artifacts).where(artifacts.c.run_id == run_id).order_by(artifacts.c.name)):
        stored.setdefault(row.node, []).append(ArtifactInfo(row.name, Path(row.path), row.size))
    query = select(node_runs).where(node_runs.c.run_id == run_id).order_by(node_runs.c.position)
    return [
        NodeRecord(
            **{key: value for key, value in row._mapping.items() if key != "run_id"}, artifacts=stored.get(row.name, [])
        )
        for row in connection.execute(query)
    ]


def artifact_path(run: RunRecord, node: str, name: str) -> Path:
    """Where node ``node`` of ``run`` stored artifact ``name``."""
    for node_run in run.nodes:
        if node_run.name == node:
            for artifact in node_run.artifacts:
                if artifact.name == name:
                    return artifact.path
            raise UsageError(f"node {node!r} of run {run.id} has no {name} artifact (status {node_run.status})")
    names = ", ".join(n.name for n in run.nodes)
    raise UsageError(f"run {run.id} has no node {node!r}; its nodes: {names}")
