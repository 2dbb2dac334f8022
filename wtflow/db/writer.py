"""The database writer: a process of its own that turns a run's events into rows.

``wtflow.db.recorder`` starts it with ``python -m wtflow.db.writer`` and talks to it through
its stdin and stdout. Being a process, it connects while the runner is still loading the
workflow, and its work never competes with the event loop for the GIL. It writes through the
database's driver (:mod:`wtflow.db.plain`) and creates a new database's schema from its SQL
text (:mod:`wtflow.db.ddl`): SQLAlchemy's import cost 0.2 s of CPU a run, on the cores the
nodes need, and is paid now only when an older schema must be migrated.

Protocol: the runner sends pickled messages on stdin, first ``("open", url, retry)``, then its
run's events as :func:`wtflow.db.recorder.message` gives them (tuples of plain values, see
:mod:`wtflow.db.messages`). The writer answers one
JSON line on stdout once connected (``{"ready": true}``, or ``{"error": ..., "exit_code": ...}``)
and one when it ends (``{"lost": N, "error": ...}``). It gathers what arrives for a moment and
writes it in one transaction; if the database stops answering, events wait and are written
when it answers again. End of input means the runner is done; if its run was never closed
(the runner was killed), the writer marks the run ``crashed`` itself.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import signal
import socket
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from select import poll
from typing import Any, BinaryIO

from wtflow.db.ddl import prepare
from wtflow.db.messages import Message, from_micros
from wtflow.db.plain import HEAD, VERSION_TABLE, Database, display_url, from_engine, open_database, reason
from wtflow.errors import BackendUnavailable, WtflowError

# The writer refreshes its run's heartbeat this often; runs silent for STALE_AFTER count as crashed.
HEARTBEAT_SECONDS = 15.0
STALE_AFTER = timedelta(minutes=5)
# How long the writer gathers events before writing them in one transaction.
BATCH_SECONDS = 0.2
# How long events gather in the pipe between two reads, and the most read at once.
READ_SECONDS = 0.05
READ_SIZE = 1 << 20
CRASHED_ERROR = "the process running it ended without closing it"
_NODE_DEFAULTS: dict[str, Any] = {
    "path": "",
    "status": "pending",
    "exit_code": None,
    "attempts": 0,
    "started_at": None,
    "finished_at": None,
    "error": None,
}


def _insert(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(f':{c}' for c in columns)})"  # noqa: S608 - our names


_INSERT_RUN = _insert("wtflow_runs", ("id", "workflow", "status", "started_at", "host", "pid", "heartbeat_at"))
_INSERT_NODE = _insert("wtflow_node_runs", ("run_id", "name", "position", *_NODE_DEFAULTS))
_INSERT_ARTIFACT = _insert("wtflow_artifacts", ("run_id", "node", "name", "path", "size"))
_CLOSE_RUN = (
    "UPDATE wtflow_runs SET status = :status, exit_code = :exit_code, finished_at = :finished_at, error = :error "
    "WHERE id = :id"
)


def connect(url: str) -> Database:
    """Open ``url``, bring the schema up to date and mark crashed runs; :class:`BackendUnavailable` if unreachable.

    A database at the newest schema, or an empty one, is opened with its driver alone;
    SQLAlchemy is imported only to migrate an older schema, or for a URL only it reads.
    """
    plain = open_database(url)
    if plain is None:
        from wtflow.db.schema import open_upgraded  # SQLAlchemy: only when needed

        database = from_engine(open_upgraded(url), dispose=True)
    else:
        database = plain
    try:
        if plain is not None:
            try:
                plain.connect()  # first on its own: an unreachable server is waited for once
                current = revision(plain) == HEAD or prepare(plain)
            except plain.errors as exc:
                raise _unavailable(url, exc) from None
            if not current:  # an older schema: Alembic migrates it
                from wtflow.db.schema import open_upgraded  # SQLAlchemy: only when needed

                open_upgraded(url).dispose()
        mark_crashed(database, url=url)
    except BaseException:
        database.close()
        raise
    return database


def _unavailable(url: str, exc: BaseException) -> BackendUnavailable:
    return BackendUnavailable(f"database {display_url(url)} is unavailable: {reason(exc)}")


def revision(database: Database) -> str | None:
    """The database's schema revision; ``None`` for one wtflow has not set up."""
    try:
        with database.transaction() as cursor:
            rows = cursor.execute(f"SELECT version_num FROM {VERSION_TABLE}")  # noqa: S608 - a constant
    except database.errors:
        return None  # no version table: the schema's code decides what the database needs
    return str(rows[0][0]) if rows else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    return True


