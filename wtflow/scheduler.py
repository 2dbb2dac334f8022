"""The core of a run: start each node the moment what it waits for is done, and emit events.

The scheduler knows nothing of databases, consoles or logs: it calls ``emit`` with events and
an :class:`~wtflow.executors.base.Executor` to run nodes. Failure policy:

- a failed node (not ``continue_on_error``) stops the run: running nodes are cancelled and
  nodes not started are skipped, unless ``ignore_failure`` is set, in which case the run goes
  on as if the node had succeeded and still ends failed;
- a node with ``continue_on_error`` may fail without failing or stopping the run.
"""

from __future__ import annotations

import asyncio
import errno
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from wtflow.artifacts import ArtifactStore, open_files_advice
from wtflow.events import (
    ArtifactInfo,
    Event,
    NodeFinished,
    NodeOutput,
    NodeRetrying,
    NodeStarted,
    NodeStatus,
)
from wtflow.executors.base import Executor, Job, Outcome
from wtflow.graph import SELF, Vertex
from wtflow.masking import Masker
from wtflow.model import Artifact, Command, Node, PyFunc, Workflow, replace_artifacts


def now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


@dataclass
class NodeState:
    """What the scheduler knows of one node during a run."""

    node: Node
    path: str
    status: NodeStatus = NodeStatus.PENDING
    exit_code: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempt: int = 0
    error: str | None = None
    artifacts: tuple[ArtifactInfo, ...] = field(default=())


