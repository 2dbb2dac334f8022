"""``Engine``: runs a workflow once, wiring the scheduler to storage, executors and observers."""

from __future__ import annotations

import asyncio
import os
import socket
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from wtflow.artifacts import RunLayout, create_run_dir, new_run_id
from wtflow.config import Config, default_max_parallel
from wtflow.db.recorder import DatabaseRecorder
from wtflow.errors import BackendUnavailable
from wtflow.events import Event, NodeStatus, Observer, RunFinished, RunStarted, RunStatus
from wtflow.executors.base import Executor
from wtflow.executors.dispatch import DispatchExecutor
from wtflow.executors.process import FDS_PER_NODE, reserve_descriptors
from wtflow.masking import Masker
from wtflow.model import Artifact, Workflow
from wtflow.observers import console_observers, record_observers
from wtflow.scheduler import Scheduler, now

EXIT_CODES = {RunStatus.SUCCEEDED: 0, RunStatus.FAILED: 1, RunStatus.CANCELLED: 130}


class _Delivery:
    """Hands a run's events to its observers, in order, a turn of the loop after they happen.

    A node whose dependencies just ended starts its process in the turn it is scheduled; its
    dependency's finish and its own start reach the observers (log lines, ``events.jsonl``, the
    database) on the next turn, while the process runs, instead of before it. An observer's
    error does not stop the others; the first is raised when the run ends.
    """

    def __init__(self, observers: list[Observer]) -> None:
        self._observers = observers
        self._pending: deque[Event] = deque()
        self._scheduled = False
        self.error: Exception | None = None

    def emit(self, event: Event) -> None:
        """Deliver ``event`` after what the current and the next callbacks of the loop do."""
        self._pending.append(event)
        if not self._scheduled:
            self._scheduled = True
            loop = asyncio.get_running_loop()
            loop.call_soon(loop.call_soon, self.deliver)  # after the tasks the current turn woke

    def now(self, event: Event) -> None:
        """Deliver the pending events, then ``event``, before returning."""
        self._pending.append(event)
        self.deliver()

    def deliver(self) -> None:
        """Deliver every pending event now."""
        self._scheduled = False
        while self._pending:
            event = self._pending.popleft()
            for observer in self._observers:
                try:
                    observer.notify(event)
                except Exception as exc:  # noqa: BLE001 - kept, and raised when the run ends
                    self.error = self.error or exc

    def finish(self) -> None:
        """Deliver every pending event, then raise the first error an observer raised, if any."""
        self.deliver()
        if self.error is not None:
            raise self.error


@dataclass(frozen=True)
class NodeResult:
    """How one node ended, with its artifacts bound to their files."""

    name: str
    path: str
    status: NodeStatus
    exit_code: int | None
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    artifacts: Mapping[str, Artifact]


@dataclass(frozen=True)
class RunResult:
    """How a run ended: its status, exit code and every node's result, by name."""

    run_id: str
    workflow: str
    status: RunStatus
    exit_code: int
    run_dir: Path
    started_at: datetime
    finished_at: datetime
    nodes: Mapping[str, NodeResult]

    def __getitem__(self, node: str) -> NodeResult:
        return self.nodes[node]


