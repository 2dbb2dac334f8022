"""Workflow ``vars`` (``--var``, ``WTFLOW_VAR_<NAME>``), ``env_file``, and secrets reaching substituted values."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import EventLog, cli
from tests.integration.workflow_files import (
    assert_clean_exit,
    clear_settings,
    run,
    run_dir,
    run_record,
    stdout_of,
    write,
)
from wtflow import Command, Config, Engine, Node, RunConfig, StorageConfig, Workflow


@pytest.fixture
def project(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    clear_settings(monkeypatch)
    return workdir


# -- vars -------------------------------------------------------------------------------------------

VARS = """
name: v
vars: {VERSION: "1.0", CHANNEL: stable, COUNT: 2, DEBUG: false}
nodes:
  - name: show
    command: echo "${{ vars.VERSION }} ${{ vars.CHANNEL }} ${{ vars.COUNT }} ${{ vars.DEBUG }}"
"""


@pytest.fixture
def with_vars(project: Path) -> Path:
    write(project / "wtflow.yml", VARS)
    return project


def test_the_files_vars_reach_expressions(with_vars: Path) -> None:
    result = run()
    assert_clean_exit(result, 0)
    assert result.stdout == "1.0 stable 2 false\n"


def test_a_var_flag_overrides_the_files_value(with_vars: Path) -> None:
    result = run("--var", "VERSION=2.5", "--var", "DEBUG=true")
    assert_clean_exit(result, 0)
    assert result.stdout == "2.5 stable 2 true\n"


def test_a_wtflow_var_variable_overrides_the_files_value(with_vars: Path) -> None:
    result = run(env={"WTFLOW_VAR_CHANNEL": "beta"})
    assert_clean_exit(result, 0)
    assert result.stdout == "1.0 beta 2 false\n"


def test_a_var_flag_beats_the_wtflow_var_variable(with_vars: Path) -> None:
    result = run("--var", "CHANNEL=nightly", env={"WTFLOW_VAR_CHANNEL": "beta"})
    assert_clean_exit(result, 0)
    assert result.stdout == "1.0 nightly 2 false\n"


def test_a_var_the_file_does_not_declare_can_be_given(project: Path) -> None:
    write(project / "wtflow.yml", "name: v\nnodes:\n  - {name: a, command: 'echo [${{ vars.EXTRA }}]'}\n")
    result = run("--var", "EXTRA=given")
    assert_clean_exit(result, 0)
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


def test_a_workflow_env_file_gives_every_node_its_variables(project: Path) -> None:
    (project / "ci.env").write_text("# settings\nREGION=eu-west\nQUOTED='a b'\n")
    write(
        project / "wtflow.yml",
        """
        name: e
        env_file: ci.env
        nodes:
          - {name: a, command: 'echo "$REGION|$QUOTED"'}
          - {name: b, command: 'echo "$REGION"', needs: a}
        """,
    )
    result = run()
    assert_clean_exit(result, 0)
    assert result.stdout == "eu-west|a b\neu-west\n"


def test_a_node_env_file_gives_only_that_node_its_variables(project: Path) -> None:
    (project / "a.env").write_text("ONLY_A=yes\n")
    write(
        project / "wtflow.yml",
        """
        name: e
        nodes:
          - {name: a, command: 'echo "a:[$ONLY_A]"', env_file: a.env}
          - {name: b, command: 'echo "b:[$ONLY_A]"', needs: a}
        """,
    )
    result = run()
    assert_clean_exit(result, 0)
    assert result.stdout == "a:[yes]\nb:[]\n"


def test_env_file_values_are_in_the_env_context(project: Path) -> None:
    (project / "a.env").write_text("TARGET=prod\n")
    write(
        project / "wtflow.yml",
        """
        name: e
        nodes:
          - {name: a, command: "echo deploying to ${{ env.TARGET }}", env_file: a.env}
        """,
    )
    result = run()
    assert_clean_exit(result, 0)
    assert result.stdout == "deploying to prod\n"


def test_env_keys_win_over_env_file_values(project: Path) -> None:
    (project / "all.env").write_text("A=file\nB=file\nC=file\n")
    write(
        project / "wtflow.yml",
        """
        name: e
        env_file: all.env
        env: {A: workflow}
        nodes:
          - {name: n, command: 'echo "$A $B $C"', env: {B: node}}
        """,
    )
    result = run()
    assert_clean_exit(result, 0)
    assert result.stdout == "workflow node file\n"


def test_an_env_file_is_found_next_to_the_workflow_file_not_in_the_current_directory(project: Path) -> None:
    (project / "ci").mkdir()
    (project / "ci" / "ci.env").write_text("WHERE=beside-the-file\n")
    (project / "ci.env").write_text("WHERE=current-directory\n")
    write(project / "ci" / "w.yml", "name: e\nenv_file: ci.env\nnodes:\n  - {name: a, command: 'echo $WHERE'}\n")
    result = run("ci/w.yml")
    assert_clean_exit(result, 0)
    assert result.stdout == "beside-the-file\n"


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


def test_a_missing_env_file_that_is_not_required_is_no_error(project: Path) -> None:
    (project / "base.env").write_text("BASE=1\n")
    write(
        project / "wtflow.yml",
        """
        name: e
        env_file: [base.env, {path: local.env, required: false}]
        nodes:
          - {name: a, command: 'echo "$BASE"'}
        """,
    )
    result = run()
    assert_clean_exit(result, 0)
    assert result.stdout == "1\n"


def test_a_later_env_file_wins_over_an_earlier_one(project: Path) -> None:
    (project / "base.env").write_text("MODE=base\n")
    (project / "local.env").write_text("MODE=local\n")
    write(
        project / "wtflow.yml",
        "name: e\nenv_file: [base.env, local.env]\nnodes:\n  - {name: a, command: 'echo $MODE'}\n",
    )
    result = run()
    assert_clean_exit(result, 0)
    assert result.stdout == "local\n"


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
    write(
        project / "wtflow.yml",
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
    )
    result = run(env={"API_TOKEN": "tok-6161"})
    assert_clean_exit(result, 0)
    assert stdout_of(project, "f") == "str '***'\n"
    assert "tok-6161" not in (run_dir(project) / "run.json").read_text()
    assert run_record(project)["nodes"]["a"]["outputs"] == {"t": "***"}
