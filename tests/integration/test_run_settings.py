"""``wtflow run``'s settings: durations, --max-fail, --var and WTFLOW_VAR_*, and a WTFLOW_OUTPUT that is a path.

Values are checked where they land (the :class:`~wtflow.config.Config` the options build, parsed as
the command line would be, nothing run); acceptance and errors through the real ``wtflow run``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import cli
from wtflow.cli.options import App
from wtflow.cli.run import run
from wtflow.config import Config
from wtflow.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
ONE_NODE = "name: w\nnodes:\n  - name: a\n    command: echo hi\n"
FORMS = "write seconds (90) or e.g. 90s, 5m, 1h30m"
USAGE = 2  # click's usage errors exit 2, like ConfigError


@pytest.fixture
def project(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A one-node workflow in the test's directory, with none of the settings under test in the environment."""
    for variable in ("WTFLOW_KILL_GRACE", "WTFLOW_DB_RETRY", "WTFLOW_MAX_FAIL", "WTFLOW_OUTPUT", "WTFLOW_CONFIG"):
        monkeypatch.delenv(variable, raising=False)
    for variable in [name for name in os.environ if name.startswith("WTFLOW_VAR_")]:
        monkeypatch.delenv(variable)
    (workdir / "wtflow.yml").write_text(ONE_NODE)
    return workdir


def parsed(*args: str) -> tuple[Config, dict[str, Any]]:
    """The configuration and the parameters ``wtflow run ARGS`` would run with: options parsed, nothing run."""
    with run.make_context("run", list(args)) as ctx:
        return ctx.ensure_object(App).config(), ctx.params


def configured(*args: str) -> Config:
    return parsed(*args)[0]


# Durations: --kill-grace, --db-retry and their variables


def test_kill_grace_takes_a_duration(project: Path) -> None:
    result = cli("run", "--kill-grace", "2s", "--db-url", "")
    assert result.exit_code == 0, result.output
    assert result.stdout == "hi\n"


@pytest.mark.parametrize(("value", "seconds"), [("2s", 2.0), ("1m30s", 90.0), ("2.5", 2.5)])
def test_kill_grace_duration_reaches_the_config(project: Path, value: str, seconds: float) -> None:
    assert configured("--kill-grace", value).run.kill_grace == seconds


