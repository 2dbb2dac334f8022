"""The database going away mid-run: the nodes carry on; rows arrive when it returns, or a warning says they did not."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import create_engine, func, select

from wtflow import Command, Config, DatabaseConfig, Engine, Node, RunConfig, StorageConfig, Workflow
from wtflow.db.connect import normalise_url
from wtflow.db.tables import node_runs, runs
from wtflow.orphans import children


class Proxy:
    """A TCP proxy on 127.0.0.1 that can drop every connection and refuse new ones, then come back."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open = threading.Event()
        self.open.set()
        self.connections: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open.is_set():
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.connections += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                end.close()

    def cut(self) -> None:
        self.open.clear()
        with self.lock:
            for connection in self.connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
                connection.close()
            self.connections.clear()

    def restore(self) -> None:
        self.open.set()

    def close(self) -> None:
        self.cut()
        self.listener.close()


def wait_for(condition: Callable[[], bool], seconds: float = 60) -> None:
    """Poll ``condition`` until it holds; fail after ``seconds`` (a hang, not a slow machine)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.01)


def count_rows(url: str, node: str) -> int:
    db = create_engine(normalise_url(url))
    try:
        with db.connect() as session:
            return session.scalar(select(func.count()).where(node_runs.c.name == node)) or 0
    finally:
        db.dispose()


@pytest.fixture
def proxied_url(postgres_url: str) -> Iterator[tuple[str, Proxy]]:
    parts = urlsplit(postgres_url)
    proxy = Proxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    netloc = f"{parts.username}@127.0.0.1:{proxy.port}" if parts.username else f"127.0.0.1:{proxy.port}"
    try:
        yield urlunsplit(parts._replace(netloc=netloc)), proxy
    finally:
        proxy.close()


@pytest.mark.postgres
def test_nodes_carry_on_while_the_database_is_down_and_rows_arrive_when_it_returns(
    tmp_path: Path, proxied_url: tuple[str, Proxy], postgres_url: str
) -> None:
    url, proxy = proxied_url
    gate, down = tmp_path / "gate", tmp_path / "down"
    # "first" runs while the database is up; the test cuts it; "second" and "third" run while it is down.
    root = Node(
        "root",
        children=[
            Node("first", executable=Command(f"touch {down}.wait; while [ ! -e {gate} ]; do sleep 0.02; done")),
            Node("second", executable=Command("echo during the outage")),
            Node("third", executable=Command("echo still down")),
        ],
    )
    config = Config(db=DatabaseConfig(url), storage=StorageConfig(tmp_path / "arts"), run=RunConfig(kill_grace=1))
    engine = Engine(Workflow("outage", root), config, observers=[])
    outcome: list[int] = []
    runner = threading.Thread(target=lambda: outcome.append(engine.run()))
    runner.start()
    wait_for(lambda: Path(f"{down}.wait").exists())
    proxy.cut()
    gate.touch()
    assert engine.scheduler is not None
    events_file = engine.scheduler.layout.run_dir / "events.jsonl"
    wait_for(lambda: '"run_finished"' in events_file.read_text())  # every node ran with the database down
    assert count_rows(postgres_url, "third") == 0  # its rows are still waiting in the writer
    proxy.restore()
    runner.join(timeout=60)
    assert outcome == [0]
    assert engine.result is not None
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    assert [e["node"] for e in events if e["event"] == "node_finished"] == ["first", "second", "third", "root"]
    db = create_engine(normalise_url(postgres_url))
    try:
        with db.connect() as session:
            assert session.scalars(select(runs.c.status)).all() == ["succeeded"]
            statuses = dict(session.execute(select(node_runs.c.name, node_runs.c.status)).all())
            assert statuses == dict.fromkeys(("root", "first", "second", "third"), "succeeded")
            assert session.scalar(select(func.count()).select_from(node_runs)) == 4
    finally:
        db.dispose()


@pytest.mark.postgres
def test_rows_the_database_never_takes_are_given_up_after_the_retry_time_with_a_warning(
    tmp_path: Path, proxied_url: tuple[str, Proxy]
) -> None:
    url, proxy = proxied_url
    gate, down = tmp_path / "gate", tmp_path / "down"
    root = Node(
        "root",
        children=[
            Node("first", executable=Command(f"touch {down}; while [ ! -e {gate} ]; do sleep 0.02; done")),
            Node("second", executable=Command("echo during the outage")),
        ],
    )
    config = Config(db=DatabaseConfig(url, retry=0.5), storage=StorageConfig(tmp_path / "arts"))
    engine = Engine(Workflow("lost", root), config, observers=[])
    outcome: list[int] = []
    runner = threading.Thread(target=lambda: outcome.append(engine.run()))
    runner.start()
    wait_for(down.exists)
    proxy.cut()  # and it never comes back
    gate.touch()
    runner.join(timeout=60)
    assert outcome == [0]  # the run itself succeeded
    assert engine.result is not None
    events_file = engine.result.run_dir / "events.jsonl"
    assert len(engine.warnings) == 1
    assert re.fullmatch(
        rf"\d+ events could not be written to the database \(.+\); {events_file} has every event", engine.warnings[0]
    )
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    assert [e["node"] for e in events if e["event"] == "node_finished"] == ["first", "second", "root"]


def test_a_database_writer_that_dies_mid_run_leaves_a_warning_and_the_run_goes_on(tmp_path: Path) -> None:
    gate, started = tmp_path / "gate", tmp_path / "started"
    root = Node(
        "root",
        children=[
            Node("first", executable=Command(f"touch {started}; while [ ! -e {gate} ]; do sleep 0.02; done")),
            Node("second", executable=Command("echo after the writer died")),
        ],
    )
    config = Config(db=DatabaseConfig(f"sqlite:///{tmp_path / 'runs.db'}"), storage=StorageConfig(tmp_path / "arts"))
    engine = Engine(Workflow("orphaned", root), config, observers=[])
    outcome: list[int] = []
    runner = threading.Thread(target=lambda: outcome.append(engine.run()))
    runner.start()
    wait_for(started.exists)
    writers = [pid for pid in children() if b"wtflow.db.writer" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(writers) == 1
    os.kill(writers[0], signal.SIGKILL)
    gate.touch()
    runner.join(timeout=60)
    assert outcome == [0]
    assert engine.result is not None
    assert engine.warnings == [
        f"the database writer ended unexpectedly (exit -9); rows may be missing; "
        f"{engine.result.run_dir / 'events.jsonl'} has every event"
    ]
