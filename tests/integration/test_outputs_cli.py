"""Node outputs: ``key=value`` lines and ``key<<DELIM`` blocks in ``$WTFLOW_OUTPUT``, or a function's dict.

Later nodes read them as ``${{ needs.<node>.outputs.<key> }}``; the run's records keep them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from tests.conftest import cli
from tests.integration.conftest import Runner
from tests.integration.workflow_files import (
    assert_clean_exit,
    events,
    run,
    run_dir,
    run_file,
    run_record,
    stdout_of,
    write,
)
from wtflow import Command, Node
from wtflow.db.tables import node_outputs

WRITES = """
name: out
nodes:
  - name: build
    command: |
      echo "version=1.2.3" >> "$WTFLOW_OUTPUT"
      printf 'notes<<EOF\\nfirst line\\nsecond = line\\nEOF\\n' >> "$WTFLOW_OUTPUT"
  - name: use
    needs: build
    command: [printf, "%s|%s\\n", "${{ needs.build.outputs.version }}", "${{ needs.build.outputs.notes }}"]
"""
OUTPUTS = {"version": "1.2.3", "notes": "first line\nsecond = line"}


@pytest.fixture
def writes(project: Path) -> Path:
    write(project / "wtflow.yml", WRITES)
    return project


def test_a_later_node_reads_a_key_value_output(writes: Path) -> None:
    result = run()
    assert_clean_exit(result, 0)
    assert result.stdout.startswith("1.2.3|")


# Each case: a workflow whose last node prints outputs it read, and what it prints.
READ = [
    pytest.param(WRITES, "1.2.3|first line\nsecond = line\n", id="a_delimited_block_gives_a_value_of_several_lines"),
    pytest.param(
        """
        name: out
        nodes:
          - {name: a, command: "true"}
          - {name: b, needs: a, command: 'echo "[${{ needs.a.outputs.missing }}]"'}
        """,
        "[]\n",
        id="an_output_the_node_did_not_write_reads_as_empty_text",
    ),
    # In the tree form a child runs after its parent: it may read the parent's outputs without needs.
    pytest.param(
        """
        name: tree
        root:
          name: prepare
          command: echo "tag=v9" >> "$WTFLOW_OUTPUT"
          children:
            - name: stage
              children:
                - {name: publish, command: "echo publishing ${{ needs.prepare.outputs.tag }}"}
        """,
        "publishing v9\n",
        id="outputs_reach_a_node_that_waits_through_the_tree",
    ),
]


@pytest.mark.parametrize(("workflow", "printed"), READ)
def test_later_nodes_read_outputs(project: Path, workflow: str, printed: str) -> None:
    assert run_file(workflow, exit_code=0).stdout == printed


def test_an_output_can_drive_a_condition(project: Path) -> None:
    run_file(
        """
        name: cond
        nodes:
          - {name: check, command: 'echo "changed=false" >> "$WTFLOW_OUTPUT"'}
          - {name: deploy, needs: check, if: "needs.check.outputs.changed == 'true'", command: touch deployed}
          - {name: note, needs: check, if: "needs.check.outputs.changed == 'false'", command: touch noted}
        """,
        exit_code=0,
    )
    assert not (project / "deployed").exists()
    assert (project / "noted").exists()


def test_a_function_nodes_returned_dict_gives_its_outputs(project: Path) -> None:
    run_file(
        """
        name: func
        nodes:
          - {name: f, function: "tests.integration.expression_funcs:gives_outputs"}
          - {name: use, needs: f, command: "echo ${{ needs.f.outputs.version }} ${{ needs.f.outputs.count }}"}
        """,
        exit_code=0,
    )
    assert stdout_of(project, "use") == "2.0 3\n"
    assert run_record(project)["nodes"]["f"]["outputs"] == {"version": "2.0", "count": "3"}


def test_a_function_node_reads_outputs_in_its_arguments(project: Path) -> None:
    run_file(
        """
        name: func
        nodes:
          - {name: a, command: 'echo "n=7" >> "$WTFLOW_OUTPUT"'}
          - name: f
            needs: a
            function: tests.integration.expression_funcs:shows_arguments
            args: ["${{ needs.a.outputs.n }}", "${{ fromJSON(needs.a.outputs.n) }}"]
        """,
        exit_code=0,
    )
    assert stdout_of(project, "f") == "str '7'\nint 7\n"


# -- where outputs are recorded -------------------------------------------------------------------


def test_outputs_are_recorded_in_run_json(writes: Path) -> None:
    assert_clean_exit(run(), 0)
    nodes = run_record(writes)["nodes"]
    assert nodes["build"]["outputs"] == OUTPUTS
    assert nodes["use"]["outputs"] == {}


def test_outputs_are_recorded_in_events_jsonl(writes: Path) -> None:
    assert_clean_exit(run(), 0)
    finished = [e for e in events(writes) if e["event"] == "node_finished" and e["node"] == "build"]
    assert [e["outputs"] for e in finished] == [OUTPUTS]


def test_outputs_are_recorded_in_the_database_and_shown_by_runs_show(writes: Path) -> None:
    url = f"sqlite:///{writes / 'runs.db'}"
    assert_clean_exit(cli("run", "--db-url", url), 0)
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            stored = dict(connection.execute(select(node_outputs.c.key, node_outputs.c.value)).all())
    finally:
        engine.dispose()
    assert stored == OUTPUTS
    shown = cli("runs", "show", "--db-url", url)
    assert_clean_exit(shown, 0)
    assert shown.stdout.endswith("\noutputs:\n  build: notes=first line\n    second = line\n  build: version=1.2.3\n")


def test_a_malformed_outputs_line_is_a_warning_and_the_good_lines_are_kept(project: Path) -> None:
    """A line that is neither form keeps the good lines and does not fail the node."""
    result = run_file(
        """
        name: out
        nodes:
          - {name: a, command: 'printf "good=1\\nnot an output line\\n" >> "$WTFLOW_OUTPUT"'}
          - {name: b, needs: a, command: "echo ${{ needs.a.outputs.good }}"}
        """,
        exit_code=0,
    )
    assert result.stdout == "1\n"
    assert "not an output line" in result.stderr


# -- secrets ----------------------------------------------------------------------------------------

SECRET_OUTPUT = """
name: sec
secrets: [API_TOKEN]
nodes:
  - name: login
    command: echo "token=$API_TOKEN" >> "$WTFLOW_OUTPUT"
  - name: call
    needs: login
    command: echo "calling with ${{ needs.login.outputs.token }}"
