"""The CLI as real processes: many runs into one database at once, and signals."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, func, select

from tests.conftest import process_alive, wait_for
from wtflow.db.connect import normalise_url
from wtflow.db.tables import artifacts, node_runs, runs
from wtflow.orphans import children

WORKFLOW = """
name: many
root:
  name: root
  parallel: true
  children:
    - {name: a, command: echo a}
    - {name: b, command: "echo b >&2"}
    - {name: c, command: [printf, c]}
"""


def wtflow(*args: str, cwd: Path, **kwargs: object) -> subprocess.Popen[bytes]:
    env = {**os.environ, "WTFLOW_LOG_FORMAT": "json"}
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "wtflow", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,
    )


def run_concurrently(tmp_path: Path, db_url: str, count: int) -> None:
    (tmp_path / "wtflow.yml").write_text(WORKFLOW)
    processes = [wtflow("run", "--db-url", db_url, cwd=tmp_path) for _ in range(count)]
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr.decode()
        assert b"database is locked" not in stderr
    engine = create_engine(normalise_url(db_url))
    try:
        with engine.connect() as session:
            run_rows = session.execute(select(runs)).all()
            assert len(run_rows) == count
            assert {(r.status, r.exit_code) for r in run_rows} == {("succeeded", 0)}
            assert all(r.finished_at is not None for r in run_rows)
            nodes = session.execute(select(node_runs.c.status, func.count()).group_by(node_runs.c.status)).all()
            assert nodes == [("succeeded", 4 * count)]
            assert session.scalar(select(func.count()).select_from(artifacts)) == 3 * 2 * count
    finally:
        engine.dispose()


def test_fifty_concurrent_runs_into_one_sqlite_file(tmp_path: Path) -> None:
    run_concurrently(tmp_path, f"sqlite:///{tmp_path / 'shared.db'}", 50)


@pytest.mark.postgres
def test_fifty_concurrent_runs_into_postgres(tmp_path: Path, postgres_url: str) -> None:
    run_concurrently(tmp_path, postgres_url, 50)


SLOW = """
name: slow
root:
  name: root
  children:
    - {name: sleeper, command: "echo started; exec sleep 300"}
    - {name: after, command: "true"}
