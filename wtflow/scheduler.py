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
import glob
import shutil
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from wtflow.artifacts import RunLayout
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
from wtflow.model import RESULT, STDERR, STDOUT, Artifact, Command, Node, PyFunc, Workflow, replace_artifacts

_FILES = frozenset({STDOUT, STDERR, RESULT})
# A partial line longer than this is passed on without waiting for its newline.
MAX_PENDING_LINE = 1 << 16
# Writing a chunk into the page cache takes tens of microseconds, less than handing it to a
# thread and back (1 GiB of lines: 3.3 -> 2.1 s, and a third less CPU; bench/RESULTS.md). A disk
# that cannot keep up (a network mount, throttled writeback) would stall the loop and every
# node's output with it, so once one write takes longer than this, the node's later writes
# go through a worker thread.
SLOW_WRITE = 0.02


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


class _Sink:
    """Writes a node's output to its artifact files and emits it, in whole lines, with secrets masked."""

    def __init__(
        self,
        run_id: str,
        node: str,
        opening: asyncio.Future[list[BinaryIO]],
        emit: Callable[[Event], None],
        *,
        masker: Masker,
        mask_files: bool,
    ) -> None:
        self._run_id = run_id
        self._node = node
        self._opening = opening
        self._files: dict[str, BinaryIO] | None = None
        self._threaded = False
        self._emit = emit
        self._masker = masker
        self._mask_files = mask_files
        self._pending = {STDOUT: b"", STDERR: b""}

    async def ready(self) -> None:
        if self._files is None:
            out, err = await asyncio.shield(self._opening)
            self._files = {STDOUT: out, STDERR: err}

    async def write(self, stream: str, data: bytes) -> None:
        pending = self._pending[stream]
        end = data.rfind(b"\n") + 1  # just past the last whole line; 0 if none ends here
        held = len(data) - end if end else len(pending) + len(data)  # what would wait for its newline
        if held > MAX_PENDING_LINE:  # a partial line too long to hold: passed on as it is
            self._pending[stream] = b""
            await self._forward(stream, pending + data)
        elif not end:
            self._pending[stream] = pending + data
        else:
            self._pending[stream] = data[end:]
            # The whole lines, copied once: output runs to gigabytes, and each copy costs.
            await self._forward(stream, b"".join((pending, memoryview(data)[:end])) if pending else data[:end])

    async def _forward(self, stream: str, lines: bytes) -> None:
        self._masker.scan(lines)
        masked = self._masker.bytes(lines)
        await self.ready()
        assert self._files is not None
        await self._store(self._files[stream], masked if self._mask_files else lines)
        self._emit(NodeOutput(self._run_id, self._node, stream, masked))

    async def _store(self, handle: BinaryIO, data: bytes) -> None:
        if self._threaded:
            await asyncio.get_running_loop().run_in_executor(None, handle.write, data)
            return
        start = time.perf_counter()
        handle.write(data)
        if time.perf_counter() - start > SLOW_WRITE:
            self._threaded = True

    async def flush(self) -> None:
        for stream, pending in self._pending.items():
            if pending:
                self._pending[stream] = b""
                await self._forward(stream, pending)


def _open_files(paths: tuple[Path, ...]) -> list[BinaryIO]:
    """Open (create or truncate) each file for writing, making its directory if needed."""
    files: list[BinaryIO] = []
    try:
        for path in paths:
            try:
                files.append(open(path, "wb"))  # noqa: SIM115 - closed by _close_files
            except FileNotFoundError:
                path.parent.mkdir(parents=True, exist_ok=True)
                files.append(open(path, "wb"))  # noqa: SIM115 - closed by _close_files
    except BaseException:
        _close_files(files)
        raise
    return files


def _close_files(files: list[BinaryIO]) -> None:
    for handle in files:
        handle.close()


def _open_soon(paths: tuple[Path, ...]) -> asyncio.Future[list[BinaryIO]]:
    """Open ``paths`` on the loop's next turn: once the node's process has started, while it runs.

    The pipes hold the process's first output meanwhile. Creating a file takes about 15 us
    here, so the loop does it itself: handing it to a worker thread cost more, as the thread's
    GIL hand-offs slowed every process start (W1 and W2 5% slower, bench/RESULTS.md). Files
    that cannot be made fail the node after it ran.
    """
    loop = asyncio.get_running_loop()
    opening: asyncio.Future[list[BinaryIO]] = loop.create_future()

    def open_now() -> None:
        try:
            opening.set_result(_open_files(paths))
        except BaseException as exc:  # settled whatever happens: the attempt waits for it
            opening.set_exception(exc)
            if not isinstance(exc, Exception):
                raise

    loop.call_soon(open_now)
    return opening