def test_kill_grace_variable_takes_a_duration(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WTFLOW_KILL_GRACE", "500ms")
    assert configured().run.kill_grace == 0.5


def test_db_retry_takes_a_duration(project: Path) -> None:
    assert configured("--db-retry", "1m").db.retry == 60.0


def test_kill_grace_that_is_no_duration_exits_2_naming_the_option(project: Path) -> None:
    result = cli("run", "--kill-grace", "2x")
    assert result.exit_code == USAGE
    assert result.stdout == ""
    assert result.stderr.endswith(f"Error: Invalid value for '--kill-grace': '2x' is not a duration; {FORMS}\n")
    assert "Traceback" not in result.stderr


def test_negative_kill_grace_exits_2(project: Path) -> None:
    result = cli("run", "--kill-grace", "-1")
    assert result.exit_code == USAGE
    assert result.stderr.endswith("Error: Invalid value for '--kill-grace': '-1' is not a duration >= 0\n")


def test_bad_kill_grace_variable_exits_2_naming_the_variable(project: Path) -> None:
    result = cli("run", env={"WTFLOW_KILL_GRACE": "2x"})
    assert result.exit_code == USAGE
    assert (
        f"Invalid value for '--kill-grace' (from WTFLOW_KILL_GRACE): '2x' is not a duration; {FORMS}" in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_ini_value_that_is_no_duration_is_a_config_error(project: Path) -> None:
    (project / "wtflow.ini").write_text("[run]\nkill_grace = soon\n")
    result = cli("run", "--config", "wtflow.ini", "--log-format", "console")
    assert result.exit_code == ConfigError.exit_code
    assert result.stderr == f"Error: wtflow.ini [run] kill_grace: 'soon' is not a duration; {FORMS}\n"


# --max-fail, WTFLOW_MAX_FAIL, [run] max_fail, the action's max-fail


def test_max_fail_is_unset_without_a_flag_variable_or_ini_key(project: Path) -> None:
    assert configured().run.max_fail is None


def test_max_fail_flag_reaches_the_config(project: Path) -> None:
    assert configured("--max-fail", "3").run.max_fail == 3


def test_max_fail_flag_beats_the_variable_beats_the_ini_file(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "wtflow.ini").write_text("[run]\nmax_fail = 1\n")
    assert configured("--config", "wtflow.ini").run.max_fail == 1
    monkeypatch.setenv("WTFLOW_MAX_FAIL", "2")
    assert configured("--config", "wtflow.ini").run.max_fail == 2
    assert configured("--config", "wtflow.ini", "--max-fail", "3").run.max_fail == 3


def test_ini_max_fail_is_accepted(project: Path) -> None:
    (project / "wtflow.ini").write_text("[run]\nmax_fail = 2\n")
    result = cli("run", "--config", "wtflow.ini", "--db-url", "")
    assert result.exit_code == 0, result.output
    assert result.stdout == "hi\n"


def test_negative_max_fail_flag_exits_2(project: Path) -> None:
    result = cli("run", "--max-fail", "-1")
    assert result.exit_code == USAGE
    assert result.stderr.endswith("Error: Invalid value for '--max-fail': -1 is not in the range x>=0.\n")


def test_negative_max_fail_variable_is_a_usage_error_naming_it(project: Path) -> None:
    result = cli("run", env={"WTFLOW_MAX_FAIL": "-1"})
    assert result.exit_code == ConfigError.exit_code
    assert "Invalid value for '--max-fail' (from WTFLOW_MAX_FAIL): -1 is not in the range x>=0." in result.stderr
    assert "Traceback" not in result.stderr


def test_negative_ini_max_fail_is_a_config_error(project: Path) -> None:
    (project / "wtflow.ini").write_text("[run]\nmax_fail = -1\n")
    result = cli("run", "--config", "wtflow.ini", "--log-format", "console")
    assert result.exit_code == ConfigError.exit_code
    assert result.stderr == "Error: wtflow.ini [run] max_fail: expected a whole number >= 0, got '-1'\n"


def test_the_action_declares_a_max_fail_input() -> None:
    inputs = yaml.safe_load((ROOT / "action.yml").read_text())["inputs"]
    assert inputs["max-fail"]["default"] == ""


def test_the_action_passes_its_max_fail_input_to_run(project: Path) -> None:
    """A bad input is refused by ``--max-fail``: the input reached the option."""
    result = cli("action", env={"INPUT_MAX-FAIL": "-1", "INPUT_WORKFLOW-FILE": "wtflow.yml", "INPUT_DB-URL": ""})
    assert result.exit_code == USAGE
    assert "Invalid value for '--max-fail': -1 is not in the range x>=0." in result.stderr


# --var NAME=VALUE and WTFLOW_VAR_<NAME>


def test_var_reaches_the_config(project: Path) -> None:
    config = configured("--var", "A=1", "--var", "b_2=x=y", "--var", "EMPTY=")
    assert dict(config.run.vars) == {"A": "1", "b_2": "x=y", "EMPTY": ""}


def test_var_variables_reach_the_config(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WTFLOW_VAR_Version", "1.2")
    assert dict(configured().run.vars) == {"Version": "1.2"}


def test_var_flag_beats_the_var_variable_of_the_same_name(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WTFLOW_VAR_A", "env")
    monkeypatch.setenv("WTFLOW_VAR_B", "env")
    assert dict(configured("--var", "A=flag").run.vars) == {"A": "flag", "B": "env"}


def test_a_later_var_flag_beats_an_earlier_one(project: Path) -> None:
    assert dict(configured("--var", "A=1", "--var", "A=2").run.vars) == {"A": "2"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("A", "'A': expected NAME=VALUE"),
        ("=1", "'=1': '' is not a variable name"),
        ("1A=x", "'1A=x': '1A' is not a variable name"),
        ("a.b=x", "'a.b=x': 'a.b' is not a variable name"),
    ],
)
def test_bad_var_exits_2_naming_the_value(project: Path, value: str, message: str) -> None:
    result = cli("run", "--var", value)
    assert result.exit_code == USAGE
    assert result.stdout == ""
    assert f"Error: Invalid value for '--var': {message}" in result.stderr
    assert "Traceback" not in result.stderr


def test_var_variable_with_a_bad_name_is_a_config_error_naming_it(project: Path) -> None:
    result = cli("run", "--log-format", "console", env={"WTFLOW_VAR_a.b": "1"})
    assert result.exit_code == ConfigError.exit_code
    assert result.stderr.startswith("Error: WTFLOW_VAR_a.b: 'a.b' is not a variable name; a name starts with")


# WTFLOW_OUTPUT: a node's outputs file, or how output is shown


def test_wtflow_output_that_is_a_path_leaves_the_output_mode_unset(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WTFLOW_OUTPUT", str(project / "outputs.env"))
    assert parsed()[1]["output"] is None


def test_wtflow_output_that_is_a_mode_still_sets_it(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WTFLOW_OUTPUT", "quiet")
    assert parsed()[1]["output"] == "quiet"


def test_run_inside_a_node_ignores_the_nodes_outputs_file_in_wtflow_output(project: Path) -> None:
    result = cli("run", "--db-url", "", env={"WTFLOW_OUTPUT": str(project / "outputs.env")})
    assert result.exit_code == 0, result.output
    assert result.stdout == "hi\n"


def test_output_flag_that_is_no_mode_is_still_refused(project: Path) -> None:
    result = cli("run", "--output", str(project / "outputs.env"))
    assert result.exit_code == USAGE
    assert "Invalid value for '--output'" in result.stderr