"""


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_the_run_and_records_it_cancelled(tmp_path: Path, sig: signal.Signals, code: int) -> None:
    (tmp_path / "wtflow.yml").write_text(SLOW)
    process = wtflow("run", "--kill-grace", "5", cwd=tmp_path)
    assert process.stderr is not None
    seen = []
    for line in process.stderr:  # JSON logs carry node output as events: wait for the node's first line
        seen.append(json.loads(line))
        if seen[-1]["event"] == "output":
            break
    assert seen[-1] | {"node": "sleeper", "line": "started"} == seen[-1]
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code
    assert b"Traceback" not in stderr
    events = seen + [json.loads(line) for line in stderr.decode().splitlines()]
    assert events[-1]["event"] == "error"
    assert events[-1]["message"] == f"interrupted by {sig.name}"
    finished = next(e for e in events if e["event"] == "run_finished")
    assert (finished["status"], finished["exit_code"]) == ("cancelled", code)
    run_json = json.loads(next((tmp_path / ".wtflow" / "artifacts").glob("*/run.json")).read_text())
    assert run_json["nodes"]["sleeper"]["status"] == "cancelled"
    assert run_json["nodes"]["after"]["status"] == "skipped"


@dataclass
class DoomedRun:
    """`wtflow run` of a node that sleeps, started for the test to kill; its node is cleaned up after."""

    process: subprocess.Popen[bytes]
    url: str
    db: Engine
    node_pid_file: Path

    def node_pid(self) -> int:
        wait_for(lambda: self.node_pid_file.exists() and self.node_pid_file.read_text().strip() != "")
        return int(self.node_pid_file.read_text())


@contextlib.contextmanager
def doomed_run(tmp_path: Path) -> Iterator[DoomedRun]:
    pid_file = tmp_path / "node.pid"
    (tmp_path / "wtflow.yml").write_text(
        f'name: doomed\nroot: {{name: sleeper, command: "echo $$ > {pid_file}; exec sleep 300"}}\n'
    )
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    process = wtflow("run", "--db-url", url, cwd=tmp_path)
    assert process.stderr is not None
    db = create_engine(normalise_url(url))
    try:
        for line in process.stderr:  # wait until the node runs
            if json.loads(line)["event"] == "node_started":
                break
        yield DoomedRun(process, url, db, pid_file)
    finally:
        db.dispose()
        if pid_file.exists():
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)
        process.stderr.close()
        if process.stdout:
            process.stdout.close()


def test_run_of_a_killed_wtflow_is_marked_crashed_by_its_database_writer(tmp_path: Path) -> None:
    # The writer process sees its input end without the run being closed: it closes the run
    # itself, without waiting for another wtflow command, and then exits.
    with doomed_run(tmp_path) as doomed:
        node = doomed.node_pid()
        helpers = [pid for pid in children(doomed.process.pid) if pid != node]
        doomed.process.kill()
        doomed.process.wait(timeout=30)
        statuses: tuple[str | None, list[str]] = (None, [])
        with doomed.db.connect() as session:

            def crashed() -> bool:  # the writer retries for a while, then closes the run
                nonlocal statuses
                session.rollback()
                statuses = (session.scalar(select(runs.c.status)), list(session.scalars(select(node_runs.c.status))))
                return statuses[0] == "crashed"

            wait_for(crashed, seconds=30)
        assert statuses == ("crashed", ["cancelled"])
        assert helpers, "the writer process was not found"
        wait_for(lambda: not any(process_alive(pid) for pid in helpers), seconds=30)


def test_run_of_a_killed_wtflow_is_marked_crashed_by_the_next_one(tmp_path: Path) -> None:
    with doomed_run(tmp_path) as doomed:
        with doomed.db.connect() as session:

            def recorded() -> bool:  # the writer batches events for 0.2 s
                session.rollback()
                return bool(session.scalar(select(func.count()).select_from(node_runs)))

            wait_for(recorded, seconds=30)
        doomed.process.kill()
        doomed.process.wait(timeout=30)
        listing = subprocess.run(
            [sys.executable, "-m", "wtflow", "runs", "list", "--db-url", doomed.url],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert listing.returncode == 0, listing.stderr
        assert listing.stdout.splitlines()[1].split()[1:3] == ["doomed", "crashed"]
        with doomed.db.connect() as session:
            assert session.scalars(select(node_runs.c.status)).all() == ["cancelled"]


def test_daemons_that_left_their_process_group_are_stopped_when_the_run_ends(tmp_path: Path) -> None:
    pid_file = tmp_path / "daemon.pid"
    (tmp_path / "wtflow.yml").write_text(
        "name: d\nroot:\n  name: starter\n"
        f"  command: \"setsid sh -c 'echo $$ > {pid_file}; exec sleep 300' > /dev/null 2>&1 < /dev/null &"
        f' while [ ! -s {pid_file} ]; do sleep 0.01; done"\n'
    )
    process = wtflow("run", "--kill-grace", "2", cwd=tmp_path)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr.decode()
    daemon = int(pid_file.read_text())
    try:
        assert not process_alive(daemon)
    finally:
        if process_alive(daemon):
            os.kill(daemon, signal.SIGKILL)


STUBBORN = """
name: stubborn
root:
  name: ignores-term
  command: "trap 'echo got-term' TERM; echo started; while true; do sleep 0.1; done"
"""


def test_a_second_signal_stops_nodes_without_waiting_for_the_grace_period(tmp_path: Path) -> None:
    (tmp_path / "wtflow.yml").write_text(STUBBORN)
    process = wtflow("run", "--kill-grace", "600", cwd=tmp_path)
    assert process.stderr is not None
    lines = iter(process.stderr)
    for wanted in ("started", "got-term"):  # the node's output arrives as JSON output events
        for line in lines:
            if json.loads(line).get("line") == wanted:
                break
        process.send_signal(signal.SIGINT)  # first: SIGTERM to the node, which ignores it; second: kill now
    _, stderr = process.communicate(timeout=60)  # far below the 600 s grace
    assert process.returncode == 130
    finished = [json.loads(line) for line in stderr.decode().splitlines() if '"run_finished"' in line]
    assert finished[0]["status"] == "cancelled"


def test_the_command_exits_with_its_code_after_writing_all_its_output(tmp_path: Path) -> None:
    # `wtflow` ends its process without the interpreter's teardown: output must still be whole.
    (tmp_path / "wtflow.yml").write_text("name: loud\nroot: {name: talker, command: 'seq 1 200000; exit 3'}\n")
    process = wtflow("run", "--db-url", "", "--output", "interleaved", "--log-format", "console", cwd=tmp_path)
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 1
    assert out == b"".join(b"%d\n" % n for n in range(1, 200_001))


def test_nodes_do_not_get_the_descriptors_wtflow_inherited(tmp_path: Path) -> None:
    # A CI shell may leave pipes open in the processes it starts; a node holding one could keep
    # its reader waiting for an end of file that never comes.
    (tmp_path / "wtflow.yml").write_text("name: fds\nnodes:\n  - {name: a, command: 'ls /proc/$$/fd'}\n")
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)
    try:
        process = wtflow("run", "--db-url", "", "--artifacts-dir", "artifacts", cwd=tmp_path, pass_fds=(write_end,))
        _, stderr = process.communicate(timeout=120)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert process.returncode == 0, stderr.decode()
    (listing,) = (tmp_path / "artifacts").glob("*/a/stdout.log")
    assert listing.read_text().split() == ["0", "1", "2"]
