"""Runs nodes on the workers of a Dask cluster (``pip install 'wtflow[dask]'``).

Each attempt is one Dask task (:func:`wtflow.executors.dask_task.run_node`), placed by Dask on a
worker with the resources the node asks for. The task connects back to a listener of this
executor and the node's output streams over that connection into the node's sink while it runs;
the same connection stops the node on the worker when the attempt is cancelled (Dask cannot stop
a task that runs), and says how it ended (see :mod:`wtflow.executors.dask_wire`).

A node whose task no worker can run (no worker has the resources it needs, or the cluster has no
worker) fails once it has waited ``DaskConfig.wait`` seconds for one; a worker that dies under a
node fails the attempt, naming the worker, and the scheduler retries it if the node has
retries. Dask is imported here, on use: a run that sends nothing to a cluster never loads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import secrets
import socket
import sys
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wtflow import __version__
from wtflow.config import WILDCARD_HOSTS, DaskConfig, parse_listen
from wtflow.errors import BackendUnavailable
from wtflow.executors.base import BaseExecutor, Job, Outcome, OutputSink
from wtflow.executors.dask_wire import (
    DONE,
    FILE,
    GO,
    HELLO,
    KILL,
    MAX_HELLO,
    SHIPPED_FILES,
    STOP,
    STREAMS,
    Assignment,
    ProtocolError,
    go_payload,
    host_port,
    keep_alive,
    mismatch,
    receive,
    send,
    split_file_payload,
)
from wtflow.model import PyFunc, Workflow

# Seconds a worker that connected has to say which attempt it serves.
HELLO_TIMEOUT = 10.0
# Seconds a stopped attempt's worker has to report its end beyond the grace period, and a killed one's.
STOP_SLACK = 30.0
KILL_SLACK = 10.0
# Seconds between two batches of messages to the scheduler, at most (see _open).
CLIENT_BATCH_INTERVAL = 0.002
# Seconds the futures of attempts that ran wait to be released with the next submission.
RELEASE_AFTER = 0.05
# Seconds at least between two looks at whether some worker can run a node still waiting for one.
RECHECK = 5.0


@dataclass
class _Connection:
    """A worker's connection for one attempt, once it said which."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    worker: str


