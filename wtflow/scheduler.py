"""The core of a run: start each node the moment what it waits for is done, and emit events.

The scheduler knows nothing of databases, consoles or logs: it calls ``emit`` with events and
an :class:`~wtflow.executors.base.Executor` to run nodes. When what a node waits for is done,
its condition decides whether it runs (:mod:`wtflow.conditions`); without one it runs only if
all of that succeeded, and otherwise ends ``skipped``. Failure policy:

- a failed node (not ``continue_on_error``) counts; once more than ``max_fail`` nodes failed
  the run stops: running nodes are cancelled, and nodes not started run only if their
  condition says so (``always()``, ``cancelled()``); ``ignore_failure`` never stops the run and
  lets the nodes after a failed one run as if it had succeeded (the run still fails);
- an expansion of a matrix with ``fail_fast`` cancels the other expansions when it fails;
  without, they go on and the matrix's failures count when it ends;
- a node with ``continue_on_error`` may fail without failing or stopping the run;
- a node that takes an earlier run's result (``reuse``) is taken after the run stopped too, if
  it would have been without the stop, even in a group the stop skipped (whose other nodes stay
  skipped): taking it is not work, and a run that dropped it would have the next
  ``--rerun-failed`` run it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import errno
import json
import shutil
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import aiofiles

from wtflow import conditions, expressions, outputs, substitute
from wtflow.artifacts import NODE_TEXT_FILES, ArtifactStore, open_files_advice
from wtflow.errors import WorkflowError
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
from wtflow.graph import SELF, TREE, Vertex
from wtflow.masking import Masker
from wtflow.model import RESULT, STDERR, STDOUT, Artifact, Command, Node, PyFunc, Workflow, replace_artifacts
from wtflow.output import close_files

if TYPE_CHECKING:  # types only: the cache's modules load when a run has cached nodes
    from wtflow.reuse import Earlier, NodeCache

CHUNK = 1 << 20  # replayed output is read this much at a time, never whole


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
    outputs: dict[str, str] = field(default_factory=dict)
    # Something it waits for failed, directly or through nodes skipped for it: failure() holds.
    upstream_failed: bool = False
    # How it and every node below it ended (conditions.SUCCESS...), once they all have.
    tree: str | None = None
    key: str | None = None  # its cache key, once known
    earlier: Earlier | None = None  # the result it took instead of running, if it did
    worker: str | None = None  # the cluster worker its last attempt ran on, if not this machine


class _Needs(Mapping[str, Any]):
    """The ``needs`` context: each finished node's ``result`` and ``outputs``, read when asked."""

    def __init__(self, states: Mapping[str, NodeState]) -> None:
        self._states = states

    def __getitem__(self, name: str) -> Any:
        state = self._states[name]
        if state.status in {NodeStatus.PENDING, NodeStatus.RUNNING}:
            raise KeyError(name)
        return {"result": conditions.result(state.status), "outputs": state.outputs}

    def __iter__(self) -> Iterator[str]:
        return (name for name, state in self._states.items() if state.finished_at is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


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
        max_fail: int = 0,
        variables: Mapping[str, Any] | None = None,
        cache: NodeCache | None = None,
        reuse: Mapping[str, Earlier] | None = None,
    ) -> None:
        self.workflow = workflow
        self.run_id = run_id
        self.run_dir = run_dir
        self.store = store
        self._executor = executor
        self._emit = emit
        self._ignore_failure = ignore_failure
        self._max_fail = max_fail
        self._kill_grace = kill_grace
        self._environ = dict(environ)  # a snapshot: os.environ decodes on every read
        self._masker = masker or Masker()
        self._vars = dict(variables if variables is not None else workflow.vars)
        self._cache = cache
        self._reuse = dict(reuse or {})
        # The groups holding reused nodes, and of those the ones skipped only because the run stopped:
        # the reused nodes in them are still taken.
        self._holding_reused = {above for name in self._reuse for above in workflow.ancestors(name)}
        self._skipped_by_stop: set[str] = set()
        self._slots = asyncio.Semaphore(max_parallel)
        self.states = {name: NodeState(node, workflow.path(name)) for name, node in workflow.nodes.items()}
        self._needs = _Needs(self.states)
        self._deps = workflow.dependencies
        self._remaining = {vertex: len(deps) for vertex, deps in self._deps.items()}
        self._dependents: dict[Vertex, list[Vertex]] = {vertex: [] for vertex in self._deps}
        for vertex, deps in self._deps.items():
            for dep in deps:
                self._dependents[dep].append(vertex)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._task_group: asyncio.TaskGroup | None = None
        self._run_task: asyncio.Task[Any] | None = None
        self._matrix_slots = {
            node.name: asyncio.Semaphore(node.matrix.max_parallel)
            for node in workflow.nodes.values()
            if node.matrix is not None and node.matrix.max_parallel is not None
        }
        self._stopped_matrices: set[str] = set()
        self._failures = 0
        self.stopping = False
        self.interrupted = False
        self.killed = False
        self.failed = False
        # What went wrong beside the nodes (declared files not kept), for the engine's caller.
        self.warnings: list[str] = []

    async def run(self) -> None:
        """Run every node that can run; on cancellation, stop them all and re-raise."""
        self._run_task = asyncio.current_task()
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
            if kind == TREE:
                self._close_tree(state)
            elif not self._decide(state):
                self._finish(state, NodeStatus.SKIPPED if state.error is None else NodeStatus.FAILED)
                if state.error is not None:
                    self._failed(state)
                elif name in self._holding_reused and self._decide(state, ignore_stop=True):
                    self._skipped_by_stop.add(name)
            elif state.node.executable is not None:
                assert self._task_group is not None
                self._tasks[name] = self._task_group.create_task(self._run_node(state), name=f"wtflow node {name}")
                continue
            else:  # a group node: started the moment it is reached
                state.status = NodeStatus.RUNNING
                state.started_at = now()
                state.attempt = 1
                self._emit(NodeStarted(self.run_id, name, state.path, state.started_at))
            queue.extend(self._done((name, kind)))

    def _done(self, vertex: Vertex) -> list[Vertex]:
        ready = []
        for dependent in self._dependents[vertex]:
            self._remaining[dependent] -= 1
            if self._remaining[dependent] == 0:
                ready.append(dependent)
        return ready

    def _close_tree(self, state: NodeState) -> None:
        """Everything below the node finished: a group ends by its children; the subtree's result is known."""
        below = [self.states[child.name].tree or conditions.SKIPPED for child in state.node.children]
        if state.node.executable is None and state.status is NodeStatus.RUNNING:
            self._finish(state, conditions.group_status(below))
            if state.node.matrix is not None and not state.node.matrix.fail_fast:
                failed = sum(1 for child in state.node.children if self.states[child.name].status.is_failure)
                self._count_failures(failed)  # counted only now: the other expansions went on
        own = conditions.effective(state.status, allowed_to_fail=state.node.continue_on_error)
        state.tree = conditions.worst(own, below)

    def _decide(self, state: NodeState, *, ignore_stop: bool = False) -> bool:
        """Whether the node runs, now that what it waits for is done (``state.error`` if its condition fails).

        ``ignore_stop``: whether it would if the run had not stopped.
        """
        node = state.node
        parent = self.workflow.parents[node.name]
        if parent is not None and self.states[parent.name].status is NodeStatus.SKIPPED:
            reached = parent.name in self._skipped_by_stop and (
                node.name in self._reuse or node.name in self._holding_reused
            )
            if not reached:
                state.upstream_failed = self.states[parent.name].upstream_failed
                return False  # a skipped node's whole subtree is skipped, but for what it takes from a rerun's run
        if self.killed:
            return False
        if node.matrix is not None and node.executable is None:  # a matrix runs if any expansion would
            return any(self._holds(self.states[child.name], ignore_stop=ignore_stop) for child in node.children)
        if node.name in self._reuse and not ignore_stop and (self.stopping or self._matrix_stopped(state)):
            # Taken if it would be either way: what it takes was made, and taking it is not work.
            return self._holds(state) or self._holds(state, ignore_stop=True)
        return self._holds(state, ignore_stop=ignore_stop)

    def _holds(self, state: NodeState, *, ignore_stop: bool = False) -> bool:
        """The node's condition, with the status functions seen from what it waits for (as if not stopped, if asked)."""
        node = state.node
        # An expansion sees what its matrix waits for; the matrix's parent is the one that started it.
        gate = self.workflow.parents[node.name] if node.matrix_values is not None else node
        assert gate is not None
        parent = self.workflow.parents[gate.name]
        succeeded = True
        failed = parent is not None and self.states[parent.name].upstream_failed
        for dep_name, kind in self._deps[(gate.name, SELF)]:
            dep = self.states[dep_name]
            if kind == SELF and dep.node.executable is None:
                continue  # a group's start: it only brought this node into the run
            if kind == SELF:
                seen = conditions.effective(dep.status, allowed_to_fail=dep.node.continue_on_error)
            else:
                seen = dep.tree or conditions.SKIPPED
            if seen == conditions.FAILURE and self._ignore_failure:
                seen = conditions.SUCCESS
                failed = True
            succeeded = succeeded and seen == conditions.SUCCESS
            failed = failed or seen == conditions.FAILURE or (seen == conditions.SKIPPED and dep.upstream_failed)
        stopped = not ignore_stop and (self.stopping or (gate is not node and gate.name in self._stopped_matrices))
        state.upstream_failed = failed
        status = {"success": succeeded and not stopped, "failure": failed, "cancelled": stopped}
        if node.condition is None:
            return status["success"]
        try:
            expression = expressions.parse_condition(node.condition)
            return expressions.truthy(expression.evaluate(self._contexts(state, self._env(state)), status))
        except (expressions.ExpressionError, WorkflowError) as exc:
            state.error = f"if: {getattr(exc, 'message', exc)}"
            return False

    def _contexts(self, state: NodeState, env: Mapping[str, str] | None) -> dict[str, Any]:
        node = state.node
        contexts: dict[str, Any] = {
            "vars": self._vars,
            "matrix": dict(node.matrix_values or {}),
            "needs": self._needs,
            "wtflow": {
                "run_id": self.run_id,
                "workflow": self.workflow.name,
                "node": node.name,
                "run_dir": str(self.run_dir),
            },
        }
        if env is not None:
            contexts["env"] = env
        return contexts

    def _env(self, state: NodeState) -> dict[str, str]:
        """The environment the workflow and the node declare, with their expressions substituted."""
        declared = dict(self.workflow.env)
        if state.node.executable is not None:
            declared.update(state.node.executable.env or {})
        return substitute.environment(declared, self._contexts(state, None))

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
                {key: self._masker.text(value) for key, value in state.outputs.items()},
                state.earlier.source if state.earlier is not None else None,
                state.earlier.saved if state.earlier is not None else None,
                worker=state.worker,
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

    # -- failure policy and stopping ----------------------------------------------------------

    def _failed(self, state: NodeState) -> None:
        """A node failed (and may not): count it, stop what the policy says to stop."""
        self.failed = True
        node = state.node
        matrix = self.workflow.parents[node.name] if node.matrix_values is not None else None
        if matrix is not None and matrix.matrix is not None:
            if not matrix.matrix.fail_fast:
                return  # the others go on; counted when the matrix ends
            self._stopped_matrices.add(matrix.name)
            self._cancel(child.name for child in matrix.children if child.name not in self._reuse)
        self._count_failures(1)

    def _count_failures(self, count: int) -> None:
        if not count:
            return
        self.failed = True
        self._failures += count
        if self._failures > self._max_fail and not self._ignore_failure:
            self.stop()

    def _cancel(self, names: Iterator[str] | list[str]) -> None:
        current = asyncio.current_task()
        for name in names:
            task = self._tasks.get(name)
            if task is not None and task is not current:
                task.cancel()

    def stop(self) -> None:
        """Stop the run: cancel running nodes; start only those whose condition asks to run even so."""
        if self.stopping:
            return
        self.stopping = True
        self._cancel(
            [name for name in self._tasks if name not in self._reuse and not _survives_stop(self.states[name].node)]
        )

    def interrupt(self) -> None:
        """Stop the run for a signal: as :meth:`stop`, and nodes still started get the kill grace as their limit."""
        self.interrupted = True
        self.stop()
        self._cancel(list(self._tasks))

    def kill(self) -> None:
        """Stop running nodes at once: cancel them again, which cuts their grace period short; start none."""
        self.stopping = self.killed = True
        self._cancel(list(self._tasks))

    # -- one node ---------------------------------------------------------------------------

    async def _run_node(self, state: NodeState) -> None:
        name = state.node.name
        try:
            outcome = await self._run_in_slot(state)
        except asyncio.CancelledError:
            if state.status is NodeStatus.RUNNING:
                state.artifacts = self.store.infos(state.node)
                self._finish(state, NodeStatus.CANCELLED)
            elif state.finished_at is None:
                self._finish(state, NodeStatus.SKIPPED)
            if self._run_task is not None and self._run_task.cancelling():
                raise  # the whole run is being cancelled: nothing more starts
            self._advance(self._done((name, SELF)))
            return
        finally:
            self._tasks.pop(name, None)
        if outcome is not None:
            state.exit_code = outcome.exit_code
            state.error = outcome.error
            state.worker = outcome.worker
            state.artifacts = self.store.infos(state.node)
            if state.earlier is not None:
                status = state.earlier.status
            elif outcome.timed_out:
                status = NodeStatus.TIMED_OUT
            elif outcome.succeeded:
                status = NodeStatus.SUCCEEDED
            else:
                status = NodeStatus.FAILED
            self._finish(state, status)
            if status.is_failure and not state.node.continue_on_error:
                self._failed(state)
        self._advance(self._done((name, SELF)))

    async def _run_in_slot(self, state: NodeState) -> Outcome | None:
        """The node's outcome once it ran; ``None`` when the run stopped while it waited and it no longer runs.

        A node that may take an earlier result is checked before it waits for a place among the
        running nodes: a hit starts no process, so it takes none.
        """
        async with contextlib.AsyncExitStack() as slot:
            if not self._may_take_earlier(state.node):
                await slot.enter_async_context(self._slot(state))
            if not self._may_start(state):
                return None
            try:
                return await self._attempts(state, slot)
            except OSError as exc:  # the artifacts directory cannot be written, or no file opened
                detail = open_files_advice(exc.errno) if exc.errno in {errno.EMFILE, errno.ENFILE} else exc
                return Outcome(exit_code=None, error=f"cannot store artifacts: {detail}")
            except WorkflowError as exc:  # an expression could not be substituted
                return Outcome(exit_code=None, error=exc.message)

    def _may_start(self, state: NodeState) -> bool:
        """Whether the node still starts now; if the run (or its matrix) stopped meanwhile it ends skipped."""
        if (self.stopping or self._matrix_stopped(state)) and not self._decide(state):
            self._finish(state, NodeStatus.SKIPPED)
            return False
        return True

    def _may_take_earlier(self, node: Node) -> bool:
        return node.name in self._reuse or (self._cache is not None and node.cached)

    def _matrix_stopped(self, state: NodeState) -> bool:
        parent = self.workflow.parents[state.node.name]
        return state.node.matrix_values is not None and parent is not None and parent.name in self._stopped_matrices

    @contextlib.asynccontextmanager
    async def _slot(self, state: NodeState) -> AsyncIterator[None]:
        """A place among the nodes running at once (and among its matrix's expansions, if that is bounded)."""
        parent = self.workflow.parents[state.node.name]
        bounded = self._matrix_slots.get(parent.name) if parent is not None and state.node.matrix_values else None
        async with contextlib.AsyncExitStack() as stack:
            if bounded is not None:
                await stack.enter_async_context(bounded)
            await stack.enter_async_context(self._slots)
            yield

    async def _attempts(self, state: NodeState, slot: contextlib.AsyncExitStack) -> Outcome | None:
        """Run the node, or take an earlier result; ``None`` when the run stopped while it waited for a place.

        Its place among the running nodes (``_slot``) is entered into ``slot`` here, unless it is already.
        """
        node = state.node
        assert node.executable is not None
        retries = node.retries
        attempts = 1 + (retries.max if retries else 0)
        node_dir = self.store.node_dir(node.name)
        outcome = Outcome(exit_code=None)
        state.attempt = 1
        checked_at = now()
        try:
            job = self._job(state, node.executable, node_dir)
            earlier, files = await self._earlier(state, job)
        except Exception:  # an expression could not be substituted: the node started, and fails
            self._start(state, checked_at, None)
            raise
        if earlier is None and self._may_take_earlier(node):  # a miss runs: now it needs a place
            await slot.enter_async_context(self._slot(state))
            if not self._may_start(state):
                return None
            checked_at = now()
        self._start(state, checked_at, None if earlier is None or isinstance(earlier, Outcome) else str(earlier.status))
        if isinstance(earlier, Outcome):
            return earlier  # a source file could not be read
        if earlier is not None:
            return await self._take(state, job, earlier, files)
        outputs_file = node_dir / "outputs"
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                state.status = NodeStatus.RUNNING
                state.attempt = attempt
                self._emit(NodeStarted(self.run_id, node.name, state.path, now(), attempt))
            with contextlib.suppress(FileNotFoundError):
                outputs_file.unlink()  # an earlier attempt's outputs are not this one's
            outcome = await self._attempt(job, attempt)
            if outcome.succeeded or attempt == attempts:
                break
            assert retries is not None
            delay = retries.delay_before(attempt + 1)
            error = self._masker.text(outcome.error) if outcome.error else None
            self._emit(NodeRetrying(self.run_id, node.name, attempt, outcome.exit_code, delay, error))
            await asyncio.sleep(delay)
        state.outputs, problems = outputs.read(outputs_file)
        if isinstance(node.executable, PyFunc) and outcome.succeeded:
            state.outputs.update(outputs.from_result(self.store.path(node.name, RESULT)))
        # Whenever it ran, succeeded or not: a failed test shard's report is what the next node needs.
        problems += await self.store.collect(node, job.cwd)
        if outcome.succeeded and state.key is not None and self._cache is not None:
            problems += await self._fill(state, job)
        self.warnings += [self._masker.text(f"node {node.name!r}: {problem}") for problem in problems]
        return outcome

    def _start(self, state: NodeState, at: datetime, replaying: str | None) -> None:
        """The node started at ``at`` (its first attempt), replaying an earlier result or not."""
        state.status = NodeStatus.RUNNING
        state.started_at = at
        self._emit(NodeStarted(self.run_id, state.node.name, state.path, at, 1, replaying))

    # -- what need not run --------------------------------------------------------------------

    async def _earlier(self, state: NodeState, job: Job) -> tuple[Earlier | Outcome | None, list[BinaryIO] | None]:
        """What to take instead of running the node (an earlier run's result, or a cache hit), and a hit's files.

        A cache check that failed (a source that cannot be read) is the node's failed outcome.
        """
        node = state.node
        if node.name in self._reuse:
            return self._reuse[node.name], None
        if self._cache is None or not node.cached:
            return None, None
        try:
            return await self._check_cache(state, job, self._cache)
        except (OSError, ValueError) as exc:  # a source file that cannot be read, a bad pattern
            if isinstance(exc, OSError) and exc.errno in {errno.EMFILE, errno.ENFILE}:
                return Outcome(exit_code=None, error=f"cannot check the cache: {open_files_advice(exc.errno)}"), None
            return Outcome(exit_code=None, error=f"{exc.strerror if isinstance(exc, OSError) else exc}"), None

    async def _check_cache(
        self, state: NodeState, job: Job, cache: NodeCache
    ) -> tuple[Earlier | None, list[BinaryIO] | None]:
        """The node's cache hit and its files, or ``None``; the node's key is set on ``state``.

        Checked here on the loop when its files are as they were when last read, or small
        (stats, small files, a manifest and small streams cost less than a thread's hand-off and
        its hold on the interpreter); else in a thread, which reads large files that changed and
        restores what is missing.
        The files are this run's output files of the node, made in that thread (``None`` if they
        were not: they are made later, and a failure to make them reported there).
        """
        node = state.node
        upstream, read = self._key_inputs(state)
        result = self.store.path(node.name, RESULT) if isinstance(node.executable, PyFunc) else None
        from wtflow.cache import MustRead  # loaded with the cache: only runs with cached nodes get here

        known_key = None
        try:
            state.key, earlier = cache.check(
                job, node, upstream, base=self.workflow.base_dir, read=read, result=result, quick=True
            )
        except MustRead as exc:
            known_key = exc.key  # a large file must be read, or a file written: in a thread, below
        else:
            return earlier, None

        def check() -> tuple[str, Earlier | None, list[BinaryIO] | None]:
            key, earlier = cache.check(
                job, node, upstream, base=self.workflow.base_dir, read=read, result=result, key=known_key
            )
            files = None
            if earlier is not None:
                with contextlib.suppress(OSError):
                    files = self.store.open_output(node.name)
            return key, earlier, files

        # A future, not a task: the end of the run cancels tasks left over, and a cancelled check
        # would never close the files its thread opened.
        checking = asyncio.get_running_loop().run_in_executor(None, contextvars.copy_context().run, check)
        try:
            state.key, earlier, files = await asyncio.shield(checking)
        except asyncio.CancelledError:
            checking.add_done_callback(_close_checked)
            raise
        return earlier, files

    def _key_inputs(self, state: NodeState) -> tuple[list[str], list[Path]]:
        """What the node's key is made of besides its own definition: what it waits for, and files it reads."""
        # An artifact of a node without a key counts by its content: nothing else says what it holds.
        read = [self.store.path(ref.node, ref.name) for ref in state.node.reads() if self.states[ref.node].key is None]
        return self._upstream(state), read

    def _upstream(self, state: NodeState) -> list[str]:
        """What the node waits for, for its key: each node's key (or outputs, if it has none) and result."""
        node = state.node
        gate = self.workflow.parents[node.name] if node.matrix_values is not None else None
        vertices = set(self._deps[(node.name, SELF)]) | (set(self._deps[(gate.name, SELF)]) if gate else set())
        found = []
        for dep_name, kind in sorted(vertices):
            for member in [self.states[dep_name].node] if kind == SELF else self.states[dep_name].node.walk():
                if member.executable is None:
                    continue
                dep = self.states[member.name]
                made = dep.key or json.dumps(dep.outputs, sort_keys=True)
                if dep.earlier is not None and dep.earlier.status is NodeStatus.REUSED:
                    # Its key (if it had one) is not known here: it counts as the run it came from,
                    # so nothing below it hits an entry that another version of it filled.
                    made = f"reused from {dep.earlier.source}"
                found.append(f"{member.name}={made}:{conditions.result(dep.status)}")
        return found

    async def _take(self, state: NodeState, job: Job, earlier: Earlier, files: list[BinaryIO] | None) -> Outcome:
        """End the node with ``earlier``'s result: its output replayed into this run's artifacts, its files back.

        ``files`` are its output files if already made.
        """
        node = state.node

        def forward(stream: str, lines: bytes) -> None:
            if earlier.replay:
                self._emit(NodeOutput(self.run_id, node.name, stream, lines, replayed=True))

        try:
            empty = _empty_cached_streams(earlier) if files is None else None
            if empty is not None and self.store.link_streams(node.name, empty):
                return await self._took(state, job, earlier)
            sink = self.store.output(node.name, 1, forward, files)
            try:
                for stream, path in ((STDOUT, earlier.stdout), (STDERR, earlier.stderr)):
                    if stream in earlier.data:
                        if earlier.data[stream]:
                            await sink.write(stream, earlier.data[stream])
                    elif stream in earlier.opened:  # a large stream of a hit: from the file opened at the check
                        handle = earlier.opened[stream]
                        while chunk := await asyncio.to_thread(handle.read, CHUNK):
                            await sink.write(stream, chunk)
                    elif path is not None:
                        async with aiofiles.open(path, "rb") as source:
                            while chunk := await source.read(CHUNK):
                                await sink.write(stream, chunk)
            finally:
                await sink.aclose()
        finally:
            earlier.close_opened()
        return await self._took(state, job, earlier)

    async def _took(self, state: NodeState, job: Job, earlier: Earlier) -> Outcome:
        """The rest of taking ``earlier`` once its streams are in place: its result, files and outputs."""
        node = state.node
        if earlier.result is not None or earlier.files is not None:
            await asyncio.to_thread(self._copy_earlier, node, earlier)
        if earlier.files is None:  # files restored into the working directory: kept as on a run
            warnings = await self.store.collect(node, job.cwd)
            self.warnings += [self._masker.text(f"node {node.name!r}: {warning}") for warning in warnings]
        state.outputs = dict(earlier.outputs)
        state.earlier = earlier
        return Outcome(exit_code=0)

    def _copy_earlier(self, node: Node, earlier: Earlier) -> None:
        node_dir = self.store.node_dir(node.name)
        if earlier.result is not None:
            shutil.copyfile(earlier.result, self.store.path(node.name, RESULT))
        if earlier.files is None:
            return
        if earlier.files.is_dir():
            shutil.copytree(earlier.files, node_dir / "files", dirs_exist_ok=True)
        for name in NODE_TEXT_FILES:  # what it wrote beside its streams: its outputs, its step summary
            with contextlib.suppress(FileNotFoundError):
                shutil.copyfile(earlier.files.parent / name, node_dir / name)

    async def _fill(self, state: NodeState, job: Job) -> list[str]:
        """Keep the node's result under its key; why it could not be kept, as warnings.

        Not kept when its key has changed since it was checked: a source edited while the node
        ran may or may not be what it read, and the result must not answer for either version.
        """
        node = state.node
        cache = self._cache
        key = state.key
        assert cache is not None
        assert key is not None
        assert state.started_at is not None
        result = self.store.path(node.name, RESULT) if isinstance(node.executable, PyFunc) else None
        upstream, read = self._key_inputs(state)
        duration = (now() - state.started_at).total_seconds()

        def fill() -> list[str]:
            if cache.key(job, node, upstream, base=self.workflow.base_dir, read=read) != key:
                return ["not kept in the cache: its sources changed while it ran; the next run runs it again"]
            return cache.fill(
                key,
                node=node.name,
                streams=(self.store.path(node.name, STDOUT), self.store.path(node.name, STDERR)),
                result=result,
                outputs=state.outputs,
                cwd=job.cwd or Path.cwd(),
                patterns=node.outputs,
                duration=duration,
            )

        try:
            return await asyncio.to_thread(fill)
        except (OSError, ValueError) as exc:
            return [f"not kept in the cache: {exc}"]

    async def _attempt(self, job: Job, attempt: int) -> Outcome:
        def forward(stream: str, lines: bytes) -> None:
            self._emit(NodeOutput(self.run_id, job.node, stream, lines))

        sink = self.store.output(job.node, attempt, forward)
        try:
            return await self._executor.execute(job, sink)
        finally:
            await sink.aclose()

    def _job(self, state: NodeState, executable: Command | PyFunc, node_dir: Path) -> Job:
        node = state.node
        env = self._env(state)
        executable = substitute.executable(
            dataclasses.replace(executable, env=env), self._contexts(state, env), base_dir=self.workflow.base_dir
        )
        if isinstance(executable, PyFunc):
            executable = dataclasses.replace(
                executable,
                args=replace_artifacts(executable.args, self._resolve),
                kwargs=replace_artifacts(executable.kwargs, self._resolve),
            )
        declared = dict(env)
        declared["WTFLOW_RUN_ID"] = self.run_id
        declared["WTFLOW_NODE"] = node.name
        declared["WTFLOW_RUN_DIR"] = str(self.run_dir)
        # Markdown the node adds to the run's summary (GitHub's step summary), as $GITHUB_STEP_SUMMARY works for steps.
        declared["WTFLOW_STEP_SUMMARY"] = str(node_dir / "summary.md")
        # key=value lines later nodes read as needs.<node>.outputs.<key>, as $GITHUB_OUTPUT works for steps.
        declared["WTFLOW_OUTPUT"] = str(node_dir / "outputs")
        full = {**self._environ, **declared}
        cwd = Path(executable.cwd) if executable.cwd is not None else None
        timeout = executable.timeout if isinstance(executable.timeout, int | float) else None
        if self.interrupted:  # started after a signal (always(), cancelled()): the kill grace is its limit
            timeout = min(timeout or self._kill_grace, self._kill_grace)
        return Job(
            self.run_id,
            node.name,
            executable,
            full,
            cwd,
            node_dir,
            self._kill_grace,
            declared,
            timeout,
            runs_on=node.runs_on,
            resources=node.resources or {},
        )

    def _resolve(self, ref: Artifact) -> Artifact:
        return ref.resolved(self.store.path(ref.node, ref.name), self.states[ref.node].exit_code)


def _close_checked(checking: asyncio.Future[tuple[str, Earlier | None, list[BinaryIO] | None]]) -> None:
    """Close a hit's output files its node no longer takes (the run stopped while the cache was checked)."""
    if not checking.cancelled() and checking.exception() is None:
        _, earlier, files = checking.result()
        if files is not None:
            close_files(files)
        if earlier is not None:
            earlier.close_opened()


def _empty_cached_streams(earlier: Earlier) -> dict[str, Path] | None:
    """A cache hit's stream files, by stream, when both are empty: nothing to show, mask or scan in them.

    The cache never writes its files again: they can be the run's own too (linked, not copied).
    """
    if earlier.status is not NodeStatus.CACHED or earlier.stdout is None or earlier.stderr is None:
        return None
    if earlier.data.get(STDOUT) != b"" or earlier.data.get(STDERR) != b"":
        return None
    return {STDOUT: earlier.stdout, STDERR: earlier.stderr}


def _survives_stop(node: Node) -> bool:
    """A running node whose condition asks to run whatever happened is not cancelled when the run stops."""
    if node.condition is None:
        return False
    return bool({"always", "cancelled"} & expressions.parse_condition(node.condition).functions)
