"""What a run leaves behind: the artifacts layout, run.json, and rows in SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Row, create_engine, select

from tests.integration import pyfuncs
from tests.integration.conftest import Runner
from wtflow import BackendUnavailable, Command, Config, DatabaseConfig, Engine, Node, PyFunc, Workflow
from wtflow.db.connect import normalise_url
from wtflow.db.tables import artifacts, node_runs, runs


def sample() -> Node:
    return Node(
        "root",
        executable=Command("echo root"),
        children=[
            Node("ok", executable=PyFunc(pyfuncs.hello)),
            Node("bad", executable=Command("echo oops >&2; exit 4")),
            Node("never", executable=Command("true")),
        ],
    )


def test_run_json_describes_the_run_and_every_node(run_workflow: Runner) -> None:
    engine = run_workflow(sample())
    assert engine.result is not None
    data = json.loads((engine.result.run_dir / "run.json").read_text())
    assert (data["workflow"], data["run_id"], data["status"], data["exit_code"]) == (
        "wf",
        engine.result.run_id,
        "failed",
        1,
    )
    assert {name: node["status"] for name, node in data["nodes"].items()} == {
        "root": "succeeded",
        "ok": "succeeded",
        "bad": "failed",
        "never": "skipped",
    }
    assert data["nodes"]["bad"]["exit_code"] == 4
    assert data["started_at"] <= data["finished_at"]
    stderr = data["nodes"]["bad"]["artifacts"]["stderr"]
    assert (Path(stderr["path"]).read_bytes(), stderr["size"]) == (b"oops\n", 5)


def test_artifacts_live_under_run_id_and_node_dir(run_workflow: Runner, tmp_path: Path) -> None:
    engine = run_workflow(sample())
    assert engine.result is not None
    run_dir = engine.result.run_dir
    assert run_dir.parent == (tmp_path / "artifacts").resolve()
    assert run_dir.name == engine.result.run_id
    assert (run_dir / "ok" / "stdout.log").read_bytes() == b"hello from a function\n"
    assert (run_dir / "ok" / "result.json").read_text() == '"done"'


def test_without_artifacts_dir_a_temporary_directory_is_used() -> None:
    engine = Engine(Workflow("wf", Node("a", executable=Command("true"))), Config(), observers=[])
    assert engine.run() == 0
    assert engine.result is not None
    assert engine.result.run_dir.name == engine.result.run_id
    assert engine.result.run_dir.parent.name.startswith("wtflow-")


def rows(url: str) -> tuple[Sequence[Row[Any]], Sequence[Row[Any]], Sequence[Row[Any]]]:
    engine = create_engine(normalise_url(url))
    try:
        with engine.connect() as session:
            return (
                session.execute(select(runs)).all(),
                session.execute(select(node_runs).order_by(node_runs.c.position)).all(),
                session.execute(select(artifacts)).all(),
            )
    finally:
        engine.dispose()


def check_recorded(url: str, runner: Runner) -> None:
    engine = runner(sample(), db_url=url)
    assert engine.result is not None
    run_rows, node_rows, artifact_rows = rows(url)
    assert [(r.id, r.workflow, r.status, r.exit_code, r.pid) for r in run_rows] == [
        (engine.result.run_id, "wf", "failed", 1, os.getpid())
    ]
    assert run_rows[0].finished_at is not None
    assert [(n.name, n.path, n.status, n.exit_code) for n in node_rows] == [
        ("root", "root", "succeeded", 0),
        ("ok", "root/ok", "succeeded", 0),
        ("bad", "root/bad", "failed", 4),
        ("never", "root/never", "skipped", None),
    ]
    results = engine.result.nodes
    assert [(n.started_at, n.finished_at, n.attempts) for n in node_rows] == [
        (results[n.name].started_at, results[n.name].finished_at, results[n.name].attempts) for n in node_rows
    ]
    sizes = {(a.node, a.name): a.size for a in artifact_rows}
    assert sizes[("bad", "stderr")] == 5
    assert sizes[("ok", "result")] == len(b'"done"')
    assert ("never", "stdout") not in sizes


def test_sqlite_file_records_runs_nodes_and_artifacts(run_workflow: Runner, tmp_path: Path) -> None:
    check_recorded(f"sqlite:///{tmp_path / 'db' / 'runs.db'}", run_workflow)


@pytest.mark.postgres
def test_postgres_records_runs_nodes_and_artifacts(run_workflow: Runner, postgres_url: str) -> None:
    check_recorded(postgres_url, run_workflow)


def test_unreachable_database_fails_before_any_node_runs(run_workflow: Runner, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    url = "postgresql://nobody@127.0.0.1:1/none"
    with pytest.raises(
        BackendUnavailable, match=r"database postgresql://nobody@127.0.0.1:1/none is unavailable: .*refused"
    ):
        run_workflow(Node("a", executable=Command(f"touch {marker}")), db_url=url)
    assert not marker.exists()


def test_database_password_is_hidden_in_errors(run_workflow: Runner) -> None:
    with pytest.raises(BackendUnavailable) as caught:
        run_workflow(Node("a", executable=Command("true")), db_url="postgresql://u:hunter2@127.0.0.1:1/x")
    assert "hunter2" not in str(caught.value)


INTERRUPTED = """
import wtflow
wf = wtflow.Workflow("wf", wtflow.Node("root", children=[
    wtflow.Node("sleeper", executable=wtflow.Command("echo started; exec sleep 300")),
    wtflow.Node("after", executable=wtflow.Command("true")),
]))
config = wtflow.Config(db=wtflow.DatabaseConfig({url!r}), storage=wtflow.StorageConfig({arts!r}))
wtflow.Engine(wf, config).run()
"""


def test_ctrl_c_closes_the_run_row_as_cancelled(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    script = tmp_path / "interrupted.py"
    script.write_text(textwrap.dedent(INTERRUPTED.format(url=url, arts=str(tmp_path / "arts"))))
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None
    assert child.stdout.readline() == b"started\n"  # the node is running: interrupt now
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=60)
    assert child.returncode != 0
    assert b"KeyboardInterrupt" in stderr
    run_rows, node_rows, _ = rows(url)
    assert [(r.status, r.exit_code) for r in run_rows] == [("cancelled", 130)]
    assert {n.name: n.status for n in node_rows} == {"root": "cancelled", "sleeper": "cancelled", "after": "skipped"}
    run_json = json.loads(next((tmp_path / "arts").glob("*/run.json")).read_text())
    assert run_json["status"] == "cancelled"


def test_library_use_prints_nothing_but_node_output(tmp_path: Path) -> None:
    code = (
        "import wtflow\n"
        "wf = wtflow.Workflow('wf', wtflow.Node('a', executable=wtflow.Command('echo out; echo err >&2; exit 1')))\n"
        f"config = wtflow.Config(db=wtflow.DatabaseConfig('sqlite:///{tmp_path}/x.db'))\n"
        "raise SystemExit(wtflow.Engine(wf, config).run())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (1, b"out\n", b"err\n")


def test_database_url_from_environment_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("WTFLOW_DB_URL", url)
    monkeypatch.setenv("WTFLOW_ARTIFACTS_DIR", str(tmp_path / "arts"))
    engine = Engine(Workflow("wf", Node("a", executable=Command("true"))), observers=None)
    assert engine.config.db == DatabaseConfig(url)
    engine = Engine(engine.workflow, engine.config, observers=[])
    assert engine.run() == 0
    assert [(r.status, r.workflow) for r in rows(url)[0]] == [("succeeded", "wf")]
