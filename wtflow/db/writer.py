"""The database writer: a process of its own that turns a run's events into rows.

:mod:`wtflow.db.writer_process` starts it with ``python -m wtflow.db.writer`` and talks to it
through its stdin and stdout. Being a process, it imports SQLAlchemy and connects while the
runner is still loading the workflow, and its work never competes with the event loop for the
GIL. Every statement it runs is built with SQLAlchemy Core from :mod:`wtflow.db.tables`
(SQLAlchemy caches each one's compiled form).

Protocol: the runner sends pickled messages on stdin: ``("prepare", url)`` any number of times
as soon as it knows the database (:func:`prepare`: no connection yet), then ``("open", url,
retry)``, then its run's events as :func:`wtflow.db.recorder.message` gives them (tuples of plain values, see
:mod:`wtflow.db.messages`). The writer answers one
JSON line on stdout once connected (``{"ready": true}``, or ``{"error": ..., "exit_code": ...}``)
and one when it ends (``{"lost": N, "error": ...}``). It gathers what arrives for a moment and
writes it in one transaction; if the database stops answering, events wait and are written
when it answers again. End of input means the runner is done; if its run was never closed
(the runner was killed), the writer marks the run ``crashed`` itself.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from select import poll
from typing import Any, BinaryIO

from sqlalchemy import Engine, bindparam, insert, update
from sqlalchemy.exc import DBAPIError

from wtflow.db import crashes
from wtflow.db.connect import normalise_url, reason
from wtflow.db.history import open_history
from wtflow.db.messages import Message, from_micros
from wtflow.db.tables import artifacts, node_outputs, node_runs, runs
from wtflow.errors import WtflowError

# How long the writer gathers events before writing them in one transaction.
BATCH_SECONDS = 0.2
# How long events gather in the pipe between two reads, and the most read at once. A read this
# full finds the runner writing faster than the pause lets through (a pipe holds 64 KiB): no pause.
READ_SECONDS = 0.05
READ_SIZE = 1 << 20
BUSY_READ = 16 << 10
_NODE_DEFAULTS: dict[str, Any] = {
    "path": "",
    "status": "pending",
    "exit_code": None,
    "attempts": 0,
    "started_at": None,
    "finished_at": None,
    "error": None,
    "reused_from": None,
    "saved": None,
    "worker": None,
}
# Executed with a list of rows (executemany); an UPDATE sets the columns the rows' keys name.
_INSERT_RUN = insert(runs)
_INSERT_NODE = insert(node_runs)
_INSERT_ARTIFACT = insert(artifacts)
_INSERT_OUTPUT = insert(node_outputs)
_UPDATE_RUN = update(runs).where(runs.c.id == bindparam("row_id"))
_UPDATE_NODE = update(node_runs).where(
    node_runs.c.run_id == bindparam("row_run_id"), node_runs.c.name == bindparam("row_name")
)


class Inbox:
    """Messages handed from the thread reading the pipe to the one writing rows, taken in batches.

    The taker wakes for a batch's first message and for the end of input, not for each message:
    waking for every event would cost the writer CPU on the cores the run's nodes need.
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


@dataclass
class _Changes:
    """A batch of messages as rows: new runs, changes to runs and nodes (one per node), new artifacts and outputs."""

    new_runs: list[dict[str, Any]] = field(default_factory=list)
    run_changes: dict[str, dict[str, Any]] = field(default_factory=dict)
    node_changes: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    artifact_rows: list[dict[str, Any]] = field(default_factory=list)
    output_rows: list[dict[str, Any]] = field(default_factory=list)