class DaskExecutor(BaseExecutor):
    """Sends each job to a worker of the configured Dask cluster, streams its output back, and stops it there.

    :meth:`preflight` connects to the scheduler (or starts the local cluster) and starts the
    listener the workers connect back to; :meth:`aclose` closes them.
    """

    def __init__(self, config: DaskConfig) -> None:
        self._config = config
        self._client: Any = None
        self._cluster: Any = None
        self._server: asyncio.Server | None = None
        self._runner: tuple[str, int] | None = None  # where the workers connect back to
        self._scheduler = config.scheduler or "a local cluster"
        self._waiting: dict[str, asyncio.Future[_Connection]] = {}  # token -> its worker's connection, once there
        self._sys_path: tuple[str, ...] = ()
        self._helpers: set[int] = set()
        self._ran: list[Any] = []  # futures of attempts that ran, to release (see _let_go)
        # Attempts to submit at the end of this turn of the loop, by the resources they need.
        self._pending: dict[tuple[tuple[str, float], ...], list[tuple[Assignment, asyncio.Future[Any]]]] = {}

    async def preflight(self, workflow: Workflow, max_parallel: int) -> None:
        """Connect to the scheduler within ``wait`` seconds, or start the local cluster (else exit 3)."""
        if self._client is not None:
            return
        try:
            await self._open(max_parallel)
        except BaseException:
            await self.aclose()  # what was made before it failed
            raise
        self._sys_path = tuple(sys.path)

    async def _open(self, max_parallel: int) -> None:
        try:
            import distributed
        except ImportError:
            raise BackendUnavailable(
                "running nodes on Dask needs the distributed package: pip install 'wtflow[dask]'"
            ) from None
        config = self._config
        if config.local is not None:
            from wtflow.orphans import children

            before = set(children())
            try:
                self._cluster = await distributed.LocalCluster(  # type: ignore[no-untyped-call]
                    n_workers=config.local,
                    threads_per_worker=max(1, math.ceil(max_parallel / config.local)),
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=":0",  # any free port: the default one may be taken
                    asynchronous=True,
                    silence_logs=logging.ERROR,
                    **_with_local_preload(),  # Ctrl-C is the runner's: see dask_local
                )
            except Exception as exc:  # noqa: BLE001 - whatever kept it from starting, the run cannot go on
                raise BackendUnavailable(
                    f"cannot start a local Dask cluster of {config.local} workers: {exc}"
                ) from None
            address = self._scheduler = self._cluster.scheduler_address
            # Its worker processes end when it is closed; what else it started (multiprocessing's
            # resource tracker, which ignores SIGTERM) ends with this process.
            self._helpers = set(children()) - before
        else:
            assert config.scheduler is not None
            address = config.scheduler
        try:
            async with asyncio.timeout(config.wait + 5):  # Dask's own timeout bounds its tries to connect
                self._client = await distributed.Client(  # type: ignore[no-untyped-call]
                    address, asynchronous=True, timeout=max(config.wait, 0.1), set_as_default=False
                )
        except Exception as exc:  # noqa: BLE001 - whatever kept it from connecting, the run cannot go on
            raise BackendUnavailable(
                f"the Dask scheduler at {address} cannot be reached within {config.wait:g}s: {exc} "
                "(set the address with --dask-scheduler, the time with --dask-wait)"
            ) from None
        # The client sends the scheduler a batch of messages every 10 ms at most: each node's
        # submission could wait that long. Workers send theirs every 2 ms; so does this client.
        comm = getattr(self._client, "scheduler_comm", None)
        if comm is not None and getattr(comm, "interval", 0) > CLIENT_BATCH_INTERVAL:
            comm.interval = CLIENT_BATCH_INTERVAL
        host, port, announced = await asyncio.to_thread(_listen_address, config.listen, address)
        try:
            self._server = await _start_server(self._accepted, host, port)
        except OSError as exc:
            raise BackendUnavailable(
                f"cannot listen on {host_port(host, port)} for the Dask workers' output: {exc.strerror or exc} "
                "(choose the address with --dask-listen)"
            ) from None
        bound = [sock.getsockname() for sock in self._server.sockets]
        if len({name[1] for name in bound}) > 1:  # a name of several addresses, each on a free port of its own
            announced = bound[0][0]
        self._runner = (announced, bound[0][1])

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A worker connected: hand its connection to the attempt it names, or close it if that is over."""
        handed = False
        try:
            try:
                async with asyncio.timeout(HELLO_TIMEOUT):
                    kind, payload = await receive(reader, MAX_HELLO)
                hello = json.loads(payload) if kind == HELLO else {}
                waiter = self._waiting.pop(str(hello.get("token")), None)
            # Whatever a stray peer sends: TimeoutError is an OSError; deep JSON a RecursionError.
            except (OSError, EOFError, ValueError, AttributeError, RecursionError):
                waiter = None
            if waiter is None or waiter.done():  # no such attempt, or it ended meanwhile
                return
            problem = mismatch(hello, __version__)
            if problem is not None:  # its frames may not mean what ours do: it never starts the node
                waiter.set_exception(ProtocolError(problem, str(hello.get("worker"))))
                return
            keep_alive(writer)  # a worker lost without a word (its machine gone) fails its node too
            waiter.set_result(_Connection(reader, writer, str(hello.get("worker"))))
            handed = True
        finally:
            if not handed:  # also when the loop ends while a connection has not said hello
                writer.close()

    async def execute(self, job: Job, sink: OutputSink) -> Outcome:
        """Run ``job`` on a worker of the cluster; stop it there if cancelled (a second cancellation kills it)."""
        assert self._client is not None, "preflight first"
        await sink.ready()  # the node's directory exists before its process does, as on this machine
        assignment = await self._assignment(job, sink)
        if isinstance(assignment, Outcome):
            return assignment
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[_Connection] = loop.create_future()
        self._waiting[assignment.token] = waiter
        submitted = self._submit(assignment)
        future: Any = None
        connection: _Connection | Outcome | None = None
        try:
            try:
                future = await asyncio.shield(submitted)
            except Exception as exc:  # noqa: BLE001 - the client gave up on the scheduler
                return Outcome(exit_code=None, error=f"cannot send the node to the Dask cluster: {_described(exc)}")
            connection = await self._started(job, future, waiter)
            if isinstance(connection, Outcome):
                return connection
            return await self._follow(job, connection, sink)
        finally:
            self._waiting.pop(assignment.token, None)
            if not waiter.done():
                waiter.cancel()
            elif not waiter.cancelled() and waiter.exception() is None and not isinstance(connection, _Connection):
                waiter.result().writer.close()  # connected once the attempt was over: never told to go
            if future is None:  # cancelled before its submission came back: release it when it does
                submitted.add_done_callback(_release)
            elif isinstance(connection, _Connection):  # it ran: released with the next submission
                self._let_go(future)
            else:
                future.release()  # a task not started yet never starts

    def _submit(self, assignment: Assignment) -> asyncio.Future[Any]:
        """The Dask future of ``assignment``, once submitted with the others of this turn of the loop.

        Nodes often become ready together (a group starts, a wave of nodes ends): one submission
        of many tasks costs the scheduler far less than as many submissions of one.
        """
        submitted: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        group = tuple(sorted(assignment.job.resources.items()))
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.setdefault(group, []).append((assignment, submitted))
        return submitted

    def _let_go(self, future: Any) -> None:
        """Release the future of an attempt that ran, with the next submission (or soon, if none comes).

        The client sends the scheduler one batch of messages every few milliseconds at most: a
        release sent alone as an attempt ends would hold back the submission of the node that
        takes its place.
        """
        if not self._ran:
            asyncio.get_running_loop().call_later(RELEASE_AFTER, self._release_ran)
        self._ran.append(future)

    def _release_ran(self) -> None:
        ran, self._ran = self._ran, []
        for future in ran:
            future.release()

    def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        from wtflow.executors.dask_task import run_node

        for group, attempts in pending.items():
            try:
                futures = self._client.map(
                    run_node,
                    [assignment for assignment, _ in attempts],
                    # Keys show on the cluster's dashboard: a random id of their own, never part of the token.
                    key=[f"wtflow-{assignment.job.node}-{secrets.token_hex(6)}" for assignment, _ in attempts],
                    resources=dict(group) or None,
                    pure=False,
                )
            except Exception as exc:  # noqa: BLE001 - each attempt fails with it
                for _, submitted in attempts:
                    submitted.set_exception(exc)
                continue
            for (_, submitted), future in zip(attempts, futures, strict=True):
                submitted.set_result(future)
        self._release_ran()  # in the same batch as the submissions

    async def _assignment(self, job: Job, sink: OutputSink) -> Assignment | Outcome:
        assert self._runner is not None
        token = secrets.token_hex(16)
        function = job.executable
        if not isinstance(function, PyFunc):
            return Assignment(token, self._runner, job)
        from wtflow.executors.dask_task import stand_in
        from wtflow.executors.pyfunc import main_header, pickled_call

        call = await pickled_call(function, sink)
        if isinstance(call, Outcome):
            return call
        job = dataclasses.replace(job, executable=dataclasses.replace(function, func=stand_in, args=(), kwargs={}))
        main = main_header(getattr(function.func, "__module__", None))
        return Assignment(token, self._runner, job, call, main, self._sys_path)

    async def _started(self, job: Job, future: Any, waiter: asyncio.Future[_Connection]) -> _Connection | Outcome:
        """The worker's connection once the task runs; an outcome if it cannot (nothing can run it, it failed)."""
        finished = asyncio.ensure_future(future)
        wait = self._config.wait
        try:
            while True:
                await asyncio.wait({waiter, finished}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                if waiter.done():
                    try:
                        return waiter.result()
                    except ProtocolError as exc:
                        return Outcome(exit_code=None, error=str(exc), worker=exc.worker)
                if finished.done():
                    error = finished.exception()
                    if error is None:  # the task ended without reaching this process
                        return Outcome(
                            exit_code=None, error="the node's task on the Dask cluster ended without running it"
                        )
                    return Outcome(
                        exit_code=None, error=f"the node's task failed on the Dask cluster: {_described(error)}"
                    )
                problem = await self._unplaceable(job.resources)
                if problem is not None:
                    return Outcome(exit_code=None, error=problem)
                wait = max(wait, RECHECK)  # a worker can run it: it waits its turn, and is looked at again
        finally:
            finished.cancel()
            await asyncio.gather(finished, return_exceptions=True)

    async def _unplaceable(self, resources: Mapping[str, float]) -> str | None:
        """Why no worker can run a node that needs ``resources``; ``None`` if one can (it is busy)."""
        try:
            async with asyncio.timeout(max(self._config.wait, RECHECK)):
                info = await self._client.scheduler.identity(n_workers=-1)
        except Exception as exc:  # noqa: BLE001 - the scheduler went away (or never answers): the node cannot run
            return f"the Dask scheduler at {self._scheduler} does not answer: {_described(exc)}"
        workers: dict[str, Any] = info.get("workers", {})
        wait = f"{self._config.wait:g}s"
        if not workers:
            return f"the Dask cluster at {self._scheduler} has no workers (waited {wait} for one; see --dask-wait)"
        if any(_has(worker.get("resources") or {}, resources) for worker in workers.values()):
            return None
        have = "; ".join(
            f"{address}: {_resources(worker.get('resources') or {}) or 'none'}" for address, worker in workers.items()
        )
        return (
            f"no worker of the Dask cluster has the resources {_resources(resources)} the node needs "
            f"(waited {wait} for one; see --dask-wait); the workers have: {have}"
        )

    async def _follow(self, job: Job, connection: _Connection, sink: OutputSink) -> Outcome:
        """Let the worker start the node and stream its output to the end; stop it there when cancelled.

        A first cancellation tells the worker to stop the node (SIGTERM, then SIGKILL after the grace
        period), a second to kill it now; either way the attempt waits for the worker to report the
        end, so the node's last output is kept, then re-raises. A worker that does not report is
        given up on after the grace period and some slack.
        """
        reading = asyncio.ensure_future(self._stream(job, connection, sink))
        cancelled: asyncio.CancelledError | None = None
        stops = 0
        outcome: Outcome | None = None
        try:
            try:
                await send(connection.writer, GO, go_payload(__version__))
            except OSError as exc:  # the worker went away before it was told to start
                return _lost(connection.worker, exc)
            while outcome is None:
                limit = None if stops == 0 else job.kill_grace + STOP_SLACK if stops == 1 else KILL_SLACK
                try:
                    async with asyncio.timeout(limit):
                        outcome = await asyncio.shield(reading)
                except asyncio.CancelledError as exc:
                    cancelled = cancelled or exc
                    stops += 1
                    with contextlib.suppress(OSError):
                        await send(connection.writer, STOP if stops == 1 else KILL)
                except TimeoutError:  # the worker does not report the end
                    if stops > 1:
                        break  # given up on: closing the connection stops the node if the worker still can
                    stops += 1
                    with contextlib.suppress(OSError):
                        await send(connection.writer, KILL)
        finally:
            if not reading.done():
                reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
            connection.writer.close()
        if cancelled is not None:
            raise cancelled
        assert outcome is not None  # given up on only while stopping
        return outcome

    async def _stream(self, job: Job, connection: _Connection, sink: OutputSink) -> Outcome:
        """Write the worker's frames into the sink and the node's directory until it reports the end."""
        store_error: OSError | None = None
        shipped: set[str] = set()
        while True:
            try:
                kind, payload = await receive(connection.reader)
            except (EOFError, OSError) as exc:
                return _lost(connection.worker, exc)
            except ProtocolError as exc:
                return _garbled(connection.worker, exc)
            stream = STREAMS.get(kind)
            if stream is not None:
                if store_error is None:
                    try:
                        await sink.write(stream, payload)
                    except OSError as exc:  # keep reading: the node must not block on a full connection
                        store_error = exc
                continue
            try:
                if kind == FILE:
                    name, piece = split_file_payload(payload)
                    if name in SHIPPED_FILES:
                        _write_piece(job.node_dir / name, piece, first=name not in shipped)
                        shipped.add(name)
                elif kind == DONE:
                    done = json.loads(payload)
                    code, timed_out, error = done["exit_code"], bool(done["timed_out"]), done["error"]
                    if not (code is None or isinstance(code, int)) or not (error is None or isinstance(error, str)):
                        raise TypeError(f"DONE holds {done!r}")  # noqa: TRY301 - reported with the others below
                    if store_error is not None:
                        return Outcome(code, error=f"cannot store output: {store_error}", worker=connection.worker)
                    return Outcome(code, timed_out, error, worker=connection.worker)
            except (ValueError, KeyError, IndexError, TypeError, RecursionError) as exc:
                return _garbled(connection.worker, exc)

    def helper_pids(self) -> Collection[int]:
        """What the local cluster started and left to end with this process (not orphans of the run)."""
        return self._helpers

    async def aclose(self) -> None:
        """Close the listener, the connection to the scheduler and the local cluster, if one was started."""
        if self._client is not None:
            self._release_ran()
        server, self._server = self._server, None
        client, self._client = self._client, None
        cluster, self._cluster = self._cluster, None
        for waiter in self._waiting.values():
            waiter.cancel()
        self._waiting.clear()
        if server is not None:
            server.close()
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()
        if cluster is not None:
            with contextlib.suppress(Exception):
                await cluster.close()


def _listen_address(listen: str | None, scheduler: str) -> tuple[str, int, str]:
    """Where to listen for the workers, and the host they are told to connect to: ``(host, port, announced)``.

    ``listen`` is ``HOST``, ``HOST:PORT``, ``:PORT`` or ``[IPv6]:PORT`` (:func:`parse_listen`);
    without a host, this machine's address toward the scheduler. A wildcard host (``0.0.0.0``,
    ``::``) listens on every interface, but a worker cannot connect to it: the workers are told
    this machine's address toward the scheduler instead, of the family the wildcard listens on.
    """
    host, port = parse_listen(listen) if listen else (None, 0)
    if host is not None and host not in WILDCARD_HOSTS:
        return host, port, host
    from distributed.comm.addressing import get_address_host

    scheduler_host = get_address_host(scheduler)
    family = socket.AF_INET6 if ":" in scheduler_host else socket.AF_INET
    if host == "::":
        if not socket.has_dualstack_ipv6():  # IPv6 connections only (see _start_server)
            family = socket.AF_INET6
    elif host is not None:  # 0.0.0.0: IPv4 connections only
        family = socket.AF_INET
    local = _address_toward(scheduler_host, family)
    return host or local, port, local


def _address_toward(host: str, family: socket.AddressFamily) -> str:
    """The address of this machine on its route to ``host``; its name if there is none (the workers may know it)."""
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((host, 9))  # UDP: nothing is sent, the system only chooses the route and address
            address = str(probe.getsockname()[0])
        except OSError:  # no route, a name that does not resolve, an address of the other family
            address = ""
    if not address or address in WILDCARD_HOSTS:
        return socket.gethostname()
    return address


async def _start_server(
    accepted: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]], host: str, port: int
) -> asyncio.Server:
    """The listener on ``host``; on ``::`` it takes IPv4 connections too, where the system allows it.

    asyncio makes every IPv6 listener IPv6-only: workers that reach this machine over IPv4
    could not connect to a plain ``::``.
    """
    if host != "::" or not socket.has_dualstack_ipv6():
        return await asyncio.start_server(accepted, host, port)
    sock = socket.create_server((host, port), family=socket.AF_INET6, dualstack_ipv6=True)
    try:
        return await asyncio.start_server(accepted, sock=sock)
    except BaseException:
        sock.close()
        raise


