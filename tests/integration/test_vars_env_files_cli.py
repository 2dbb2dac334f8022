"""Workflow ``vars`` (``--var``, ``WTFLOW_VAR_<NAME>``), ``env_file``, and secrets reaching substituted values."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import EventLog, cli
from tests.integration.workflow_files import (
    assert_clean_exit,
    run_dir,
    run_file,
    run_record,
    stdout_of,
    write,
)
from wtflow import Command, Config, Engine, Node, RunConfig, StorageConfig, Workflow

# -- vars -------------------------------------------------------------------------------------------

VARS = """
name: v
vars: {VERSION: "1.0", CHANNEL: stable, COUNT: 2, DEBUG: false}
nodes:
  - name: show
    command: echo "${{ vars.VERSION }} ${{ vars.CHANNEL }} ${{ vars.COUNT }} ${{ vars.DEBUG }}"
"""


# Where a var's value comes from: (the run's arguments, its environment, what the node prints).
VAR_SOURCES = [
    pytest.param([], None, "1.0 stable 2 false\n", id="the_files_vars_reach_expressions"),
    pytest.param(
        ["--var", "VERSION=2.5", "--var", "DEBUG=true"],
        None,
        "2.5 stable 2 true\n",
        id="a_var_flag_overrides_the_files_value",
    ),
    pytest.param(
        [], {"WTFLOW_VAR_CHANNEL": "beta"}, "1.0 beta 2 false\n", id="a_wtflow_var_variable_overrides_the_files_value"
    ),
    pytest.param(
        ["--var", "CHANNEL=nightly"],
        {"WTFLOW_VAR_CHANNEL": "beta"},
        "1.0 nightly 2 false\n",
        id="a_var_flag_beats_the_wtflow_var_variable",
    ),
]


@pytest.mark.parametrize(("args", "env", "printed"), VAR_SOURCES)
def test_vars_are_taken_from_the_file_wtflow_var_variables_and_var_flags(
    project: Path, args: list[str], env: dict[str, str] | None, printed: str
) -> None:
    assert run_file(VARS, *args, exit_code=0, env=env).stdout == printed


def test_a_var_the_file_does_not_declare_can_be_given(project: Path) -> None:
    result = run_file(
        "name: v\nnodes:\n  - {name: a, command: 'echo [${{ vars.EXTRA }}]'}\n", "--var", "EXTRA=given", exit_code=0
    )
    assert result.stdout == "[given]\n"


def test_run_config_vars_override_the_workflows_through_the_python_api(tmp_path: Path) -> None:
    workflow = Workflow(
        "v",
        Node("a", executable=Command("echo ${{ vars.A }} ${{ vars.B }}")),
        vars={"A": "from-workflow", "B": "kept"},
    )
    config = Config(storage=StorageConfig(tmp_path / "artifacts"), run=RunConfig(kill_grace=2.0, vars={"A": "given"}))
    engine = Engine(workflow, config, observers=[EventLog()])
    assert asyncio.run(engine.run_async()) == 0
    assert engine.result is not None
    assert engine.result.nodes["a"].artifacts["stdout"].data == b"given kept\n"


# -- env_file ---------------------------------------------------------------------------------------


# Each case: the env files beside the workflow (name and text), the workflow, and what its nodes print.
ENV_FILES = [
    pytest.param(
        {"ci.env": "# settings\nREGION=eu-west\nQUOTED='a b'\n"},
        """
        name: e
        env_file: ci.env
        nodes:
          - {name: a, command: 'echo "$REGION|$QUOTED"'}
          - {name: b, command: 'echo "$REGION"', needs: a}
        """,
        "eu-west|a b\neu-west\n",
        id="a_workflow_env_file_gives_every_node_its_variables",
    ),
    pytest.param(
        {"a.env": "ONLY_A=yes\n"},
        """
        name: e
        nodes:
          - {name: a, command: 'echo "a:[$ONLY_A]"', env_file: a.env}
          - {name: b, command: 'echo "b:[$ONLY_A]"', needs: a}
        """,
        "a:[yes]\nb:[]\n",
        id="a_node_env_file_gives_only_that_node_its_variables",
    ),
    pytest.param(
        {"a.env": "TARGET=prod\n"},
        """
        name: e
        nodes:
          - {name: a, command: "echo deploying to ${{ env.TARGET }}", env_file: a.env}
        """,
        "deploying to prod\n",
        id="env_file_values_are_in_the_env_context",
    ),
    pytest.param(
        {"all.env": "A=file\nB=file\nC=file\n"},
        """
        name: e
        env_file: all.env
        env: {A: workflow}
        nodes:
          - {name: n, command: 'echo "$A $B $C"', env: {B: node}}
        """,
        "workflow node file\n",
        id="env_keys_win_over_env_file_values",
    ),
    pytest.param(
        {"base.env": "BASE=1\n"},
        """
        name: e
        env_file: [base.env, {path: local.env, required: false}]
        nodes:
          - {name: a, command: 'echo "$BASE"'}
        """,
        "1\n",
        id="a_missing_env_file_that_is_not_required_is_no_error",
    ),
    pytest.param(
        {"base.env": "MODE=base\n", "local.env": "MODE=local\n"},
        "name: e\nenv_file: [base.env, local.env]\nnodes:\n  - {name: a, command: 'echo $MODE'}\n",
        "local\n",
        id="a_later_env_file_wins_over_an_earlier_one",
    ),
]


@pytest.mark.parametrize(("env_files", "workflow", "printed"), ENV_FILES)
def test_env_files_give_the_nodes_their_variables(
    project: Path, env_files: dict[str, str], workflow: str, printed: str
) -> None:
    for name, text in env_files.items():
        (project / name).write_text(text)
    assert run_file(workflow, exit_code=0).stdout == printed


def test_an_env_file_is_found_next_to_the_workflow_file_not_in_the_current_directory(project: Path) -> None:
    (project / "ci").mkdir()
    (project / "ci" / "ci.env").write_text("WHERE=beside-the-file\n")
    (project / "ci.env").write_text("WHERE=current-directory\n")
    workflow = "name: e\nenv_file: ci.env\nnodes:\n  - {name: a, command: 'echo $WHERE'}\n"
    assert run_file(workflow, file="ci/w.yml", exit_code=0).stdout == "beside-the-file\n"


def test_a_missing_env_file_exits_2_at_its_line_and_runs_nothing(project: Path) -> None:
    write(
        project / "wtflow.yml",
        """
        name: e
        nodes:
          - {name: first, command: touch ran}
          - name: second
            command: "true"
            env_file:
              - nope.env
        """,
    )
    result = cli("run", "wtflow.yml", "--db-url", "", "--log-format", "console")
    assert_clean_exit(result, 2)
    assert result.stdout == ""
    assert result.stderr.startswith("wtflow.yml:7:9: env_file 'nope.env': no such file"), result.stderr
    assert not (project / "ran").exists()
    assert not (project / ".wtflow").exists()


def test_a_missing_workflow_env_file_exits_2_at_its_line(project: Path) -> None:
    write(project / "wtflow.yml", "name: e\nenv_file: missing.env\nnodes:\n  - {name: a, command: touch ran}\n")
    result = cli("validate", "wtflow.yml")
    assert_clean_exit(result, 2)
    assert result.stderr.startswith("wtflow.yml:2:11: env_file 'missing.env': no such file"), result.stderr


# -- secrets in substituted values -------------------------------------------------------------------


def kept_files_holding(project: Path, text: bytes) -> list[str]:
    """Every file under .wtflow (run records, stored output, the database) that holds ``text``."""
    return [
        str(path.relative_to(project))
        for path in (project / ".wtflow").rglob("*")
        if path.is_file() and text in path.read_bytes()
    ]


def test_a_var_given_through_a_secret_variable_is_masked_where_it_is_substituted(project: Path) -> None:
    """``WTFLOW_VAR_TOKEN`` named by ``--secret``: its value is a secret wherever an expression puts it."""
    write(project / "wtflow.yml", "name: s\nnodes:\n  - {name: a, command: 'echo using ${{ vars.TOKEN }}'}\n")
    result = cli("run", "--secret", "WTFLOW_VAR_TOKEN", "--output", "interleaved", env={"WTFLOW_VAR_TOKEN": "tok-4242"})
    assert_clean_exit(result, 0)
    assert result.stdout == "using ***\n"
    assert "tok-4242" not in result.stderr
    assert stdout_of(project, "a") == "using ***\n"
    assert kept_files_holding(project, b"tok-4242") == []


def test_a_secret_an_env_file_sets_is_masked_in_the_shell_and_when_substituted(project: Path) -> None:
    """``env`` holds only what the workflow declares: a secret reaches it from an env file (a ``.env`` of tokens)."""
    (project / "secrets.env").write_text("API_TOKEN=tok-5151\n")
    write(
        project / "wtflow.yml",
        """
        name: s
        secrets: [API_TOKEN]
        env_file: secrets.env
        nodes:
          - {name: a, command: 'echo "shell=$API_TOKEN expr=${{ env.API_TOKEN }}"'}
        """,
    )
    result = cli("run", "--output", "interleaved", "--log-format", "console")
    assert_clean_exit(result, 0)
    assert result.stdout == "shell=*** expr=***\n"
    assert "tok-5151" not in result.stderr
    assert kept_files_holding(project, b"tok-5151") == []


def test_secret_values_passed_to_a_function_are_masked_in_its_output(project: Path) -> None:
    run_file(
        """
        name: s
        secrets: [API_TOKEN]
        nodes:
          - {name: a, command: 'echo "t=$API_TOKEN" >> "$WTFLOW_OUTPUT"'}
          - name: f
            needs: a
            function: tests.integration.expression_funcs:shows_arguments
            args: ["${{ needs.a.outputs.t }}"]
        """,
        exit_code=0,
        env={"API_TOKEN": "tok-6161"},
    )
    assert stdout_of(project, "f") == "str '***'\n"
    assert "tok-6161" not in (run_dir(project) / "run.json").read_text()
    assert run_record(project)["nodes"]["a"]["outputs"] == {"t": "***"}
