"""``wtflow run --rerun-failed``: which nodes run again, and what the others take from the earlier run.

A node runs again when it did not succeed in the earlier run (it failed, timed out, was
cancelled or skipped, or never ended), when the earlier run did not have it, or when it waits
for such a node, directly or through others: its parent, in a sequential group the sibling
before it with everything below that sibling, what it needs, whose artifacts it reads (the
vertices of :mod:`wtflow.graph`). Every other node with an executable takes its result from
the earlier run instead of running (an :class:`~wtflow.reuse.Earlier`: it ends ``reused``);
groups run as always, for they only group.

:func:`plan` decides from the workflow and the earlier run's records alone; :func:`earlier_run`
reads that run from the run history, and :func:`check_stored` makes sure its files are still there.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from wtflow.errors import UsageError
from wtflow.events import NodeStatus, RunStatus
from wtflow.graph import SELF, Vertex
from wtflow.masking import MASK
from wtflow.model import RESULT, STDERR, STDOUT, Workflow
from wtflow.reuse import Earlier

if TYPE_CHECKING:  # the database modules load when a rerun reads the history
    from sqlalchemy import Engine

    from wtflow.db.history import NodeRecord, RunRecord

# How a node ended in the earlier run when its result may be taken: it did its work.
DONE = frozenset({NodeStatus.SUCCEEDED.value, NodeStatus.CACHED.value, NodeStatus.REUSED.value})
_STREAMS = (STDOUT, STDERR, RESULT)


@dataclass(frozen=True)
class Plan:
    """A rerun of ``run_id``: the nodes that run (groups among them) and, by name, what each other node takes."""

    run_id: str
    run: frozenset[str]
    reuse: Mapping[str, Earlier]


def plan(
    workflow: Workflow, nodes: Sequence[NodeRecord], run_id: str, *, force: bool = False, forced: Iterable[str] = ()
) -> Plan:
    """What rerunning the failed nodes of run ``run_id`` (its node records ``nodes``) runs, and what it reuses.

    ``force`` runs every node again, ``forced`` those named (and what waits for them), as
    ``--force`` does to cached nodes. A node whose outputs or result hold a masked secret
    (``***``) runs again too: the run kept only the masked text, not what the node made.
    """
    records = {record.name: record for record in nodes}
    takeable: dict[str, Earlier] = {}
    for name, node in workflow.nodes.items():
        record = records.get(name)
        if force or name in forced or node.executable is None or record is None or record.status not in DONE:
            continue
        taken = earlier(record, run_id)
        if taken is not None and not _masked(taken):
            takeable[name] = taken
    again = {name for name, node in workflow.nodes.items() if node.executable is not None and name not in takeable}
    run = waiting_for(workflow, again)
    reuse = {name: taken for name, taken in takeable.items() if name not in run}
    return Plan(run_id, frozenset(workflow.nodes.keys() - reuse.keys()), reuse)


def waiting_for(workflow: Workflow, names: Iterable[str]) -> set[str]:
    """``names`` and every node that waits for one of them, directly or through others."""
    dependents: dict[Vertex, list[Vertex]] = {vertex: [] for vertex in workflow.dependencies}
    for vertex, deps in workflow.dependencies.items():
        for dep in deps:
            dependents[dep].append(vertex)
    seen = {(name, SELF) for name in names}
    queue = deque(seen)
    while queue:
        for dependent in dependents[queue.popleft()]:
            if dependent not in seen:
                seen.add(dependent)
                queue.append(dependent)
    return {name for name, kind in seen if kind == SELF}


def earlier(record: NodeRecord, run_id: str) -> Earlier | None:
    """The result of node ``record`` of run ``run_id`` to take instead of running it; ``None`` if nothing locates it.

    Its files are found from where its artifacts were stored: a node that ran (or took a
    result) always stored its output streams.
    """
    node_dir = _node_dir(record)
    if node_dir is None:
        return None
    paths = {artifact.name: artifact.path for artifact in record.artifacts}
    # A node that took its result then saved what it took when it ran; one that ran saved its duration.
    saved = record.saved if record.status != NodeStatus.SUCCEEDED and record.saved is not None else record.duration
    return Earlier(
        NodeStatus.REUSED,
        run_id,
        stdout=paths.get(STDOUT),
        stderr=paths.get(STDERR),
        result=paths.get(RESULT),
        outputs=dict(record.outputs),
        saved=saved,
        files=node_dir / "files",
        replay=False,
    )


def _masked(taken: Earlier) -> bool:
    """Whether what ``taken`` gives later nodes (its outputs, its result) holds a masked secret."""
    if any(MASK.decode() in value for value in taken.outputs.values()):
        return True
    try:
        return taken.result is not None and MASK in taken.result.read_bytes()
    except OSError:  # gone: check_stored names it
        return False


def _node_dir(record: NodeRecord) -> Path | None:
    """The node's directory in its run: where its streams are, or above its declared files' ``files/<name>``."""
    for artifact in record.artifacts:
        if artifact.name in _STREAMS:
            return artifact.path.parent
    return record.artifacts[0].path.parent.parent if record.artifacts else None


def earlier_run(url: str | None, run_id: str, workflow: str, base_dir: Path | None = None) -> RunRecord:
    """The run ``run_id`` names among the run history at ``url``, which must be a run of ``workflow``.

    With ``base_dir`` (the directory of the workflow's file), a run of a workflow of the same
    name elsewhere (another project sharing the database) is another workflow's: only runs
    from there, or from before wtflow recorded it, count. :class:`UsageError` when there is no
    history, no such run, it is a run of another workflow, or it is still running; ``latest``
    and ``latest~N`` count this workflow's runs only.
    """
    if not url:
        raise UsageError("--rerun-failed reads the earlier run from the run history: set --db-url or WTFLOW_DB_URL")
    from wtflow.db.history import open_history
    from wtflow.db.messages import workflow_dir

    engine = open_history(url)  # runs whose owner died are marked crashed first: a running one is alive
    try:
        found = _find_run(engine, run_id, workflow, workflow_dir(base_dir))
    finally:
        engine.dispose()
    if found.status == RunStatus.RUNNING:
        raise UsageError(
            f"run {found.id} of workflow {workflow!r} is still running: rerun it once it has ended, "
            f"or name an earlier run (`wtflow runs list --workflow {workflow}`)"
        )
    return found


def _find_run(engine: Engine, run_id: str, workflow: str, workflow_dir: str | None) -> RunRecord:
    from wtflow.db.history import counts_back, get_run, list_runs

    if counts_back(run_id):  # among this workflow's runs, as `wtflow runs show --workflow` counts
        if run_id == "latest" and not list_runs(engine, workflow=workflow, workflow_dir=workflow_dir, limit=1):
            raise UsageError(
                f"no earlier run of workflow {workflow!r} in the run history: nothing failed to rerun; "
                "run it without --rerun-failed"
            )
        return get_run(engine, run_id, workflow=workflow, workflow_dir=workflow_dir)
    try:
        return get_run(engine, run_id, workflow=workflow, workflow_dir=workflow_dir)
    except UsageError:
        other = get_run(engine, run_id)  # unknown or ambiguous anywhere: that error, naming run_id
        if other.workflow == workflow:
            raise UsageError(
                f"run {other.id} is a run of workflow {workflow!r} in {other.workflow_dir}, not of the one in "
                f"{workflow_dir}: --rerun-failed reruns a run of the same workflow file"
            ) from None
        raise UsageError(
            f"run {other.id} is a run of workflow {other.workflow!r}, not of {workflow!r}: "
            "--rerun-failed reruns a run of the same workflow"
        ) from None


def check_stored(run: RunRecord, reused: Plan) -> None:
    """:class:`UsageError` naming what is gone of what the reused nodes take from ``run``: its directory, or a file."""
    for record in run.nodes:
        taken = reused.reuse.get(record.name)
        if taken is None or taken.files is None:
            continue
        run_dir = taken.files.parent.parent
        if not run_dir.is_dir():
            raise UsageError(
                f"the artifacts of run {run.id} are gone: {run_dir} does not exist; "
                "nothing can be reused, run the workflow without --rerun-failed"
            )
        for artifact in record.artifacts:
            if not artifact.path.exists():
                raise UsageError(
                    f"node {record.name!r} of run {run.id} cannot be reused: its {artifact.name} artifact "
                    f"{artifact.path} is gone; run the workflow without --rerun-failed"
                )
