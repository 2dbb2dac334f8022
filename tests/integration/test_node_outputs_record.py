"""A node's outputs, recorded wherever its ending is: the database (read back, shown by `runs show`) and run.json.

Runs are told to the real observers (the database recorder, whose writer process writes SQLite
files and PostgreSQL, and run.json's writer) as the engine tells them, with the outputs the
scheduler would have read from each node's file; one run goes through the engine itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, delete, func, inspect, select

from tests.conftest import cli
from tests.integration.conftest import RUN_ID, START, Runner, read_back, record_run
from wtflow import Command, Node, Workflow
from wtflow.db import schema
from wtflow.db.tables import node_outputs, runs
from wtflow.events import NodeFinished, NodeStatus

WORKFLOW = Workflow(
    "ci",
    Node(
        "root",
        children=[Node("build", executable=Command("true")), Node("test", executable=Command("true"))],
    ),
)


def record(url: str, run_dir: Path, outputs: Mapping[str, Mapping[str, str]]) -> None:
    """A run of WORKFLOW, every node succeeding with ``outputs[node]``, told to the recorder and run.json's writer."""
    end = START + timedelta(seconds=2)
    ends = [
        NodeFinished(
            RUN_ID, node, WORKFLOW.path(node), NodeStatus.SUCCEEDED, 0, START, end, outputs=outputs.get(node, {})
        )
        for node in WORKFLOW.nodes
    ]
    record_run(url, run_dir, WORKFLOW, ends, end)


def outputs_shown(url: str) -> str:
    """What `wtflow runs show` prints after the nodes' table, from its outputs section on."""
    result = cli("runs", "show", "--db-url", url)
    assert (result.exit_code, result.stderr) == (0, "")
    _, marker, section = result.stdout.partition("\n\noutputs:\n")
    return marker.lstrip("\n") + section


# -- the database -----------------------------------------------------------------------------


def test_each_nodes_outputs_are_read_back_as_its_own(database_url: str, run_dir: Path) -> None:
    """Two nodes writing the same key keep a value each."""
    record(database_url, run_dir, {"build": {"version": "1.2.3", "wheel": "dist/a.whl"}, "test": {"version": "9"}})
    run = read_back(database_url)
    assert {node.name: node.outputs for node in run.nodes} == {
        "root": {},
        "build": {"version": "1.2.3", "wheel": "dist/a.whl"},
        "test": {"version": "9"},
    }


def test_outputs_are_read_back_sorted_by_key(database_url: str, run_dir: Path) -> None:
    record(database_url, run_dir, {"build": {"zeta": "1", "Alpha": "2", "beta": "3", "_x": "4"}})
    build = read_back(database_url).nodes[1]
    assert list(build.outputs) == ["Alpha", "_x", "beta", "zeta"]


def test_a_long_multi_line_value_is_stored_whole(database_url: str, run_dir: Path) -> None:
    value = "\n".join(f"line {n}: {'é' * 100}" for n in range(1000))  # some 100,000 characters, not ASCII
    record(database_url, run_dir, {"build": {"notes": value, "empty": ""}})
    assert read_back(database_url).nodes[1].outputs == {"empty": "", "notes": value}


def test_outputs_are_deleted_with_their_run(database_url: str, run_dir: Path, database: Engine) -> None:
    record(database_url, run_dir, {"build": {"version": "1.2.3"}})
    with database.begin() as connection:
        connection.execute(delete(runs).where(runs.c.id == RUN_ID))
    with database.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(node_outputs)) == 0


