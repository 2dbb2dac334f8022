"""The database writer's own duties: heartbeats while a run lasts, reading the runner's pipe."""

from __future__ import annotations

import os
import pickle
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, Row, create_engine, select
from sqlalchemy.exc import OperationalError

from wtflow.db import crashes, writer
from wtflow.db.connect import normalise_url
from wtflow.db.history import open_history
from wtflow.db.messages import RunOpenedRow, to_micros
from wtflow.db.recorder import message
from wtflow.db.tables import node_runs, runs
from wtflow.events import NodeFinished, NodeStarted, NodeStatus, RunFinished, RunStatus


def test_a_busy_run_keeps_its_heartbeat_fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Other hosts count a run silent for five minutes as crashed: events must not delay the beat.
    monkeypatch.setattr(crashes, "HEARTBEAT_SECONDS", 0.2)
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    database = open_history(url)
    messages = writer.Inbox()
    row_writer = writer.RowWriter(database, messages, retry=1)
    drain = threading.Thread(target=row_writer.drain)
    drain.start()
    started = datetime.now(UTC)
    try:
        messages.put(opened("r1", "busy", started, ("a",)))
        for attempt in range(1, 61):  # an event every 20 ms for over a second: never a quiet moment
            messages.put(message(NodeStarted("r1", "a", "a", datetime.now(UTC), attempt)))
            time.sleep(0.02)
    finally:
        messages.put(None)
        drain.join(timeout=30)
    database.dispose()
    engine = create_engine(normalise_url(url))
    with engine.connect() as connection:
        beat = connection.scalar(select(runs.c.heartbeat_at))
    engine.dispose()
    assert beat is not None
    assert beat > started + timedelta(seconds=0.4)


def test_the_writer_reads_messages_split_across_writes_whole_and_in_order() -> None:
    read_end, write_end = os.pipe()
    source = writer._Input(read_end)
    first, second = pickle.dumps(("a", 1)), pickle.dumps({"b": "x" * 1000})
    os.write(write_end, first + second[:10])  # the second message only begun
    got = source.read()
    os.write(write_end, second[10:])
    got_later = source.read()
    os.close(write_end)
    at_end = source.read()
    os.close(read_end)
    assert got == [("a", 1)]
    assert got_later == [{"b": "x" * 1000}]
    assert at_end is None


def test_the_writer_stops_gathering_as_soon_as_the_runner_closes_its_end(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer, "READ_SECONDS", 60.0)
    read_end, write_end = os.pipe()
    source = writer._Input(read_end)
    os.close(write_end)
    started = time.monotonic()
    source.pause()
    os.close(read_end)
    assert time.monotonic() - started < 30  # not the minute it waits while the runner is there


def test_after_the_runner_ends_an_unreachable_database_is_retried_with_pauses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = open_history(f"sqlite:///{tmp_path / 'runs.db'}")
    attempts: list[float] = []

    def unreachable(self: writer.RowWriter, messages: list[writer.Message]) -> None:
        attempts.append(time.monotonic())
        raise OperationalError("COMMIT", {}, sqlite3.OperationalError("the database went away"))

    monkeypatch.setattr(writer.RowWriter, "_write", unreachable)
    messages = writer.Inbox()
    row_writer = writer.RowWriter(database, messages, retry=1)
    messages.put(message(NodeStarted("r1", "a", "a", datetime.now(UTC), 1)))
    messages.put(None)  # the runner has ended: nothing more will come
    row_writer.drain()
    database.dispose()
    assert row_writer.lost == 1
    assert row_writer.last_error == "the database went away"
    # Pauses of 0.1, 0.2, 0.4, 0.8 s between tries for the second of retrying: a handful of
    # tries, not a loop that hammers the database as fast as it can.
    assert 2 <= len(attempts) <= 10


def test_nodes_changing_after_their_start_was_written_have_their_rows_updated(database_url: str) -> None:
    database = open_history(database_url)
    engine = create_engine(normalise_url(database_url))
    messages = writer.Inbox()
    drain = threading.Thread(target=writer.RowWriter(database, messages, retry=1).drain)
    drain.start()
    started = datetime.now(UTC).replace(microsecond=0)
    later = started + timedelta(seconds=3)
    try:
        messages.put(opened("r1", "wide", started, ("a", "b", "c")))
        for name in ("a", "b", "c"):
            messages.put(message(NodeStarted("r1", name, f"wide/{name}", started)))
        deadline = time.monotonic() + 30
        while len(node_rows(engine)) < 3 and time.monotonic() < deadline:  # until the first batch is written
            time.sleep(0.01)
        # Then, in one batch, changes that set different columns: two finishes and a retry.
        messages.put(message(NodeFinished("r1", "a", "wide/a", NodeStatus.SUCCEEDED, 0, started, later)))
        messages.put(message(NodeFinished("r1", "b", "wide/b", NodeStatus.FAILED, 3, started, later)))
        messages.put(message(NodeStarted("r1", "c", "wide/c", later, attempt=2)))
        messages.put(message(RunFinished("r1", "wide", RunStatus.FAILED, 1, started, later)))
    finally:
        messages.put(None)
        drain.join(timeout=30)
    database.dispose()
    rows = node_rows(engine)
    engine.dispose()
    assert [(r.name, r.status, r.exit_code, r.attempts, r.started_at, r.finished_at) for r in rows] == [
        ("a", "succeeded", 0, 1, started, later),
        ("b", "failed", 3, 1, started, later),
        ("c", "running", None, 2, later, None),
    ]


def opened(run_id: str, workflow: str, started: datetime, nodes: tuple[str, ...]) -> RunOpenedRow:
    return ("opened", run_id, workflow, to_micros(started), "elsewhere", os.getpid(), nodes, None)


def node_rows(engine: Engine) -> list[Row[Any]]:
    with engine.connect() as connection:
        return list(connection.execute(select(node_runs).order_by(node_runs.c.position)))


def test_preparing_a_url_connects_to_nothing_and_leaves_its_errors_to_opening(tmp_path: Path) -> None:
    writer.prepare(f"sqlite:///{tmp_path / 'new' / 'runs.db'}")
    writer.prepare("not a url")
    writer.prepare("mysql://root@localhost/test")
    assert list(tmp_path.iterdir()) == []
