"""The database going away mid-run: the nodes carry on; rows arrive when it returns, or a warning says they did not."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import create_engine, func, select

from tests.conftest import wait_for
from wtflow import Command, Config, DatabaseConfig, Engine, Node, RunConfig, StorageConfig, Workflow
from wtflow.db import writer_process
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
        self.flowing = threading.Event()  # cleared: connections stay open but nothing gets through
        self.flowing.set()
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

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self.flowing.wait()
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

    def freeze(self) -> None:
        """Hold everything sent from now on, as a network that drops packets does."""
        self.flowing.clear()

    def close(self) -> None:
        self.cut()
        self.flowing.set()
        self.listener.close()


class GatedRun:
    """A run in a thread whose first node waits at a gate, so the test can act while it waits."""

    def __init__(self, tmp_path: Path, name: str, config: Config, *after: Node) -> None:
        started, self._gate = tmp_path / "started", tmp_path / "gate"
        waiting = f"touch {started}; while [ ! -e {self._gate} ]; do sleep 0.02; done"
        root = Node("root", children=[Node("first", executable=Command(waiting)), *after])
        self.engine = Engine(Workflow(name, root), config, observers=[])
        self._outcome: list[int] = []
        self._thread = threading.Thread(target=lambda: self._outcome.append(self.engine.run()))
        self._thread.start()
        wait_for(started.exists)

    def release(self) -> None:
        """Let the first node end."""
        self._gate.touch()

    def finish(self) -> int:
        """The run's exit code, once it has ended."""
        self._thread.join(timeout=60)
        assert self._outcome, "the run did not end"
        return self._outcome[0]


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
    # "first" runs while the database is up; the test cuts it; "second" and "third" run while it is down.
    config = Config(db=DatabaseConfig(url), storage=StorageConfig(tmp_path / "arts"), run=RunConfig(kill_grace=1))
    run = GatedRun(
        tmp_path,
        "outage",
        config,
        Node("second", executable=Command("echo during the outage")),
        Node("third", executable=Command("echo still down")),
    )
    proxy.cut()
    run.release()
    engine = run.engine
    assert engine.scheduler is not None
    events_file = engine.scheduler.run_dir / "events.jsonl"
    wait_for(lambda: '"run_finished"' in events_file.read_text())  # every node ran with the database down
    assert count_rows(postgres_url, "third") == 0  # its rows are still waiting in the writer
    proxy.restore()
    assert run.finish() == 0
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
    config = Config(db=DatabaseConfig(url, retry=0.5), storage=StorageConfig(tmp_path / "arts"))
    run = GatedRun(tmp_path, "lost", config, Node("second", executable=Command("echo during the outage")))
    proxy.cut()  # and it never comes back
    run.release()
    assert run.finish() == 0  # the run itself succeeded
    engine = run.engine
    assert engine.result is not None
    events_file = engine.result.run_dir / "events.jsonl"
    assert len(engine.warnings) == 1
    assert re.fullmatch(
        rf"\d+ events could not be written to the database \(.+\); {events_file} has every event", engine.warnings[0]
    )
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    assert [e["node"] for e in events if e["event"] == "node_finished"] == ["first", "second", "root"]


def test_a_database_writer_that_dies_mid_run_leaves_a_warning_and_the_run_goes_on(tmp_path: Path) -> None:
    config = Config(db=DatabaseConfig(f"sqlite:///{tmp_path / 'runs.db'}"), storage=StorageConfig(tmp_path / "arts"))
    run = GatedRun(tmp_path, "orphaned", config, Node("second", executable=Command("echo after the writer died")))
    writers = [pid for pid in children() if b"wtflow.db.writer" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(writers) == 1
    os.kill(writers[0], signal.SIGKILL)
    run.release()
    assert run.finish() == 0
    engine = run.engine
    assert engine.result is not None
    assert engine.warnings == [
        f"the database writer ended unexpectedly (exit -9); rows may be missing; "
        f"{engine.result.run_dir / 'events.jsonl'} has every event"
    ]


@pytest.mark.postgres
def test_a_database_that_stops_answering_delays_the_end_of_a_run_by_a_bounded_time(
    tmp_path: Path, proxied_url: tuple[str, Proxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_process, "FINISH_GRACE", 1.0)
    url, proxy = proxied_url
    config = Config(db=DatabaseConfig(url, retry=0.5), storage=StorageConfig(tmp_path / "arts"))
    run = GatedRun(tmp_path, "silent", config, Node("second", executable=Command("echo while nothing answers")))
    proxy.freeze()  # connected, but no answer will ever come: the writer's next statement hangs
    run.release()
    assert run.finish() == 0
    engine = run.engine
    assert engine.result is not None
    assert engine.warnings == [
        "the database writer was still writing 1.5 s after the run ended (the database stopped answering) "
        f"and was stopped; rows may be missing; {engine.result.run_dir / 'events.jsonl'} has every event"
    ]
    assert not [pid for pid in children() if b"wtflow.db.writer" in Path(f"/proc/{pid}/cmdline").read_bytes()]