def _close_when_opened(opening: asyncio.Future[list[BinaryIO]]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        _close_files(opening.result())


class Scheduler:
    """Runs one workflow once; ``run`` returns when every node has reached a final status."""

    def __init__(
        self,
        workflow: Workflow,
        *,
        run_id: str,
        layout: RunLayout,
        executor: Executor,
        emit: Callable[[Event], None],
        max_parallel: int,
        ignore_failure: bool,
        kill_grace: float,
        environ: Mapping[str, str],
        masker: Masker | None = None,
        mask_files: bool = True,
    ) -> None:
        self.workflow = workflow
        self.run_id = run_id
        self.layout = layout
        self._executor = executor
        self._emit = emit
        self._ignore_failure = ignore_failure
        self._kill_grace = kill_grace
        self._environ = dict(environ)  # a snapshot: os.environ decodes on every read
        self._masker = masker or Masker()
        self._mask_files = mask_files
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
                except OSError as exc:  # the artifacts directory cannot be written
                    outcome = Outcome(exit_code=None, error=f"cannot store artifacts: {exc}")
        except asyncio.CancelledError:
            if state.started_at is not None and state.status is NodeStatus.RUNNING:
                state.artifacts = self._artifact_infos(state.node)
                self._finish(state, NodeStatus.CANCELLED)
            raise
        finally:
            self._tasks.pop(state.node.name, None)
        state.exit_code = outcome.exit_code
        state.error = outcome.error
        state.artifacts = self._artifact_infos(state.node)
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
        node_dir = self.layout.node_dir(node.name)
        job = self._job(node, node.executable, node_dir)
        outcome = Outcome(exit_code=None)
        for attempt in range(1, attempts + 1):
            state.status = NodeStatus.RUNNING
            state.attempt = attempt
            if state.started_at is None:
                state.started_at = now()
            self._emit(NodeStarted(self.run_id, node.name, state.path, now(), attempt))
            outcome = await self._attempt(job)
            if outcome.succeeded:
                if node.artifacts:
                    await asyncio.to_thread(self._collect_files, node, job.cwd)
                return outcome
            if attempt == attempts:
                break
            assert retries is not None
            delay = retries.delay_before(attempt + 1)
            self._emit(NodeRetrying(self.run_id, node.name, attempt, outcome.exit_code, delay))
            self._keep_attempt_output(node, attempt)
            await asyncio.sleep(delay)
        return outcome

    async def _attempt(self, job: Job) -> Outcome:
        paths = (self.layout.path(job.node, STDOUT), self.layout.path(job.node, STDERR))
        opening = _open_soon(paths)
        sink = _Sink(self.run_id, job.node, opening, self._emit, masker=self._masker, mask_files=self._mask_files)
        try:
            try:
                return await self._executor.execute(job, sink)
            finally:
                await sink.flush()
        finally:
            try:
                _close_files(await asyncio.shield(opening))  # closing without fsync does not block
            except asyncio.CancelledError:
                opening.add_done_callback(_close_when_opened)
                raise

    def _keep_attempt_output(self, node: Node, attempt: int) -> None:
        """Keep a failed attempt's output beside the next attempt's, as ``stdout.attempt-N.log``."""
        for stream in (STDOUT, STDERR):
            path = self.layout.path(node.name, stream)
            if path.exists():
                path.rename(path.with_name(f"{stream}.attempt-{attempt}.log"))

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
        declared["WTFLOW_RUN_DIR"] = str(self.layout.run_dir)
        env = {**self._environ, **declared}
        cwd = Path(executable.cwd) if executable.cwd is not None else None
        return Job(self.run_id, node.name, executable, env, cwd, node_dir, self._kill_grace, declared)

    def _resolve(self, ref: Artifact) -> Artifact:
        return ref.resolved(self.layout.path(ref.node, ref.name))

    def _collect_files(self, node: Node, cwd: Path | None) -> None:
        """Copy the node's declared file artifacts (globs in its working directory) into its artifacts."""
        base = (cwd or Path.cwd()).resolve()
        for declared in node.artifacts:
            target = self.layout.path(node.name, declared.name)
            for match in sorted(glob.glob(declared.path, root_dir=base, recursive=True)):
                source = (base / match).resolve()
                if not source.is_relative_to(base):
                    continue  # a symlink out of the working directory is not an artifact
                destination = target / match
                destination.parent.mkdir(parents=True, exist_ok=True)
                if source.is_dir():
                    shutil.copytree(source, destination, dirs_exist_ok=True, symlinks=True)
                else:
                    shutil.copy2(source, destination)

    def _artifact_infos(self, node: Node) -> tuple[ArtifactInfo, ...]:
        """The artifacts the node left, with their sizes; what is missing or unreadable is left out."""
        infos = []
        for name in sorted(node.artifact_names()):
            path = self.layout.path(node.name, name)
            try:
                if name in _FILES:
                    size = path.stat().st_size
                elif path.is_dir():
                    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
                else:
                    continue
            except OSError:
                continue
            infos.append(ArtifactInfo(name, path, size))
        return tuple(infos)