class Engine:
    """Runs a :class:`~wtflow.model.Workflow`.

    ``Engine(workflow)`` reads its configuration from ``WTFLOW_*`` variables. The run's record
    is always kept: ``run.json`` in the run's directory, and rows in the database when
    ``config.db.url`` is set. By default the nodes' output goes to this process's stdout and
    stderr and nothing else is printed; ``observers`` replaces that console output. ``executor``
    runs nodes differently (tests use :class:`~wtflow.executors.fake.FakeExecutor`).
    ``stop_orphans`` stops, when the run ends, processes that escaped their node's process group
    and were adopted by this process (see :mod:`wtflow.orphans`; the CLI turns it on).
    """

    def __init__(
        self,
        workflow: Workflow,
        config: Config | None = None,
        *,
        observers: Iterable[Observer] | None = None,
        executor: Executor | None = None,
        stop_orphans: bool = False,
    ) -> None:
        self.workflow = workflow
        self.config = config if config is not None else Config.from_env()
        self._observers = list(observers) if observers is not None else None
        self._executor = executor
        self._stop_orphans = stop_orphans
        self.result: RunResult | None = None
        # What went wrong beside the run itself, for the caller to show (rows the database lost).
        self.warnings: list[str] = []
        self.scheduler: Scheduler | None = None

    @property
    def max_parallel(self) -> int:
        """The concurrency cap: configured, else the workflow's, else the default."""
        return self.config.run.max_parallel or self.workflow.max_parallel or default_max_parallel()

    async def _record_failed_start(self, run_id: str, run_dir: Path, error: str) -> None:
        """Record a run that could not start (no artifacts directory) as failed, if a database is set."""
        if not self.config.db.url:
            return
        recorder = DatabaseRecorder(self.config.db.url, retry=self.config.db.retry)
        await recorder.aopen()
        started = now()
        recorder.notify(RunStarted(run_id, self.workflow, run_dir, started, socket.gethostname(), os.getpid()))
        recorder.notify(RunFinished(run_id, self.workflow.name, RunStatus.FAILED, 1, started, now(), error))
        await recorder.aclose()

    def masker(self) -> Masker:
        """The masker for this run: the values of the workflow's and the configuration's secrets."""
        return secrets_masker(self.workflow, self.config)

    def run(self) -> int:
        """Run the workflow to the end; 0 if it succeeded, 1 if it failed."""
        return asyncio.run(self.run_async())

    async def run_async(self) -> int:
        """:meth:`run` for callers already inside an event loop."""
        executor = self._executor or DispatchExecutor()
        _make_room(self.workflow, self.max_parallel)
        await executor.preflight(self.workflow, self.max_parallel)  # e.g. the docker engine must answer
        run_id = new_run_id()
        try:
            run_dir = await asyncio.to_thread(create_run_dir, self.config.storage.artifacts_dir, run_id)
        except OSError as exc:
            where = self.config.storage.artifacts_dir or "the temporary directory"
            message = f"artifacts directory {where} cannot be written: {exc.strerror or exc}"
            await self._record_failed_start(run_id, Path(where) / run_id, message)
            raise BackendUnavailable(
                f"{message}; choose another with --artifacts-dir or WTFLOW_ARTIFACTS_DIR"
            ) from None
        layout = RunLayout(run_dir, self.workflow.nodes)
        observers = [
            *record_observers(self.config, layout.run_file),
            *(self._observers if self._observers is not None else console_observers()),
        ]
        await _open_all(observers)

        delivery = _Delivery(observers)
        started_at = now()
        # At once, in this task's context: observers set up what later events need (the log's run id).
        delivery.now(RunStarted(run_id, self.workflow, run_dir, started_at, socket.gethostname(), os.getpid()))
        masker = self.masker()
        scheduler = self.scheduler = Scheduler(
            self.workflow,
            run_id=run_id,
            layout=layout,
            executor=executor,
            emit=delivery.emit,
            max_parallel=self.max_parallel,
            ignore_failure=self.config.run.ignore_failure,
            kill_grace=self.config.run.kill_grace,
            environ=os.environ,
            masker=masker,
            mask_files=self.config.run.mask_artifacts,
        )
        status = RunStatus.CANCELLED
        error: str | None = "interrupted"
        try:
            try:
                await scheduler.run()
                delivery.finish()
                status = RunStatus.FAILED if scheduler.failed else RunStatus.SUCCEEDED
                error = None
            except Exception as exc:  # a bug: still close the run, and say what happened
                status, error = RunStatus.FAILED, f"internal error: {exc!r}"
                raise
            finally:
                try:
                    await executor.aclose()
                    if self._stop_orphans:
                        helpers = {o.pid for o in observers if isinstance(o, DatabaseRecorder) and o.pid is not None}
                        await asyncio.to_thread(_stop_orphans, self.config.run.kill_grace, helpers)
                finally:
                    error = masker.text(error) if error else None
                    finished = RunFinished(
                        run_id, self.workflow.name, status, EXIT_CODES[status], started_at, now(), error
                    )
                    delivery.now(finished)
                    self.result = _result(finished, run_dir, scheduler)
        finally:
            await _close_all(observers)
            self.warnings += _lost_rows(observers, layout.run_dir)
        return EXIT_CODES[status]


def _make_room(workflow: Workflow, max_parallel: int) -> None:
    """Room in the descriptor table for every node that can run at once, made before the loop has worker threads."""
    running = min(max_parallel, sum(node.executable is not None for node in workflow.nodes.values()))
    reserve_descriptors(FDS_PER_NODE * running)


def secrets_masker(workflow: Workflow, config: Config) -> Masker:
    """A masker of the values of ``workflow``'s and ``config``'s secrets (environment variables)."""
    names = [*workflow.secrets, *config.run.secrets]
    return Masker(os.environ[name] for name in names if os.environ.get(name))


def _lost_rows(observers: list[Observer], run_dir: Path) -> list[str]:
    return [
        f"{o.problem}; {run_dir / 'events.jsonl'} has every event"
        for o in observers
        if isinstance(o, DatabaseRecorder) and o.problem
    ]


def _stop_orphans(grace: float, helpers: set[int]) -> None:
    from wtflow import orphans

    orphans.stop([pid for pid in orphans.children() if pid not in helpers], grace)


def _result(finished: RunFinished, run_dir: Path, scheduler: Scheduler) -> RunResult:
    return RunResult(
        finished.run_id,
        finished.workflow,
        finished.status,
        finished.exit_code,
        run_dir,
        finished.started_at,
        finished.finished_at,
        {
            name: NodeResult(
                name,
                state.path,
                state.status,
                state.exit_code,
                state.attempt,
                state.started_at,
                state.finished_at,
                state.error,
                {info.name: Artifact(name, info.name, info.path) for info in state.artifacts},
            )
            for name, state in scheduler.states.items()
        },
    )


async def _open_all(observers: list[Observer]) -> None:
    opened: list[Observer] = []
    try:
        for observer in observers:
            await observer.aopen()
            opened.append(observer)
    except BaseException:
        await _close_all(opened)
        raise


async def _close_all(observers: list[Observer]) -> None:
    """Close every observer, even when one fails (the first failure is raised afterwards)."""
    failure: BaseException | None = None
    for observer in observers:
        try:
            await observer.aclose()
        except BaseException as exc:  # noqa: BLE001 - the others must still close
            failure = failure or exc
    if failure is not None:
        raise failure