class Scheduler:
    """Runs one workflow once; ``run`` returns when every node has reached a final status."""

    def __init__(
        self,
        workflow: Workflow,
        *,
        run_id: str,
        run_dir: Path,
        store: ArtifactStore,
        executor: Executor,
        emit: Callable[[Event], None],
        max_parallel: int,
        ignore_failure: bool,
        kill_grace: float,
        environ: Mapping[str, str],
        masker: Masker | None = None,
    ) -> None:
        self.workflow = workflow
        self.run_id = run_id
        self.run_dir = run_dir
        self.store = store
        self._executor = executor
        self._emit = emit
        self._ignore_failure = ignore_failure
        self._kill_grace = kill_grace
        self._environ = dict(environ)  # a snapshot: os.environ decodes on every read
        self._masker = masker or Masker()
        self._slots = asyncio.Semaphore(max_parallel)
        self.states = {name: NodeState(node, workflow.path(name)) for name, node in workflow.nodes.items()}
        self._deps = workflow.dependencies
        self._remaining = {vertex: len(deps) for vertex, deps in self._deps.items()}
        self._dependents: dict[Vertex, list[Vertex]] = {vertex: [] for vertex in self._deps}
        for vertex, deps in self._deps.items():
            for dep in deps:
                self._dependents[dep].append(vertex)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._task_group: asyncio.TaskGroup | None = None
        self.stopping = False
        self.failed = False
        # What went wrong beside the nodes (declared files not kept), for the engine's caller.
        self.warnings: list[str] = []

    async def run(self) -> None:
        """Run every node that can run; on cancellation, stop them all and re-raise."""
        try:
            async with asyncio.TaskGroup() as task_group:
                self._task_group = task_group
                self._advance([vertex for vertex, count in self._remaining.items() if count == 0])
        finally:
            self._task_group = None
            self._finish_unreached()

    # -- the graph walk ---------------------------------------------------------------------

    def _advance(self, ready: list[Vertex]) -> None:
        """Act on vertices whose dependencies are done; a work queue, not recursion, for deep trees."""
        queue = deque(ready)
        while queue:
            name, kind = queue.popleft()
            state = self.states[name]
            if self.stopping:
                continue
            if kind == SELF and state.node.executable is not None:
                assert self._task_group is not None
                self._tasks[name] = self._task_group.create_task(self._run_node(state), name=f"wtflow node {name}")
                continue
            if kind == SELF:  # a group node: started the moment it is reached
                state.status = NodeStatus.RUNNING
                state.started_at = now()
                state.attempt = 1
                self._emit(NodeStarted(self.run_id, name, state.path, state.started_at))
            elif state.node.executable is None:
                self._close_group(state)
            queue.extend(self._done((name, kind)))

    def _done(self, vertex: Vertex) -> list[Vertex]:
        ready = []
        for dependent in self._dependents[vertex]:
            self._remaining[dependent] -= 1
            if self._remaining[dependent] == 0:
                ready.append(dependent)
        return ready

    def _close_group(self, state: NodeState) -> None:
        statuses = [self.states[child.name] for child in state.node.children]
        failed = any(child.status.is_failure and not child.node.continue_on_error for child in statuses)
        self._finish(state, NodeStatus.FAILED if failed else NodeStatus.SUCCEEDED)

    def _finish(self, state: NodeState, status: NodeStatus) -> None:
        state.status = status
        state.finished_at = now()
        self._emit(
            NodeFinished(
                self.run_id,
                state.node.name,
                state.path,
                status,
                state.exit_code,
                state.started_at,
                state.finished_at,
                state.attempt,
                self._masker.text(state.error) if state.error else None,
                state.artifacts,
            )
        )

    def _finish_unreached(self) -> None:
        """Give every node without a final status one: skipped, cancelled or (groups) from their children."""
        for state in reversed(self.states.values()):  # children before parents
            if state.status not in {NodeStatus.PENDING, NodeStatus.RUNNING}:
                continue
            if state.node.executable is None and state.started_at is not None:
                below = [self.states[node.name].status for node in state.node.walk() if node is not state.node]
                if any(status.is_failure for status in below):
                    self._finish(state, NodeStatus.FAILED)
                else:
                    self._finish(state, NodeStatus.CANCELLED)
            elif state.started_at is not None:
                self._finish(state, NodeStatus.CANCELLED)
            else:
                self._finish(state, NodeStatus.SKIPPED)

    def kill(self) -> None:
        """Stop running nodes at once: cancel them again, which cuts their grace period short."""
        self.stopping = True
        for task in self._tasks.values():
            task.cancel()

    def stop(self) -> None:
        """Stop the run: cancel running nodes, start no more."""
        if self.stopping:
            return
        self.stopping = True
        for task in self._tasks.values():
            if task is not asyncio.current_task():
                task.cancel()

    # -- one node ---------------------------------------------------------------------------

    async def _run_node(self, state: NodeState) -> None:
        try:
            async with self._slots:
                if self.stopping:
                    return
                try:
                    outcome = await self._attempts(state)
                except OSError as exc:  # the artifacts directory cannot be written, or no file opened
                    detail = open_files_advice(exc.errno) if exc.errno in {errno.EMFILE, errno.ENFILE} else exc
                    outcome = Outcome(exit_code=None, error=f"cannot store artifacts: {detail}")
        except asyncio.CancelledError:
            if state.started_at is not None and state.status is NodeStatus.RUNNING:
                state.artifacts = self.store.infos(state.node)
                self._finish(state, NodeStatus.CANCELLED)
            raise
        finally:
            self._tasks.pop(state.node.name, None)
        state.exit_code = outcome.exit_code
        state.error = outcome.error
        state.artifacts = self.store.infos(state.node)
        if outcome.timed_out:
            status = NodeStatus.TIMED_OUT
        elif outcome.succeeded:
            status = NodeStatus.SUCCEEDED
        else:
            status = NodeStatus.FAILED
        self._finish(state, status)
        if status.is_failure and not state.node.continue_on_error:
            self.failed = True
            if not self._ignore_failure:
                self.stop()
                return
        self._advance(self._done((state.node.name, SELF)))

    async def _attempts(self, state: NodeState) -> Outcome:
        node = state.node
        assert node.executable is not None
        retries = node.retries
        attempts = 1 + (retries.max if retries else 0)
        job = self._job(node, node.executable, self.store.node_dir(node.name))
        outcome = Outcome(exit_code=None)
        for attempt in range(1, attempts + 1):
            state.status = NodeStatus.RUNNING
            state.attempt = attempt
            if state.started_at is None:
                state.started_at = now()
            self._emit(NodeStarted(self.run_id, node.name, state.path, now(), attempt))
            outcome = await self._attempt(job, attempt)
            if outcome.succeeded or attempt == attempts:
                break
            assert retries is not None
            delay = retries.delay_before(attempt + 1)
            error = self._masker.text(outcome.error) if outcome.error else None
            self._emit(NodeRetrying(self.run_id, node.name, attempt, outcome.exit_code, delay, error))
            await asyncio.sleep(delay)
        # Whenever it ran, succeeded or not: a failed test shard's report is what the next node needs.
        for warning in await self.store.collect(node, job.cwd):
            self.warnings.append(self._masker.text(f"node {node.name!r}: {warning}"))
        return outcome

    async def _attempt(self, job: Job, attempt: int) -> Outcome:
        def forward(stream: str, lines: bytes) -> None:
            self._emit(NodeOutput(self.run_id, job.node, stream, lines))

        sink = self.store.output(job.node, attempt, forward)
        try:
            return await self._executor.execute(job, sink)
        finally:
            await sink.aclose()

    def _job(self, node: Node, executable: Command | PyFunc, node_dir: Path) -> Job:
        if isinstance(executable, PyFunc):
            executable = PyFunc(
                func=executable.func,
                args=replace_artifacts(executable.args, self._resolve),
                kwargs=replace_artifacts(executable.kwargs, self._resolve),
                timeout=executable.timeout,
                env=executable.env,
                cwd=executable.cwd,
            )
        declared = dict(self.workflow.env)
        declared.update(executable.env or {})
        declared["WTFLOW_RUN_ID"] = self.run_id
        declared["WTFLOW_NODE"] = node.name
        declared["WTFLOW_RUN_DIR"] = str(self.run_dir)
        # Markdown the node adds to the run's summary (GitHub's step summary), as $GITHUB_STEP_SUMMARY works for steps.
        declared["WTFLOW_STEP_SUMMARY"] = str(node_dir / "summary.md")
        env = {**self._environ, **declared}
        cwd = Path(executable.cwd) if executable.cwd is not None else None
        return Job(self.run_id, node.name, executable, env, cwd, node_dir, self._kill_grace, declared)

    def _resolve(self, ref: Artifact) -> Artifact:
        return ref.resolved(self.store.path(ref.node, ref.name), self.states[ref.node].exit_code)
