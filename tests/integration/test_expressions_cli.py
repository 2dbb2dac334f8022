"""``${{ }}`` expressions in workflow files: substituted when a node starts, refused at their place when wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import cli
from tests.integration.workflow_files import (
    assert_clean_exit,
    run,
    run_dir,
    run_file,
    run_record,
    statuses,
    stdout_of,
    write,
)

# -- substitution -------------------------------------------------------------------------------


# Each case: a workflow whose node prints what its expressions became, and what it prints.
PRINTED = [
    pytest.param(
        """
        name: expr
        vars: {GREETING: hello}
        nodes:
          - name: say
            command: echo "${{ vars.GREETING }} from ${{ wtflow.node }} of ${{ wtflow.workflow }}"
        """,
        "hello from say of expr\n",
        id="a_command_string_gets_vars_and_the_wtflow_context",
    ),
    # A substituted value in an argv list is never split or interpreted by a shell.
    pytest.param(
        """
        name: argv
        vars: {TEXT: "a  b; echo injected"}
        nodes:
          - name: a
            command: [printf, "<%s>\\n", "${{ vars.TEXT }}", "x-${{ vars.TEXT }}"]
        """,
        "<a  b; echo injected>\n<x-a  b; echo injected>\n",
        id="list_command_items_are_substituted_and_stay_one_argument_each",
    ),
    pytest.param(
        """
        name: env
        vars: {LEVEL: "3"}
        env: {TOP: "top-${{ vars.LEVEL }}"}
        nodes:
          - name: a
            env: {OWN: "own-${{ vars.LEVEL }}-${{ wtflow.node }}"}
            command: echo "$TOP $OWN | ${{ env.TOP }} ${{ env.OWN }}"
        """,
        "top-3 own-3-a | top-3 own-3-a\n",
        id="env_values_are_substituted_for_the_process_and_the_env_context",
    ),
    # A variable of wtflow's own environment that the workflow does not declare is not in ``env``.
    pytest.param(
        """
        name: env
        nodes:
          - {name: a, command: 'echo "[${{ env.WTFLOW_TEST_UNDECLARED }}] [$WTFLOW_TEST_UNDECLARED]"'}
        """,
        "[] [inherited]\n",
        id="the_env_context_holds_only_the_declared_environment",
    ),
]


@pytest.mark.parametrize(("workflow", "printed"), PRINTED)
def test_expressions_are_substituted_when_the_node_starts(project: Path, workflow: str, printed: str) -> None:
    """wtflow runs with WTFLOW_TEST_UNDECLARED set, a variable no workflow declares."""
    result = run_file(workflow, file="w.yml", exit_code=0, env={"WTFLOW_TEST_UNDECLARED": "inherited"})
    assert result.stdout == printed


def test_the_wtflow_context_gives_the_run_id_and_run_dir(project: Path) -> None:
    result = run_file(
        """
        name: ids
        nodes:
          - {name: a, command: "echo ${{ wtflow.run_id }} ${{ wtflow.run_dir }}"}
        """,
        file="w.yml",
        exit_code=0,
    )
    directory = run_dir(project)
    assert result.stdout == f"{directory.name} {directory}\n"


def test_working_directory_is_substituted(project: Path) -> None:
    (project / "sub-2").mkdir()
    result = run_file(
        """
        name: wd
        vars: {N: 2}
        nodes:
          - {name: a, command: pwd, working_directory: "sub-${{ vars.N }}"}
        """,
        file="w.yml",
        exit_code=0,
    )
    assert result.stdout == f"{(project / 'sub-2').resolve()}\n"


def test_a_substituted_working_directory_may_not_lead_outside_the_workflows_directory(project: Path) -> None:
    """As a written one may not: the node fails without running its command."""
    run_file(
        """
        name: wd
        vars: {DIR: "."}
        nodes:
          - {name: a, command: "touch escaped-here", working_directory: "${{ vars.DIR }}"}
        """,
        "--var",
        "DIR=..",
        file="inner/w.yml",
        exit_code=1,
    )
    assert not (project / "escaped-here").exists()
    assert "working_directory" in (run_record(project)["nodes"]["a"]["error"] or "")


def test_timeout_is_substituted(project: Path) -> None:
    run_file(
        """
        name: t
        vars: {LIMIT: 200ms}
        nodes:
          - {name: a, command: "exec sleep 30", timeout: "${{ vars.LIMIT }}"}
        """,
        "--kill-grace",
        "2",
        file="w.yml",
        exit_code=1,
    )
    assert statuses(project)["a"] == "timed_out"


def test_function_arguments_are_substituted_and_a_whole_expression_keeps_its_type(project: Path) -> None:
    run_file(
        """
        name: f
        vars: {N: 3, NAME: x}
        nodes:
          - name: a
            function: tests.integration.expression_funcs:shows_arguments
            args: ["${{ vars.N }}", "n=${{ vars.N }}", ["${{ vars.NAME }}"]]
            kwargs: {flag: "${{ vars.N > 2 }}", nested: {k: "${{ vars.NAME }}!"}}
        """,
        file="w.yml",
        exit_code=0,
    )
    assert stdout_of(project, "a").splitlines() == [
        "int 3",
        "str 'n=3'",
        "list ['x']",
        "flag: bool True",
        "nested: dict {'k': 'x!'}",
    ]


def test_an_expression_that_cannot_be_evaluated_fails_its_node_without_running_it(project: Path) -> None:
    run_file(
        """
        name: f
        vars: {J: "not json"}
        nodes:
          - {name: a, command: "touch ran ${{ fromJSON(vars.J).x }}"}
        """,
        file="w.yml",
        exit_code=1,
    )
    assert not (project / "ran").exists()
    node = run_record(project)["nodes"]["a"]
    assert node["status"] == "failed"
    assert "fromJSON()" in node["error"]


def test_dry_run_shows_commands_as_written(project: Path) -> None:
    write(
        project / "w.yml",
        """
        name: plan
        vars: {V: "1"}
        nodes:
          - {name: a, command: "echo ${{ vars.V }}"}
        """,
    )
    result = cli("run", "w.yml", "--dry-run")
    assert_clean_exit(result, 0)
    assert "  a: echo ${{ vars.V }}\n" in result.stdout
    assert not (project / ".wtflow").exists()


# -- problems found before anything runs ----------------------------------------------------------

PREAMBLE = """\
name: bad
nodes:
  - name: first
    command: touch ran
  - name: broken