def mark_crashed(database: Database, now: datetime | None = None, *, url: str = "") -> int:
    """Mark ``running`` runs whose owner is gone as ``crashed``; return how many.

    A run's owner is gone when it ran on this host and its pid no longer exists, or when its
    heartbeat is older than :data:`STALE_AFTER` (runs of other hosts). The database's errors
    come as :class:`BackendUnavailable`, naming ``url``.
    """
    try:
        return _mark_crashed(database, now)
    except database.errors as exc:
        raise _unavailable(url, exc) from None


def _mark_crashed(database: Database, now: datetime | None) -> int:
    now = now or datetime.now(UTC)
    host = socket.gethostname()
    stale_before = now - STALE_AFTER
    with database.transaction() as cursor:
        running = cursor.execute("SELECT id, host, pid, heartbeat_at FROM wtflow_runs WHERE status = 'running'")
    crashed: list[str] = []
    for run_id, run_host, pid, heartbeat in running:
        beat = database.read_moment(heartbeat)
        if (run_host == host and not _alive(pid)) or (beat is not None and beat < stale_before):
            crashed.append(run_id)
    if crashed:
        _crash(database, crashed, now)
    return len(crashed)


def _crash(database: Database, run_ids: list[str], now: datetime) -> None:
    rows = [{"id": run_id, "now": database.moment(now), "error": CRASHED_ERROR} for run_id in run_ids]
    with database.transaction() as cursor:
        cursor.executemany(
            "UPDATE wtflow_runs SET status = 'crashed', finished_at = :now, error = :error "
            "WHERE id = :id AND status = 'running'",
            rows,
        )
        cursor.executemany(
            "UPDATE wtflow_node_runs SET status = 'cancelled', finished_at = :now "
            "WHERE run_id = :id AND status IN ('running', 'pending')",
            rows,
        )


class Inbox:
    """Messages handed from the thread reading the pipe to the one writing rows, taken in batches.

    The taker wakes for a batch's first message and for the end of input, not for each message:
    a wake-up per event cost the writer as much CPU as its SQL.
    """

    def __init__(self) -> None:
        self._items: list[Message] = []
        self._ended = False
        self._changed = threading.Condition()

    @property
    def ended(self) -> bool:
        """Whether the end of input has arrived."""
        return self._ended

    def put(self, item: Message | None) -> None:
        """Add a message; ``None`` marks the end of input."""
        with self._changed:
            if item is None:
                self._ended = True
                self._changed.notify()
            else:
                self._items.append(item)
                if len(self._items) == 1:
                    self._changed.notify()

    def wait(self, timeout: float, *, for_end: bool = False) -> bool:
        """Wait up to ``timeout`` s for a message (or only for the end); whether either is there."""
        with self._changed:
            return self._changed.wait_for(lambda: self._ended or (bool(self._items) and not for_end), timeout)

    def take(self) -> tuple[list[Message], bool]:
        """Every message waiting, and whether the end of input has arrived."""
        with self._changed:
            items, self._items = self._items, []
            return items, self._ended


