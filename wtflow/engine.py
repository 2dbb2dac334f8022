"""``Engine``: runs a workflow once: the scheduler, with the executor, artifact store and observers it is given.

The engine opens the observers, makes the run's directory, tells the run's start, lets the
:class:`~wtflow.scheduler.Scheduler` walk the graph, and closes the run whatever happens. It
knows the executor, the store and the observers only by their interfaces; what a run uses when
its caller names nothing comes from :mod:`wtflow.defaults`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from wtflow import defaults
from wtflow.artifacts import ArtifactStore, new_run_id
from wtflow.config import CREDENTIAL_VARIABLES, Config, default_max_parallel
from wtflow.errors import BackendUnavailable, run_exit_code
from wtflow.events import Event, NodeStatus, Observer, RunFinished, RunStarted, RunStatus
from wtflow.executors.base import Executor
from wtflow.masking import Masker
from wtflow.model import Artifact, Workflow
from wtflow.scheduler import Scheduler, now

if TYPE_CHECKING:
    from wtflow.reuse import Earlier


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
        self.failures: list[tuple[Observer, Exception]] = []

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
                    self.failures.append((observer, exc))

    def finish(self) -> None:
        """Deliver every pending event, then raise the first error an observer raised, if any."""
        self.deliver()
        if self.failures:
            raise self.failures[0][1]


@dataclass(frozen=True)
class NodeResult:
    """How one node ended, with its artifacts bound to their files; ``worker``: the cluster worker it ran on, if any."""

    name: str
    path: str
    status: NodeStatus
    exit_code: int | None
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    artifacts: Mapping[str, Artifact]
    worker: str | None = None


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
    is always kept: ``run.json`` and ``events.jsonl`` in the run's directory, and rows in the
    database when ``config.db.url`` is set. By default the nodes' output goes to this process's
    stdout and stderr and nothing else is printed; ``observers`` replaces that console output.
    ``executor`` runs nodes differently (tests use :class:`~wtflow.executors.fake.FakeExecutor`),
    ``store`` keeps artifacts elsewhere (tests use :class:`~wtflow.artifacts.MemoryStore`, with
    ``records=[]``: the record keepers, ``run.json``, ``events.jsonl`` and the database by default,
    write into the run's directory).
    ``masker`` is the run's one masker, shared with observers that write what nodes printed.
    ``stop_orphans`` stops, when the run ends, processes that escaped their node's process group
    and were adopted by this process (see :mod:`wtflow.orphans`; the CLI turns it on).
    ``reuse`` gives nodes an earlier run's result instead of running them (``--rerun-failed``).
    """

    def __init__(
        self,
        workflow: Workflow,
        config: Config | None = None,
        *,
        observers: Iterable[Observer] | None = None,
        executor: Executor | None = None,
        store: ArtifactStore | None = None,
        records: Iterable[Observer] | None = None,
        masker: Masker | None = None,
        stop_orphans: bool = False,
        reuse: Mapping[str, Earlier] | None = None,
    ) -> None:
        self.workflow = workflow
        self.config = config if config is not None else Config.from_env()
        self._observers = list(observers) if observers is not None else None
        self._executor = executor
        self._store = store
        self._records = list(records) if records is not None else None
        self._masker = masker
        self._stop_orphans = stop_orphans
        self._reuse = dict(reuse or {})
        self.result: RunResult | None = None
        # What went wrong beside the run itself, for the caller to show (rows the database lost).
        self.warnings: list[str] = []
        self.scheduler: Scheduler | None = None
        # The signal that stopped the run, when one did (set by whoever cancels the run for it).
        self.interrupted_by: int | None = None

    @property
    def max_parallel(self) -> int:
        """The concurrency cap: configured, else the workflow's, else the default."""
        return self.config.run.max_parallel or self.workflow.max_parallel or default_max_parallel()

    @property
    def max_fail(self) -> int:
        """Failed nodes allowed before the run stops: configured, else the workflow's, else 0."""
        if self.config.run.max_fail is not None:
            return self.config.run.max_fail
        return self.workflow.max_fail or 0

    def interrupt(self, signal_number: int) -> None:
        """Stop the run for a signal: running nodes are stopped, nodes that run even so (``always()``) still run.

        The run ends ``cancelled`` and exits 128 + the signal's number. Before its nodes were
        scheduled, this does nothing: cancel the task running the engine then.
        """
        self.interrupted_by = signal_number
        if self.scheduler is not None:
            self.scheduler.interrupt()

    def masker(self) -> Masker:
        """The run's one masker: the secrets' values, and what nodes announce with ``::add-mask::``.

        Given to the engine (``masker=``) when observers must share it, else made here.
        """
        if self._masker is None:
            self._masker = secrets_masker(self.workflow, self.config)
        return self._masker

    def run(self) -> int:
        """Run the workflow to the end; 0 if it succeeded, 1 if it failed."""
        return asyncio.run(self.run_async())

    async def run_async(self) -> int:
        """:meth:`run` for callers already inside an event loop."""
        executor = self._executor or defaults.executor(self.config)
        store = self._store or defaults.store(self.config)
        await executor.preflight(self.workflow, self.max_parallel)  # e.g. the docker engine must answer
        records = self._records if self._records is not None else defaults.record_observers(self.config)
        observers = [*records, *(self._observers if self._observers is not None else defaults.console_observers())]
        run_id = new_run_id()
        masker = self.masker()
        declared = {
            name for node in self.workflow.nodes.values() if node.executable for name in node.executable.env or {}
        }
        self.warnings += [
            f"secret {name} is not set: there is no value of it to mask"
            for name in dict.fromkeys([*self.workflow.secrets, *self.config.run.secrets])
            if not os.environ.get(name) and name not in self.workflow.env and name not in declared
        ]
        await _open_all(observers)
        try:
            try:
                run_dir = await store.open_run(run_id, self.workflow.nodes, masker)
            except OSError as exc:
                where = self.config.storage.artifacts_dir or "the temporary directory"
                message = f"artifacts directory {where} cannot be written: {exc.strerror or exc}"
                self._tell_failed_start(records, run_id, Path(where) / run_id, message)
                raise BackendUnavailable(
                    f"{message}; choose another with --artifacts-dir or WTFLOW_ARTIFACTS_DIR"
                ) from None
            return await self._run(
                run_id, run_dir, executor=executor, store=store, observers=observers, records=records, masker=masker
            )
        finally:
            try:
                await executor.aclose()  # again after a run (a no-op); first when the run could not start
                await _close_all(observers)
            finally:
                self.warnings += [warning for observer in observers for warning in observer.warnings()]

    def _tell_failed_start(self, records: list[Observer], run_id: str, run_dir: Path, error: str) -> None:
        """Record a run that could not start, where a record can still be kept (the database)."""
        delivery = _Delivery(records)
        started = now()
        host, pid = socket.gethostname(), os.getpid()
        delivery.now(RunStarted(run_id, self.workflow, run_dir, started, host, pid))
        code = run_exit_code(RunStatus.FAILED)
        delivery.now(RunFinished(run_id, self.workflow.name, RunStatus.FAILED, code, started, now(), error))
        # The run's directory does not exist: the observers that write there cannot, as expected.

    async def _run(
        self,
        run_id: str,
        run_dir: Path,
        *,
        executor: Executor,
        store: ArtifactStore,
        observers: list[Observer],
        records: list[Observer],
        masker: Masker,
    ) -> int:
        delivery = _Delivery(observers)
        started_at = now()
        # At once, in this task's context: observers set up what later events need (the log's run id).
        delivery.now(RunStarted(run_id, self.workflow, run_dir, started_at, socket.gethostname(), os.getpid()))
        unwritable = [exc for observer, exc in delivery.failures if observer in records and isinstance(exc, OSError)]
        if unwritable:  # the run's record cannot be kept (a full disk): no node may run
            message = f"the run's record cannot be written in {run_dir}: {unwritable[0].strerror or unwritable[0]}"
            code = BackendUnavailable.exit_code
            delivery.now(RunFinished(run_id, self.workflow.name, RunStatus.FAILED, code, started_at, now(), message))
            raise BackendUnavailable(f"{message}; free some space or choose another --artifacts-dir")
        cache = defaults.node_cache(self.config) if any(n.cached for n in self.workflow.nodes.values()) else None
        scheduler = self.scheduler = Scheduler(
            self.workflow,
            run_id=run_id,
            run_dir=run_dir,
            store=store,
            executor=executor,
            emit=delivery.emit,
            max_parallel=self.max_parallel,
            ignore_failure=self.config.run.ignore_failure,
            kill_grace=self.config.run.kill_grace,
            environ={name: value for name, value in os.environ.items() if name not in CREDENTIAL_VARIABLES},
            masker=masker,
            max_fail=self.max_fail,
            variables={**self.workflow.vars, **self.config.run.vars},
            cache=cache,
            reuse=self._reuse,
        )
        status = RunStatus.CANCELLED
        error: str | None = "interrupted"
        try:
            await scheduler.run()
            delivery.finish()
            if not scheduler.interrupted:
                status = RunStatus.FAILED if scheduler.failed else RunStatus.SUCCEEDED
                error = None
        except Exception as exc:  # a bug: still close the run, and say what happened
            status, error = RunStatus.FAILED, f"internal error: {exc!r}"
            raise
        finally:
            try:
                await executor.aclose()
                if self._stop_orphans:
                    helpers = {pid for observer in observers for pid in observer.helper_pids()}
                    helpers.update(executor.helper_pids())
                    await asyncio.to_thread(_stop_orphans, self.config.run.kill_grace, helpers)
            finally:
                error = masker.text(error) if error else None
                if status is RunStatus.CANCELLED and self.interrupted_by is not None:
                    error = f"interrupted by {signal.Signals(self.interrupted_by).name}"
                code = run_exit_code(status, self.interrupted_by)
                finished = RunFinished(run_id, self.workflow.name, status, code, started_at, now(), error)
                delivery.now(finished)
                self.result = _result(finished, run_dir, scheduler)
                self.warnings += scheduler.warnings
                if cache is not None:
                    self.warnings += await asyncio.to_thread(cache.close)
                self.warnings += masker.warnings()
        return code


def secrets_masker(workflow: Workflow, config: Config) -> Masker:
    """A masker of the values of the workflow's and the configuration's secrets, and of the database's password."""
    names = [*workflow.secrets, *config.run.secrets]
    values = [os.environ[name] for name in names if os.environ.get(name)]
    # A secret may also come from the workflow itself (an env file): the values it declares.
    declared = [workflow.env, *(node.executable.env or {} for node in workflow.nodes.values() if node.executable)]
    values += [env[name] for env in declared for name in names if env.get(name)]
    if password := config.db.password:
        values.append(password)
    return Masker(values)


def _stop_orphans(grace: float, helpers: set[int]) -> None:
    from wtflow import orphans

    orphans.sweep(grace, helpers)


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
                state.worker,
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