"""

# (id, the broken node's keys, the text the error points at: its first occurrence in those keys)
BAD_EXPRESSIONS = [
    ("command-syntax", "command: echo ${{ vars.A + }}", "+"),
    ("command-unclosed", "command: echo ${{ vars.A", "${{"),
    ("command-list-item-unknown-function", 'command: [echo, "x ${{ nope(1) }}"]', "nope"),
    ("env-value-unknown-context", 'command: "true"\nenv: {A: "${{ secrets.X }}"}', "secrets"),
    ("env-value-reads-env", 'command: "true"\nenv: {A: "a", B: "${{ env.A }}"}', "env.A"),
    ("working-directory-unknown-context", "command: pwd\nworking_directory: ${{ wtflw.node }}", "wtflw"),
    ("container-image-syntax", 'command: "true"\ncontainer: {image: "img:${{ vars.x.( }}"}', "("),
    (
        "container-env-unknown-context",
        'command: "true"\ncontainer: {image: alpine, env: {K: "${{ bogus.x }}"}}',
        "bogus",
    ),
    ("function-args-unknown-function", 'function: os:getcwd\nargs: ["${{ tojsn(1) }}"]', "tojsn"),
    ("function-kwargs-unknown-context", 'function: os:getcwd\nkwargs: {k: "v=${{ sekrets.a }}"}', "sekrets"),
    ("timeout-syntax", 'command: "true"\ntimeout: ${{ vars.T + }}', "+"),
    ("if-in-braces-unknown-function", 'command: "true"\nif: ${{ sucess() }}', "sucess"),
    ("if-bare-unknown-function", "command: \"true\"\nif: vars.A == 'x' || nope()", "nope"),
    ("needs-output-of-a-node-not-waited-for", "command: echo ${{ needs.first.outputs.k }}", "needs"),
    ("matrix-key-not-in-the-matrix", "command: echo ${{ matrix.arch }}\nmatrix: {os: [linux]}", "matrix.arch"),
    ("matrix-without-a-matrix", "command: echo ${{ matrix.os }}", "matrix"),
]


def broken_file(project: Path, keys: str, token: str) -> tuple[int, int]:
    """Write bad.yml with the broken node's ``keys``; the 1-based line and column of ``token``."""
    lines = [f"    {line}" for line in keys.splitlines()]
    (project / "bad.yml").write_text(PREAMBLE + "\n".join(lines) + "\n")
    first = len(PREAMBLE.splitlines())
    for number, line in enumerate(lines, start=first + 1):
        if token in line:
            return number, line.index(token) + 1
    raise AssertionError(f"{token!r} is not in {keys!r}")