class RowWriter:
    """Drains an :class:`Inbox` into the database in batched transactions."""

    def __init__(self, engine: Engine, inbox: Inbox, *, retry: float) -> None:
        self._engine = engine
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
            batch, ended_now = self._gather(retry_delay if pending else crashes.HEARTBEAT_SECONDS, ended=ended)
            if ended_now and not ended:
                ended = True
                give_up_at = time.monotonic() + self._retry
            if time.monotonic() - self._last_beat >= crashes.HEARTBEAT_SECONDS:
                self._beat()  # also while events keep coming: a busy run is not a silent one
            if not batch and not pending and not ended:
                continue
            pending.extend(batch)
            if pending:
                try:
                    self._write(pending)
                except DBAPIError as exc:
                    self.last_error = reason(exc.orig or exc)
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
        """Tell other processes this run's owner is alive (see :mod:`wtflow.db.crashes`)."""
        self._last_beat = time.monotonic()
        if self._run_id is None or self._run_closed:
            return
        try:
            with self._engine.begin() as connection:
                connection.execute(_UPDATE_RUN, [{"row_id": self._run_id, "heartbeat_at": datetime.now(UTC)}])
        except DBAPIError as exc:
            self.last_error = reason(exc.orig or exc)

    def _close_unfinished(self) -> None:
        """The runner ended without closing its run (it was killed): the run crashed."""
        if self._run_id is None or self._run_closed:
            return
        try:
            crashes.crash(self._engine, [self._run_id], datetime.now(UTC))
        except DBAPIError as exc:
            self.last_error = reason(exc.orig or exc)

    def _node_key(self, node: str) -> tuple[str, str]:
        if self._run_id is None:  # the runner sends "opened" first
            raise ValueError(f"node {node!r} reported before its run was opened")
        return self._run_id, node

    def _changes(self, messages: list[Message]) -> _Changes:
        """What ``messages`` change, each node's events merged into one row change."""
        changes = _Changes()
        new_runs, run_changes, node_changes = changes.new_runs, changes.run_changes, changes.node_changes
        for message in messages:
            if message[0] == "opened":
                _, run_id, workflow, started_at, host, pid, nodes, workflow_dir = message
                self._positions = {name: index for index, name in enumerate(nodes)}
                self._run_id = run_id
                started = from_micros(started_at)
                new_runs.append(
                    {
                        "id": run_id,
                        "workflow": workflow,
                        "status": "running",
                        "started_at": started,
                        "host": host,
                        "pid": pid,
                        "heartbeat_at": started,
                        "workflow_dir": workflow_dir,
                    }
                )
            elif message[0] == "started":
                _, node, path, attempt, started_at = message
                node_changes.setdefault(self._node_key(node), {}).update(
                    path=path, status="running", attempts=attempt, started_at=from_micros(started_at)
                )
            elif message[0] == "finished":
                (
                    _,
                    node,
                    path,
                    status,
                    exit_code,
                    attempt,
                    begun,
                    finished_at,
                    error,
                    stored,
                    outputs,
                    source,
                    saved,
                    worker,
                ) = message
                key = self._node_key(node)
                change = node_changes.setdefault(key, {})
                change.update(
                    path=path,
                    status=status,
                    exit_code=exit_code,
                    attempts=attempt,
                    finished_at=from_micros(finished_at),
                    error=error,
                    reused_from=source,
                    saved=saved,
                    worker=worker,
                )
                if begun is not None:
                    change["started_at"] = from_micros(begun)
                changes.artifact_rows.extend(
                    {"run_id": key[0], "node": node, "name": name, "path": file, "size": size}
                    for name, file, size in stored
                )
                changes.output_rows.extend(
                    {"run_id": key[0], "node": node, "key": name, "value": value} for name, value in outputs
                )
            elif message[0] == "closed":
                _, run_id, status, exit_code, finished_at, error = message
                run_changes[run_id] = {
                    "row_id": run_id,
                    "status": status,
                    "exit_code": exit_code,
                    "finished_at": from_micros(finished_at),
                    "error": error,
                }
        return changes

    def _write(self, messages: list[Message]) -> None:
        """Write ``messages`` in one transaction, merging each node's events into one row change."""
        changes = self._changes(messages)
        new_runs, run_changes, node_changes = changes.new_runs, changes.run_changes, changes.node_changes
        inserts = [
            {**_NODE_DEFAULTS, "run_id": run_id, "name": name, "position": self._positions.get(name, 0), **change}
            for (run_id, name), change in node_changes.items()
            if (run_id, name) not in self._known_nodes
        ]
        with self._engine.begin() as connection:
            if new_runs:
                connection.execute(_INSERT_RUN, new_runs)
            if inserts:
                connection.execute(_INSERT_NODE, inserts)
            for rows in _updates(node_changes, self._known_nodes):
                connection.execute(_UPDATE_NODE, rows)
            # A node's artifacts and outputs refer to its row: written after it.
            if changes.artifact_rows:
                connection.execute(_INSERT_ARTIFACT, changes.artifact_rows)
            if changes.output_rows:
                connection.execute(_INSERT_OUTPUT, changes.output_rows)
            if run_changes:
                connection.execute(_UPDATE_RUN, list(run_changes.values()))
        self._known_nodes.update(node_changes)
        if self._run_id in run_changes:
            self._run_closed = True