class RowWriter:
    """Drains an :class:`Inbox` into the database in batched transactions."""

    def __init__(self, database: Database, inbox: Inbox, *, retry: float) -> None:
        self._database = database
        self._retry = retry  # seconds to keep retrying an unreachable database after the end of input
        self._inbox = inbox
        self._known_nodes: set[tuple[str, str]] = set()
        self._positions: dict[str, int] = {}
        self._run_id: str | None = None
        self._run_closed = False
        self._last_beat = time.monotonic()
        self.lost = 0
        self.last_error: str | None = None

    def drain(self) -> None:
        """Write messages as they come until the end of input, then close an unclosed run as crashed."""
        pending: list[Message] = []
        ended = False
        give_up_at = 0.0
        retry_delay = 0.1
        while True:
            # Wait for work (or for the next retry), then gather what else arrives for a moment,
            # so a busy run costs a few transactions instead of one per event.
            batch, ended_now = self._gather(retry_delay if pending else HEARTBEAT_SECONDS, ended=ended)
            if ended_now and not ended:
                ended = True
                give_up_at = time.monotonic() + self._retry
            if time.monotonic() - self._last_beat >= HEARTBEAT_SECONDS:
                self._beat()  # also while events keep coming: a busy run is not a silent one
            if not batch and not pending and not ended:
                continue
            pending.extend(batch)
            if pending:
                try:
                    self._write(pending)
                except self._database.errors as exc:
                    self.last_error = reason(exc)
                    if not (ended and time.monotonic() >= give_up_at):
                        retry_delay = min(retry_delay * 2, 5.0)
                        continue
                    self.lost += len(pending)
                pending = []
                retry_delay = 0.1
            if ended:
                self._close_unfinished()
                return

    def _gather(self, timeout: float, *, ended: bool) -> tuple[list[Message], bool]:
        if ended:  # nothing more will come: only the pause before the next retry
            time.sleep(timeout)
            return [], True
        if not self._inbox.wait(timeout):
            return [], self._inbox.ended
        self._inbox.wait(BATCH_SECONDS, for_end=True)  # what else arrives meanwhile joins the batch
        return self._inbox.take()

    def _beat(self) -> None:
        """Tell other processes this run's owner is alive (see :func:`mark_crashed`)."""
        self._last_beat = time.monotonic()
        if self._run_id is None or self._run_closed:
            return
        try:
            with self._database.transaction() as cursor:
                cursor.execute(
                    "UPDATE wtflow_runs SET heartbeat_at = :now WHERE id = :id",
                    {"now": self._database.moment(datetime.now(UTC)), "id": self._run_id},
                )
        except self._database.errors as exc:
            self.last_error = reason(exc)

    def _close_unfinished(self) -> None:
        """The runner ended without closing its run (it was killed): the run crashed."""
        if self._run_id is None or self._run_closed:
            return
        try:
            _crash(self._database, [self._run_id], datetime.now(UTC))
        except self._database.errors as exc:
            self.last_error = reason(exc)

    def _node_key(self, node: str) -> tuple[str, str]:
        if self._run_id is None:  # the runner sends "opened" first
            raise ValueError(f"node {node!r} reported before its run was opened")
        return self._run_id, node

    def _changes(
        self, messages: list[Message]
    ) -> tuple[
        list[dict[str, Any]], dict[str, dict[str, Any]], dict[tuple[str, str], dict[str, Any]], list[dict[str, Any]]
    ]:
        """New runs, run row changes, node row changes (one per node) and new artifacts."""
        new_runs: list[dict[str, Any]] = []
        run_changes: dict[str, dict[str, Any]] = {}
        node_changes: dict[tuple[str, str], dict[str, Any]] = {}
        artifacts: list[dict[str, Any]] = []
        moment = self._moment
        for message in messages:
            if message[0] == "opened":
                _, run_id, workflow, started_at, host, pid, nodes = message
                self._positions = {name: index for index, name in enumerate(nodes)}
                self._run_id = run_id
                new_runs.append(
                    {
                        "id": run_id,
                        "workflow": workflow,
                        "status": "running",
                        "started_at": moment(started_at),
                        "host": host,
                        "pid": pid,
                        "heartbeat_at": moment(started_at),
                    }
                )
            elif message[0] == "started":
                _, node, path, attempt, started_at = message
                node_changes.setdefault(self._node_key(node), {}).update(
                    path=path, status="running", attempts=attempt, started_at=moment(started_at)
                )
            elif message[0] == "finished":
                _, node, path, status, exit_code, attempt, started, finished_at, error, stored = message
                key = self._node_key(node)
                change = node_changes.setdefault(key, {})
                change.update(
                    path=path,
                    status=status,
                    exit_code=exit_code,
                    attempts=attempt,
                    finished_at=moment(finished_at),
                    error=error,
                )
                if started is not None:
                    change["started_at"] = moment(started)
                artifacts.extend(
                    {"run_id": key[0], "node": node, "name": name, "path": file, "size": size}
                    for name, file, size in stored
                )
            elif message[0] == "closed":
                _, run_id, status, exit_code, finished_at, error = message
                run_changes[run_id] = {
                    "id": run_id,
                    "status": status,
                    "exit_code": exit_code,
                    "finished_at": moment(finished_at),
                    "error": error,
                }
        return new_runs, run_changes, node_changes, artifacts

    def _moment(self, micros: int) -> Any:
        return self._database.moment(from_micros(micros))

    def _write(self, messages: list[Message]) -> None:
        """Write ``messages`` in one transaction, merging each node's events into one row change."""
        new_runs, run_changes, node_changes, artifacts = self._changes(messages)
        inserts = [
            {**_NODE_DEFAULTS, "run_id": run_id, "name": name, "position": self._positions.get(name, 0), **change}
            for (run_id, name), change in node_changes.items()
            if (run_id, name) not in self._known_nodes
        ]
        with self._database.transaction() as cursor:
            if new_runs:
                cursor.executemany(_INSERT_RUN, new_runs)
            if inserts:
                cursor.executemany(_INSERT_NODE, inserts)
            for columns, rows in _updates(node_changes, self._known_nodes).items():
                cursor.executemany(_update_node(columns), rows)
            if artifacts:
                cursor.executemany(_INSERT_ARTIFACT, artifacts)
            if run_changes:
                cursor.executemany(_CLOSE_RUN, list(run_changes.values()))
        self._known_nodes.update(node_changes)
        if self._run_id in run_changes:
            self._run_closed = True


