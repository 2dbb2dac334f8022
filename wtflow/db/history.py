"""Reading run history back: lists of runs, one run with its nodes, one node's artifact."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, selectinload

from wtflow.db.tables import NodeRunRow, RunRow
from wtflow.errors import UsageError


def list_runs(
    engine: Engine, *, workflow: str | None = None, status: str | None = None, limit: int = 20
) -> list[RunRow]:
    """The newest runs first, filtered by workflow and status."""
    query = select(RunRow).order_by(RunRow.started_at.desc(), RunRow.id.desc()).limit(limit)
    if workflow is not None:
        query = query.where(RunRow.workflow == workflow)
    if status is not None:
        query = query.where(RunRow.status == status)
    with Session(engine) as session:
        return list(session.scalars(query))


def get_run(engine: Engine, run_id: str) -> RunRow:
    """The run ``run_id`` (or the only run whose id starts with it), with its nodes and artifacts."""
    query = select(RunRow).options(selectinload(RunRow.nodes).selectinload(NodeRunRow.artifacts))
    with Session(engine) as session:
        run = session.scalars(query.where(RunRow.id == run_id)).first()
        if run is not None:
            return run
        escaped = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        matches = list(session.scalars(query.where(RunRow.id.like(f"{escaped}%", escape="\\")).limit(3)))
    if not matches:
        raise UsageError(f"no run {run_id!r}; `wtflow runs list` shows the runs")
    if len(matches) > 1:
        raise UsageError(f"run id {run_id!r} is ambiguous: {', '.join(m.id for m in matches)}, ...")
    return matches[0]


def artifact_path(run: RunRow, node: str, name: str) -> Path:
    """Where node ``node`` of ``run`` stored artifact ``name``."""
    for node_run in run.nodes:
        if node_run.name == node:
            for artifact in node_run.artifacts:
                if artifact.name == name:
                    return Path(artifact.path)
            raise UsageError(f"node {node!r} of run {run.id} has no {name} artifact (status {node_run.status})")
    names = ", ".join(n.name for n in run.nodes)
    raise UsageError(f"run {run.id} has no node {node!r}; its nodes: {names}")