def position_of(path: Path, line: int, token: str) -> int:
    """The 1-based column of ``token`` on ``line`` of the file at ``path``."""
    return path.read_text().splitlines()[line - 1].index(token) + 1


@pytest.mark.parametrize(("keys", "token"), [case[1:] for case in BAD_EXPRESSIONS], ids=[c[0] for c in BAD_EXPRESSIONS])
def test_a_bad_expression_exits_2_at_its_position_and_runs_nothing(project: Path, keys: str, token: str) -> None:
    line, column = broken_file(project, keys, token)
    result = cli("run", "bad.yml", "--db-url", "", "--log-format", "console")
    assert_clean_exit(result, 2)
    assert result.stdout == ""
    assert result.stderr.startswith(f"bad.yml:{line}:{column}: "), result.stderr
    assert not (project / "ran").exists()
    assert not (project / ".wtflow").exists()


def test_validate_reports_a_bad_expression_at_its_position(project: Path) -> None:
    line, column = broken_file(project, 'command: [echo, "x ${{ nope(1) }}"]', "nope")
    result = cli("validate", "bad.yml")
    assert_clean_exit(result, 2)
    assert result.stdout == ""
    assert result.stderr == (
        f"bad.yml:{line}:{column}: command[1]: unknown function 'nope'; known: always, cancelled, contains, "
        "endsWith, failure, format, fromJSON, join, startsWith, success, toJSON\n"
    )


def test_a_bad_expression_in_the_workflows_env_is_reported_at_its_position(project: Path) -> None:
    """The workflow's env is every node's: it cannot read one node's matrix."""
    write(
        project / "bad.yml",
        """
        name: bad
        env: {A: "x-${{ matrix.os }}"}
        nodes:
          - {name: a, command: touch ran}
        """,
    )
    result = cli("validate", "bad.yml")
    assert_clean_exit(result, 2)
    assert result.stderr.startswith(f"bad.yml:2:{position_of(project / 'bad.yml', 2, 'matrix')}: "), result.stderr


def test_every_bad_reference_in_a_file_is_reported_at_once(project: Path) -> None:
    """As the documentation promises for what only the whole workflow shows."""
    write(
        project / "bad.yml",
        """
        name: bad
        nodes:
          - {name: first, command: "true"}
          - {name: second, command: "echo ${{ needs.first.outputs.k }}"}
          - {name: third, command: "echo ${{ matrix.os }}"}
        """,
    )
    result = cli("validate", "bad.yml")
    assert_clean_exit(result, 2)
    second, third = position_of(project / "bad.yml", 4, "needs."), position_of(project / "bad.yml", 5, "matrix.")
    assert [line.split(": ")[0] for line in result.stderr.splitlines()] == [f"bad.yml:4:{second}", f"bad.yml:5:{third}"]


def test_needs_outputs_of_a_node_waited_for_through_another_is_accepted(project: Path) -> None:
    write(
        project / "ok.yml",
        """
        name: ok
        nodes:
          - {name: a, command: "echo k=from-a >> $WTFLOW_OUTPUT"}
          - {name: b, command: "true", needs: a}
          - {name: c, command: "echo ${{ needs.a.outputs.k }}", needs: b}
        """,
    )
    assert cli("validate", "ok.yml").exit_code == 0
    result = run("ok.yml")
    assert_clean_exit(result, 0)
    assert stdout_of(project, "c") == "from-a\n"