def _update_node(columns: tuple[str, ...]) -> str:
    """One statement for many nodes' changes to ``columns`` (executemany)."""
    assignments = ", ".join(f"{column} = :{column}" for column in columns)  # columns are the writer's own names
    return f"UPDATE wtflow_node_runs SET {assignments} WHERE run_id = :row_run_id AND name = :row_name"  # noqa: S608


def _updates(
    node_changes: dict[tuple[str, str], dict[str, Any]], known: set[tuple[str, str]]
) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    """The changes to rows already written, grouped by the columns they set.

    A statement per node cost 0.1 ms each: 500 nodes finishing together took the writer 60 ms
    after the run had ended, which the runner waits for.
    """
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for (run_id, name), change in node_changes.items():
        if (run_id, name) in known:
            groups.setdefault(tuple(sorted(change)), []).append({"row_run_id": run_id, "row_name": name, **change})
    return groups


class _Input:
    """The runner's end of the pipe, read in gulps of whole pickled messages."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._rest = b""  # the start of a message not whole yet
        self._hang_up = poll()
        self._hang_up.register(fd, 0)  # no events asked for: poll ends early only when the runner closes

    def read(self) -> list[Any] | None:
        """The messages that have arrived, waiting for one if there is none; ``None`` at the end of input."""
        messages: list[Any] = []
        while not messages:
            data = os.read(self._fd, READ_SIZE)
            if not data:
                return None
            buffer, self._rest = self._rest + data, b""
            stream = io.BytesIO(buffer)
            while (start := stream.tell()) < len(buffer):
                try:
                    messages.append(pickle.load(stream))  # noqa: S301 - our own parent writes this pipe
                except (EOFError, pickle.UnpicklingError):  # the rest is still on its way
                    self._rest = buffer[start:]
                    break
        return messages

    def pause(self) -> None:
        """Let events gather in the pipe for READ_SECONDS, unless the runner closes its end first.

        A read for every event woke this process for each node, on the cores the nodes need. What
        the runner wrote waits in the pipe meanwhile, and is still read if the runner is killed.
        """
        self._hang_up.poll(READ_SECONDS * 1000)


def _read(source: _Input, messages: Inbox) -> None:
    """Pass the runner's messages on until its end of the pipe closes."""
    try:
        while (batch := source.read()) is not None:
            for message in batch:
                messages.put(message)
            source.pause()
    except OSError:
        pass
    finally:
        messages.put(None)


def _answer(out: BinaryIO, **fields: Any) -> None:
    out.write(json.dumps(fields).encode() + b"\n")
    out.flush()


def main() -> int:
    """Run the writer on this process's stdin and stdout (see the module's docstring)."""
    # Ctrl-C is the runner's to handle; the writer stops when the runner closes its pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    source, stdout = _Input(sys.stdin.fileno()), sys.stdout.buffer
    try:
        first = source.read()
    except OSError:
        return 2
    if not first or not (isinstance(first[0], tuple) and len(first[0]) == 3):
        return 2  # the runner ended, or this is not how a runner starts
    kind, url, retry = first[0]
    assert kind == "open"
    try:
        database = connect(url)
    except WtflowError as exc:
        _answer(stdout, error=str(exc), exit_code=exc.exit_code)
        return exc.exit_code
    _answer(stdout, ready=True)
    messages = Inbox()
    for message in first[1:]:  # none: the runner waits for the answer before it sends events
        messages.put(message)
    threading.Thread(target=_read, args=(source, messages), name="wtflow-db-reader", daemon=True).start()
    writer = RowWriter(database, messages, retry=retry)
    try:
        writer.drain()
    finally:
        database.close()
        _answer(stdout, lost=writer.lost, error=writer.last_error)
    return 0


if __name__ == "__main__":
    status = main()
    # Everything is written and answered: skip the interpreter's teardown (0.1 s with SQLAlchemy
    # loaded), for the runner waits for this process to end.
    sys.stdout.flush()
    os._exit(status)