"""


def test_a_secret_passed_on_as_an_output_is_masked_in_output_and_records(project: Path) -> None:
    write(project / "wtflow.yml", SECRET_OUTPUT)
    url = f"sqlite:///{project / 'runs.db'}"
    result = cli("run", "--db-url", url, "--log-format", "json", env={"API_TOKEN": "tok-31337"})
    assert_clean_exit(result, 0)
    assert stdout_of(project, "call") == "calling with ***\n"
    assert run_record(project)["nodes"]["login"]["outputs"] == {"token": "***"}
    shown = cli("runs", "show", "--db-url", url).stdout
    assert "login: token=***" in shown
    for text in [
        result.stdout,
        result.stderr,
        shown,
        (run_dir(project) / "events.jsonl").read_text(),
        (run_dir(project) / "run.json").read_text(),
        (project / "runs.db").read_bytes().decode("latin-1"),
    ]:
        assert "tok-31337" not in text


def test_no_file_the_run_keeps_holds_a_secret_a_node_wrote_to_its_outputs(project: Path) -> None:
    """Stored output is masked unless --no-mask-artifacts; the kept outputs file is the node's output too."""
    run_file(SECRET_OUTPUT, exit_code=0, env={"API_TOKEN": "tok-31337"})
    leaking = [
        str(path.relative_to(project))
        for path in (project / ".wtflow").rglob("*")
        if path.is_file() and b"tok-31337" in path.read_bytes()
    ]
    assert leaking == []


# -- the Python API ---------------------------------------------------------------------------------


def test_outputs_pass_between_nodes_through_the_python_api(run_workflow: Runner) -> None:
    root = Node(
        "root",
        children=[
            Node("a", executable=Command('echo "sha=abc123" >> "$WTFLOW_OUTPUT"')),
            Node("b", executable=Command("echo built ${{ needs.a.outputs.sha }}")),
        ],
    )
    engine = run_workflow(root)
    assert engine.result is not None
    assert engine.result.nodes["b"].artifacts["stdout"].data == b"built abc123\n"
