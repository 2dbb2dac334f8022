"""Cached and reused nodes in the record: where their result came from and the time they saved.

Runs are told to the real observers (the database recorder, whose writer process writes SQLite
files and PostgreSQL, and run.json's writer) as the engine tells them; a cached node goes the
whole way through `wtflow run` twice.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, inspect, select

from tests.conftest import cli
from tests.integration.conftest import RUN_ID, START, read_back, record_run
from wtflow import Command, Node, Workflow
from wtflow.db import schema
from wtflow.db.tables import node_runs, runs
from wtflow.events import NodeFinished, NodeStatus

WORKFLOW = Workflow(
    "ci",
    Node(
        "root",
        parallel=True,
        children=[
            Node("build", executable=Command("true")),
            Node("lint", executable=Command("true")),
            Node("test", executable=Command("true")),
        ],
    ),
)
EARLIER = "20261205T080000000000Z-ffeeddcc"
KEY = "3f2a" * 16  # a cache key


def finished(
    node: str, status: NodeStatus, *, reused_from: str | None = None, saved: float | None = None
) -> NodeFinished:
    end = START + timedelta(seconds=0.5)
    return NodeFinished(RUN_ID, node, WORKFLOW.path(node), status, 0, START, end, reused_from=reused_from, saved=saved)


# build reused from an earlier run (it took 83.2 s there), lint from the cache (4.3 s), test ran.
TAKEN = (
    finished("build", NodeStatus.REUSED, reused_from=EARLIER, saved=83.2),
    finished("lint", NodeStatus.CACHED, reused_from=KEY, saved=4.3),
    finished("test", NodeStatus.SUCCEEDED),
    finished("root", NodeStatus.SUCCEEDED),
)
ALL_RAN = tuple(finished(node, NodeStatus.SUCCEEDED) for node in ("build", "lint", "test", "root"))


def record(url: str, run_dir: Path, ends: tuple[NodeFinished, ...] = TAKEN) -> None:
    """A run of WORKFLOW whose nodes end as ``ends`` say, told to the recorder and run.json's writer."""
    record_run(url, run_dir, WORKFLOW, ends, START + timedelta(seconds=1))