def test_a_database_at_revision_0001_is_upgraded_when_a_run_is_recorded(
    database_url: str, run_dir: Path, database: Engine
) -> None:
    """A database an older wtflow made (runs, node runs and artifacts only) gets the outputs table on the next run."""
    config = Config()
    config.set_main_option("script_location", str(schema.MIGRATIONS))
    with database.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        older = {"id": "20261205T080000000000Z-ffffffff", "workflow": "ci", "status": "succeeded", "exit_code": 0}
        connection.execute(runs.insert(), [{**older, "started_at": START - timedelta(days=1), "host": "old", "pid": 1}])
    with database.connect() as connection:
        assert schema.current_revision(connection) == "0001"
        assert node_outputs.name not in inspect(connection).get_table_names()

    record(database_url, run_dir, {"build": {"version": "1.2.3"}})

    with database.connect() as connection:
        assert schema.current_revision(connection) == schema.HEAD
    assert read_back(database_url).nodes[1].outputs == {"version": "1.2.3"}
    assert read_back(database_url, "ffffffff").status == "succeeded"  # the older run is still there


# -- wtflow runs show -------------------------------------------------------------------------


def test_runs_show_lists_every_nodes_outputs_under_the_table(database_url: str, run_dir: Path) -> None:
    record(database_url, run_dir, {"build": {"version": "1.2.3", "wheel": "dist/a.whl"}, "test": {"passed": "12"}})
    assert outputs_shown(database_url) == (
        "outputs:\n  build: version=1.2.3\n  build: wheel=dist/a.whl\n  test: passed=12\n"
    )


def test_runs_show_indents_a_multi_line_values_further_lines(database_url: str, run_dir: Path) -> None:
    record(database_url, run_dir, {"build": {"notes": "first\nsecond\n  third"}})
    assert outputs_shown(database_url) == "outputs:\n  build: notes=first\n    second\n      third\n"


def test_runs_show_cuts_a_long_value_saying_how_much_is_left_out(database_url: str, run_dir: Path) -> None:
    record(database_url, run_dir, {"build": {"digest": "x" * 250}})
    assert outputs_shown(database_url) == f"outputs:\n  build: digest={'x' * 200} ... (cut: 50 more characters)\n"


def test_runs_show_cuts_a_value_of_many_lines_after_five(database_url: str, run_dir: Path) -> None:
    record(database_url, run_dir, {"build": {"files": "\n".join(f"f{n}" for n in range(1, 9))}})
    assert outputs_shown(database_url) == (
        "outputs:\n  build: files=f1\n    f2\n    f3\n    f4\n    f5 ... (cut: 8 more characters)\n"
    )


def test_runs_show_has_no_outputs_section_when_no_node_wrote_any(database_url: str, run_dir: Path) -> None:
    record(database_url, run_dir, {})
    result = cli("runs", "show", "--db-url", database_url)
    assert (result.exit_code, result.stderr) == (0, "")
    assert "outputs" not in result.stdout
    assert result.stdout.splitlines()[-1].startswith("root/test ")  # the table's last row ends what is shown


# -- run.json ---------------------------------------------------------------------------------


def test_run_json_holds_each_nodes_outputs(tmp_path: Path, run_dir: Path) -> None:
    record(f"sqlite:///{tmp_path / 'runs.db'}", run_dir, {"build": {"version": "1.2.3", "notes": "a\nb"}})
    nodes = json.loads((run_dir / "run.json").read_text())["nodes"]
    assert {name: node["outputs"] for name, node in nodes.items()} == {
        "root": {},
        "build": {"version": "1.2.3", "notes": "a\nb"},
        "test": {},
    }


# -- a real run -------------------------------------------------------------------------------


def test_outputs_a_command_writes_reach_the_database_and_run_json(run_workflow: Runner, database_url: str) -> None:
    """The whole way: the node's $WTFLOW_OUTPUT file, the scheduler, the recorder and run.json."""
    command_line = 'echo "version=1.2.3" >> "$WTFLOW_OUTPUT"; printf "notes<<EOF\\na\\nb\\nEOF\\n" >> "$WTFLOW_OUTPUT"'
    engine = run_workflow(Node("build", executable=Command(command_line)), db_url=database_url)
    assert engine.result is not None
    expected = {"notes": "a\nb", "version": "1.2.3"}
    assert read_back(database_url, engine.result.run_id).nodes[0].outputs == expected
    run_json = json.loads((engine.result.run_dir / "run.json").read_text())
    assert run_json["nodes"]["build"]["outputs"] == expected
