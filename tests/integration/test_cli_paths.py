"""User-facing paths of the CLI that a run rarely takes: the action's inputs, empty or missing history, bad URLs."""

from __future__ import annotations

import builtins
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import cli

ONE_NODE = "name: wf\nroot: {name: hello, command: echo hello}\n"


@pytest.fixture
def project(workdir: Path) -> Path:
    (workdir / "wtflow.yml").write_text(ONE_NODE)
    return workdir


def test_the_action_reads_its_inputs_from_input_variables(project: Path) -> None:
    children = "[{name: a, command: echo a}, {name: b, command: echo b}]"
    (project / "other.yml").write_text(f"name: other\nroot: {{name: r, parallel: true, children: {children}}}\n")
    env = {
        "INPUT_WORKFLOW-FILE": "other.yml",
        "INPUT_ARTIFACTS-DIR": "arts",
        "INPUT_DB-URL": f"sqlite:///{project / 'action.db'}",
        "INPUT_TARGETS": "a",
        "INPUT_MAX-PARALLEL": "1",
        "INPUT_LOG-FORMAT": "json",
        "INPUT_ARGS": "--output quiet",
    }
    result = cli("action", env=env)
    assert result.exit_code == 0, result.output
    run_json = json.loads(next((project / "arts").glob("*/run.json")).read_text())
    assert run_json["workflow"] == "other"
    assert set(run_json["nodes"]) == {"r", "a"}  # the target and what it needs, not b
    assert (project / "action.db").exists()
    assert result.stdout == ""  # --output quiet from INPUT_ARGS


def test_the_action_defaults_to_wtflow_yml_and_wtflow_artifacts(project: Path) -> None:
    result = cli("action", env={"INPUT_DB-URL": ""})
    assert result.exit_code == 0, result.output
    assert list((project / "wtflow-artifacts").glob("*/run.json"))


def test_runs_without_a_database_is_a_usage_error(project: Path) -> None:
    result = cli("runs", "list", "--db-url", "")
    assert result.exit_code == 2
    assert result.stderr == "Error: no database configured: set --db-url or WTFLOW_DB_URL\n"


def test_runs_list_before_any_run_says_so(project: Path) -> None:
    result = cli("runs", "list")
    assert (result.exit_code, result.stdout) == (0, "no runs yet\n")


def test_runs_list_with_a_filter_that_matches_nothing_says_so(project: Path) -> None:
    assert cli("run").exit_code == 0
    result = cli("runs", "list", "--status", "failed")
    assert (result.exit_code, result.stdout) == (0, "no matching runs\n")


def test_runs_logs_of_removed_artifacts_says_they_were_removed(project: Path) -> None:
    assert cli("run").exit_code == 0
    run_id = cli("runs", "list").stdout.splitlines()[1].split()[0]
    shutil.rmtree(project / ".wtflow" / "artifacts")
    result = cli("runs", "logs", run_id, "hello")
    assert result.exit_code == 2
    assert "No such file or directory; the artifacts may have been removed" in result.stderr


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://user@localhost/db", "only sqlite:// and postgresql:// are supported"),
        ("not a url", "is not valid; use e.g. sqlite:///path/to/wtflow.db or postgresql://user@host/db"),
    ],
)
def test_an_unsupported_or_invalid_database_url_exits_2_before_running(project: Path, url: str, message: str) -> None:
    result = cli("run", "--db-url", url)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""  # the node did not run


def test_postgresql_without_its_driver_names_the_extra(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def without_psycopg(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "psycopg" or name.startswith("psycopg."):
            raise ImportError("No module named 'psycopg'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_psycopg)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *args: None if name == "psycopg" else object())
    result = cli("runs", "list", "--db-url", "postgresql://postgres@127.0.0.1:5432/test")
    assert result.exit_code == 3, result.output
    assert "pip install 'wtflow[postgres]'" in result.stderr


def test_the_actions_default_inputs_keep_node_output_on_the_console(project: Path) -> None:
    """GitHub passes every input's default: log-format auto must not turn the output into JSON lines."""
    env = {"INPUT_LOG-FORMAT": "auto", "INPUT_DB-URL": "", "GITHUB_ACTIONS": "true"}
    result = cli("action", env=env)
    assert result.exit_code == 0, result.output
    assert "::group::hello (succeeded)\nhello\n::endgroup::\n" in result.stdout