def columns(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


# -- the database -----------------------------------------------------------------------------


def test_where_a_taken_result_came_from_and_the_time_saved_are_read_back(database_url: str, run_dir: Path) -> None:
    record(database_url, run_dir)
    nodes = {node.name: node for node in read_back(database_url).nodes}
    assert (nodes["build"].status, nodes["build"].reused_from, nodes["build"].saved) == ("reused", EARLIER, 83.2)
    assert (nodes["lint"].status, nodes["lint"].reused_from, nodes["lint"].saved) == ("cached", KEY, 4.3)


def test_a_node_that_ran_has_neither(database_url: str, run_dir: Path) -> None:
    record(database_url, run_dir)
    nodes = {node.name: node for node in read_back(database_url).nodes}
    assert (nodes["test"].reused_from, nodes["test"].saved) == (None, None)
    assert (nodes["root"].reused_from, nodes["root"].saved) == (None, None)


def test_a_database_at_revision_0002_gets_the_columns_when_a_run_is_recorded(
    database_url: str, run_dir: Path, database: Engine
) -> None:
    """A database an older wtflow made is upgraded; its runs stay, their nodes with neither value."""
    config = Config()
    config.set_main_option("script_location", str(schema.MIGRATIONS))
    older = "20261205T080000000000Z-ffffffff"
    with database.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0002")
        when = START - timedelta(days=1)
        connection.execute(
            runs.insert(),
            [{"id": older, "workflow": "ci", "status": "succeeded", "started_at": when, "host": "old", "pid": 1}],
        )
        connection.execute(
            node_runs.insert(),
            [{"run_id": older, "name": "build", "position": 0, "path": "build", "status": "succeeded", "attempts": 1}],
        )
    with database.connect() as connection:
        assert schema.current_revision(connection) == "0002"
        assert "saved" not in {column["name"] for column in inspect(connection).get_columns(node_runs.name)}

    record(database_url, run_dir)

    with database.connect() as connection:
        assert schema.current_revision(connection) == schema.HEAD
        taken = select(node_runs.c.reused_from, node_runs.c.saved).where(node_runs.c.run_id == older)
        assert connection.execute(taken).all() == [(None, None)]
    assert read_back(database_url).nodes[1].saved == 83.2


# -- run.json ---------------------------------------------------------------------------------


def test_run_json_holds_where_each_nodes_result_came_from_and_the_time_saved(tmp_path: Path, run_dir: Path) -> None:
    record(f"sqlite:///{tmp_path / 'runs.db'}", run_dir)
    nodes = json.loads((run_dir / "run.json").read_text())["nodes"]
    assert {name: (node["status"], node["reused_from"], node["saved"]) for name, node in nodes.items()} == {
        "build": ("reused", EARLIER, 83.2),
        "lint": ("cached", KEY, 4.3),
        "test": ("succeeded", None, None),
        "root": ("succeeded", None, None),
    }


# -- wtflow runs show -------------------------------------------------------------------------


def test_runs_show_marks_cached_and_reused_nodes_with_the_time_each_saved(database_url: str, run_dir: Path) -> None:
    record(database_url, run_dir)
    result = cli("runs", "show", "--db-url", database_url)
    assert (result.exit_code, result.stderr) == (0, "")
    table = result.stdout.split("\n\n")[1].splitlines()
    assert columns(table[0]) == ["NODE", "STATUS", "EXIT", "DURATION", "SAVED", "ARTIFACTS"]
    assert [columns(line)[:5] for line in table[1:]] == [
        ["root", "succeeded", "0", "0.5s", "-"],
        ["root/build", "reused", "0", "0.5s", "1m23.2s"],
        ["root/lint", "cached", "0", "0.5s", "4.3s"],
        ["root/test", "succeeded", "0", "0.5s", "-"],
    ]


def test_runs_show_totals_the_time_saved_and_names_the_run_reused_from(database_url: str, run_dir: Path) -> None:
    record(database_url, run_dir)
    result = cli("runs", "show", "--db-url", database_url)
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout.split("\n\n")[2] == (
        f"saved 1m27.5s by cached and reused nodes: 1 reused from run {EARLIER}, 1 cached\n"
    )


def test_runs_show_has_no_saved_column_or_total_when_every_node_ran(database_url: str, run_dir: Path) -> None:
    record(database_url, run_dir, ALL_RAN)
    result = cli("runs", "show", "--db-url", database_url)
    assert (result.exit_code, result.stderr) == (0, "")
    header = result.stdout.split("\n\n")[1].splitlines()[0]
    assert columns(header) == ["NODE", "STATUS", "EXIT", "DURATION", "ARTIFACTS"]
    assert "saved" not in result.stdout


# -- the whole way ----------------------------------------------------------------------------

CACHED = """
name: cached
root:
  name: build
  command: echo built >> runs.txt
  cache: true
"""


def test_a_cache_hit_is_recorded_with_its_key_and_the_time_the_first_run_took(workdir: Path) -> None:
    """`wtflow run` twice: the second run's node is cached, in run.json, the database and `runs show`."""
    (workdir / "wtflow.yml").write_text(CACHED)
    first, second = cli("run"), cli("run")
    assert (first.exit_code, second.exit_code) == (0, 0), second.stderr
    assert (workdir / "runs.txt").read_text() == "built\n"  # the second run did not run it
    first_dir, second_dir = sorted((workdir / ".wtflow" / "artifacts").iterdir())
    ran = json.loads((first_dir / "run.json").read_text())["nodes"]["build"]
    hit = json.loads((second_dir / "run.json").read_text())["nodes"]["build"]
    assert hit["status"] == "cached"
    assert 0 < hit["saved"] <= ran["duration"]  # the time until the cache kept it: before the node finished
    assert isinstance(hit["reused_from"], str)
    node = read_back(f"sqlite:///{workdir / '.wtflow' / 'wtflow.db'}", second_dir.name).nodes[0]
    assert (node.status, node.reused_from, node.saved) == ("cached", hit["reused_from"], hit["saved"])
    shown = cli("runs", "show")
    assert shown.exit_code == 0, shown.stderr
    assert columns(shown.stdout.split("\n\n")[1].splitlines()[1])[:2] == ["build", "cached"]
    assert "by cached and reused nodes: 1 cached\n" in shown.stdout