def _updates(
    node_changes: dict[tuple[str, str], dict[str, Any]], known: set[tuple[str, str]]
) -> list[list[dict[str, Any]]]:
    """The changes to rows already written, grouped by the columns they set: one executemany per group.

    Many nodes often finish in one batch; a statement per node would make the runner, which
    waits for the writer at the end of a run, wait for each.
    """
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for (run_id, name), change in node_changes.items():
        if (run_id, name) in known:
            groups.setdefault(tuple(sorted(change)), []).append({"row_run_id": run_id, "row_name": name, **change})
    return list(groups.values())


class _Input:
    """The runner's end of the pipe, read in gulps of whole pickled messages."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._rest = b""  # the start of a message not whole yet
        self._last_read = 0  # bytes of the last read
        self._hang_up = poll()
        self._hang_up.register(fd, 0)  # no events asked for: poll ends early only when the runner closes

    def read(self) -> list[Any] | None:
        """The messages that have arrived, waiting for one if there is none; ``None`` at the end of input."""
        messages: list[Any] = []
        while not messages:
            data = os.read(self._fd, READ_SIZE)
            self._last_read = len(data)
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

        A read for every event would wake this process for each node, on the cores the nodes need.
        What the runner wrote waits in the pipe meanwhile, and is still read if the runner is killed.
        After a read of BUSY_READ bytes or more there is no pause: the pipe is filling faster
        than pauses would empty it, and the runner would wait for it at the end.
        """
        if self._last_read < BUSY_READ:
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


def prepare(url: str) -> None:
    """Do what opening ``url`` will need and no connection does: import its dialect and driver.

    Only a head start: whatever is wrong with the URL is reported when the run opens it.
    """
    with contextlib.suppress(Exception):
        normalise_url(url).get_dialect().import_dbapi()


def main() -> int:
    """Run the writer on this process's stdin and stdout (see the module's docstring)."""
    # Ctrl-C is the runner's to handle; the writer stops when the runner closes its pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    source, stdout = _Input(sys.stdin.fileno()), sys.stdout.buffer
    try:
        first = source.read()
        while first and isinstance(first[0], tuple) and first[0][:1] == ("prepare",):
            prepare(first[0][1])
            first = first[1:] or source.read()
    except OSError:
        return 2
    if not first or not (isinstance(first[0], tuple) and len(first[0]) == 3 and first[0][0] == "open"):
        return 2  # the runner ended, or this is not how a runner starts
    _, url, retry = first[0]
    try:
        engine = open_history(url)
    except WtflowError as exc:
        _answer(stdout, error=str(exc), exit_code=exc.exit_code)
        return exc.exit_code
    _answer(stdout, ready=True)
    messages = Inbox()
    for message in first[1:]:  # none: the runner waits for the answer before it sends events
        messages.put(message)
    threading.Thread(target=_read, args=(source, messages), name="wtflow-db-reader", daemon=True).start()
    writer = RowWriter(engine, messages, retry=retry)
    try:
        writer.drain()
    finally:
        engine.dispose()
        _answer(stdout, lost=writer.lost, error=writer.last_error)
    return 0


if __name__ == "__main__":
    status = main()
    # Everything is written and answered: skip the interpreter's teardown (long with SQLAlchemy
    # loaded), for the runner waits for this process to end.
    sys.stdout.flush()
    os._exit(status)
