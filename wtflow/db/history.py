"""Reading run history back: opening the database, lists of runs, one run with its nodes, their artifacts and outputs.

A run is named as people type it (:func:`get_run`): its whole id
(``20261129T010212123456Z-1a2b3c4d``), a unique prefix of it, its random suffix or a unique
prefix of that (``1a2b``), ``latest`` (the newest run) or ``latest~N`` (the N-th run before the
newest, as git's ``HEAD~N``), each optionally among one workflow's runs only.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Select, func, or_, select
from sqlalchemy.exc import DBAPIError

from wtflow.db.connect import open_engine, unavailable
from wtflow.db.crashes import mark_crashed
from wtflow.db.schema import upgrade
from wtflow.db.tables import artifacts, node_outputs, node_runs, runs
from wtflow.errors import UsageError
from wtflow.events import ArtifactInfo, NodeStatus


@dataclass(frozen=True)
class NodeRecord:
    """One node's execution within a run, with its artifacts and its outputs (``key=value``, sorted by key).

    A node that did not run but took a result (``cached``, ``reused``) says where it came from
    (``reused_from``: a cache key, an earlier run's id) and the seconds that saved (``saved``).
    ``worker`` is the address of the cluster worker its last attempt ran on, if it ran on one.
    """

    name: str
    position: int
    path: str
    status: str
    exit_code: int | None
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    reused_from: str | None = None
    saved: float | None = None
    worker: str | None = None
    artifacts: list[ArtifactInfo] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        """Seconds from start to finish; ``None`` if the node did not start or finish."""
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def failed(self) -> bool:
        """Whether the node did not do its work (failed or timed out)."""
        return self.status in _FAILURES


_FAILURES = frozenset(status.value for status in NodeStatus if status.is_failure)


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
    workflow_dir: str | None = None  # the directory of its workflow's file
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
    engine: Engine,
    *,
    workflow: str | None = None,
    status: str | None = None,
    limit: int = 20,
    workflow_dir: str | None = None,
) -> list[RunRecord]:
    """The newest runs first, filtered by workflow and status (and the workflow's directory, see :func:`get_run`)."""
    query = _scope(workflow, workflow_dir).order_by(runs.c.started_at.desc(), runs.c.id.desc()).limit(limit)
    if status is not None:
        query = query.where(runs.c.status == status)
    with engine.connect() as connection:
        return [_run(row) for row in connection.execute(query)]


def get_run(engine: Engine, run_id: str, *, workflow: str | None = None, workflow_dir: str | None = None) -> RunRecord:
    """The run ``run_id`` names (see the module's docstring), with its nodes, their artifacts and outputs.

    ``workflow`` looks among that workflow's runs only; with ``workflow_dir``, among those whose
    workflow file was in that directory (or not recorded: runs from before wtflow kept it).
    :class:`UsageError` naming the candidates if ``run_id`` names no run, or several.
    """
    with engine.connect() as connection:
        run = _run(_find(connection, run_id, workflow, workflow_dir))
        run.nodes.extend(_nodes(connection, run.id))
    return run


# ``latest``, ``latest~``, ``latest~3``: the newest run, or the N-th before it (``latest~`` is ``latest~1``, as in git).
_LATEST = re.compile(r"latest(?:~(\d*))?")
# Candidates named in an "ambiguous" message.
_SHOWN_CANDIDATES = 5


def counts_back(run_id: str) -> bool:
    """Whether ``run_id`` names a run by counting back from the newest (``latest``, ``latest~N``), not by its id."""
    return _LATEST.fullmatch(run_id) is not None


def _scope(workflow: str | None, workflow_dir: str | None) -> Select[Any]:
    scope = select(runs)
    if workflow is not None:
        scope = scope.where(runs.c.workflow == workflow)
    if workflow_dir is not None:
        scope = scope.where(or_(runs.c.workflow_dir == workflow_dir, runs.c.workflow_dir.is_(None)))
    return scope


def _find(connection: Connection, run_id: str, workflow: str | None, workflow_dir: str | None = None) -> Any:
    scope = _scope(workflow, workflow_dir)
    newest_first = (runs.c.started_at.desc(), runs.c.id.desc())
    among = "" if workflow is None else f" of workflow {workflow!r}"
    if workflow_dir is not None:
        among += f" in {workflow_dir}"
    listing = "`wtflow runs list`" if workflow is None else f"`wtflow runs list --workflow {workflow}`"
    latest = _LATEST.fullmatch(run_id)
    if latest is not None:
        back = int(latest[1]) if latest[1] else int(latest[1] is not None)
        row = connection.execute(scope.order_by(*newest_first).offset(back).limit(1)).first()
        if row is None:
            count = _count(connection, scope)
            have = "no runs" if count == 0 else f"only {count} run{'s' if count > 1 else ''}"
            raise UsageError(f"no run {run_id!r}: there {'is' if count == 1 else 'are'} {have}{among}")
        return row
    row = connection.execute(scope.where(runs.c.id == run_id)).first()
    if row is not None:
        return row
    # A prefix of the id, or of its random suffix; ids are lower case but for their T and Z: any case will do.
    escaped = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    starts = or_(runs.c.id.ilike(f"{escaped}%", escape="\\"), runs.c.id.ilike(f"%-{escaped}%", escape="\\"))
    matches = connection.execute(scope.where(starts).order_by(*newest_first).limit(_SHOWN_CANDIDATES + 1)).all()
    if not matches:
        raise UsageError(f"no run {run_id!r}{among}; {listing} shows the runs")
    if len(matches) > 1:
        shown = ", ".join(f"{m.id} ({m.workflow})" for m in matches[:_SHOWN_CANDIDATES])
        more = ", ..." if len(matches) > _SHOWN_CANDIDATES else ""
        raise UsageError(f"run id {run_id!r} is ambiguous{among}: {shown}{more}")
    return matches[0]


def _count(connection: Connection, scope: Select[Any]) -> int:
    return int(connection.scalar(select(func.count()).select_from(scope.subquery())) or 0)


def _nodes(connection: Connection, run_id: str) -> list[NodeRecord]:
    stored: dict[str, list[ArtifactInfo]] = {}
    for row in connection.execute(select(artifacts).where(artifacts.c.run_id == run_id).order_by(artifacts.c.name)):
        stored.setdefault(row.node, []).append(ArtifactInfo(row.name, Path(row.path), row.size))
    written: dict[str, dict[str, str]] = {}
    # Sorted here, not by the database: PostgreSQL would order by its collation, SQLite by code point.
    for row in sorted(connection.execute(select(node_outputs).where(node_outputs.c.run_id == run_id)), key=_by_key):
        written.setdefault(row.node, {})[row.key] = row.value
    query = select(node_runs).where(node_runs.c.run_id == run_id).order_by(node_runs.c.position)
    return [
        NodeRecord(
            **{key: value for key, value in row._mapping.items() if key != "run_id"},
            artifacts=stored.get(row.name, []),
            outputs=written.get(row.name, {}),
        )
        for row in connection.execute(query)
    ]


def _by_key(row: Any) -> str:
    return str(row.key)


def node_record(run: RunRecord, node: str) -> NodeRecord:
    """Node ``node`` of ``run`` (:class:`UsageError` naming its nodes if it has none so named)."""
    for node_run in run.nodes:
        if node_run.name == node:
            return node_run
    names = ", ".join(n.name for n in run.nodes)
    raise UsageError(f"run {run.id} has no node {node!r}; its nodes: {names}")


def artifact_path(run: RunRecord, node: str, name: str) -> Path:
    """Where node ``node`` of ``run`` stored artifact ``name`` (a directory for declared files)."""
    node_run = node_record(run, node)
    for artifact in node_run.artifacts:
        if artifact.name == name:
            return artifact.path
    stored = ", ".join(a.name for a in node_run.artifacts) or "none"
    raise UsageError(
        f"node {node!r} of run {run.id} has no {name} artifact (status {node_run.status}); its artifacts: {stored}"
    )


def attempt_path(run: RunRecord, node: str, stream: str, attempt: int) -> Path:
    """The output ``stream`` (``stdout`` or ``stderr``) of attempt ``attempt`` of node ``node``.

    The last attempt's output is the stream's own file; a retried attempt's was kept beside it as
    ``stdout.attempt-N.log``.
    """
    node_run = node_record(run, node)
    if not 1 <= attempt <= node_run.attempts:
        if node_run.attempts == 0:
            ran = f"it did not run (status {node_run.status})"
        else:
            ran = f"its attempts: {', '.join(str(n) for n in range(1, node_run.attempts + 1))}"
        raise UsageError(f"node {node!r} of run {run.id} has no attempt {attempt}; {ran}")
    path = artifact_path(run, node, stream)
    return path if attempt == node_run.attempts else path.with_name(f"{path.stem}.attempt-{attempt}{path.suffix}")


def artifact_files(path: Path) -> list[str]:
    """The files (and links) of a declared file artifact stored at ``path``, relative to it, sorted.

    ``OSError`` if ``path`` is gone. A link is listed, not followed.
    """
    found: list[str] = []

    def fail(error: OSError) -> None:
        raise error

    for directory, subdirectories, files in os.walk(path, onerror=fail):
        base = Path(directory).relative_to(path)
        found.extend((base / name).as_posix() for name in files)
        found.extend((base / name).as_posix() for name in subdirectories if Path(directory, name).is_symlink())
    return sorted(found)


def failure_output(node: NodeRecord, count: int = 10) -> tuple[str, list[str]] | None:
    """Why a node that failed without an error text failed: the last lines of its stderr, else of its stdout.

    ``(stream, lines)``; ``None`` if the node stored no output; ``OSError`` if its files are gone.
    """
    # Here, not at the top: the database writer imports this module, and a run waits for it to start.
    from wtflow.artifacts import last_lines

    paths = {artifact.name: artifact.path for artifact in node.artifacts}
    for stream in ("stderr", "stdout"):
        path = paths.get(stream)
        if path is not None and (lines := last_lines(path, count)):
            return stream, lines
    return None