def _garbled(worker: str, exc: BaseException) -> Outcome:
    """The attempt's outcome when its worker sent what this protocol does not say."""
    return Outcome(
        exit_code=None,
        error=f"worker {worker} sent what this wtflow cannot read ({exc!r}): does it run the same wtflow version?",
        worker=worker,
    )


def _lost(worker: str, exc: BaseException) -> Outcome:
    how = "its connection closed" if isinstance(exc, EOFError) else _described(exc)
    return Outcome(
        exit_code=None,
        error=f"lost worker {worker} while the node ran: the worker died or the network to it failed ({how})",
        worker=worker,
    )


def _write_piece(path: Path, piece: bytes, *, first: bool) -> None:
    """Write a piece of a file the node wrote on a worker that could not see its directory."""
    if not path.parent.is_dir():  # a store without files (tests' MemoryStore): nothing to keep it in
        return
    with path.open("wb" if first else "ab") as handle:
        handle.write(piece)


def _with_local_preload() -> dict[str, list[Any]]:
    """The worker preloads the user's Dask configuration asks for, and ours, with an argv list for each.

    Given ``preload=``, Dask's workers no longer read the configuration's: ours is added to it.
    """
    import dask

    preload = dask.config.get("distributed.worker.preload", None) or []
    preload = [preload] if isinstance(preload, str) else list(preload)
    argv = dask.config.get("distributed.worker.preload-argv", None) or []
    if argv and isinstance(argv[0], str):  # one argv for every preload, as Dask reads it
        argv = [list(argv)] * len(preload)
    elif not argv:
        argv = [[] for _ in preload]
    return {"preload": [*preload, "wtflow.executors.dask_local"], "preload_argv": [*argv, []]}


def _release(submitted: asyncio.Future[Any]) -> None:
    if not submitted.cancelled() and submitted.exception() is None:
        submitted.result().release()


def _has(offered: Mapping[str, float], needed: Mapping[str, float]) -> bool:
    return all(offered.get(name, 0) >= amount for name, amount in needed.items())


def _resources(resources: Mapping[str, float]) -> str:
    return ", ".join(f"{name}={amount:g}" for name, amount in sorted(resources.items()))


def _described(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
