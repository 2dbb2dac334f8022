"""The wtflow command line, driven through Click's CliRunner in a scratch directory."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.conftest import cli
from wtflow import __version__

SIMPLE = """
name: ci
root:
  name: ci
  command: echo start
  children:
    - name: lint
      command: echo linting
    - name: tests
      parallel: true
      children:
        - {name: unit, command: [echo, unit], timeout: 1m}
        - {name: slow, command: "echo slow >&2"}
"""


@pytest.fixture
def project(workdir: Path) -> Path:
    (workdir / "wtflow.yml").write_text(SIMPLE)
    return workdir


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def last_run_dir(project: Path) -> Path:
    return max((project / ".wtflow" / "artifacts").iterdir())


def test_version() -> None:
    result = cli("--version")
    assert (result.exit_code, result.stdout) == (0, f"wtflow, version {__version__}\n")


def test_run_uses_the_directorys_workflow_and_prefixes_parallel_output(project: Path) -> None:
    result = cli("run", "--log-format", "console")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == ["[ci] start", "[lint] linting", "[unit] unit"]
    assert "[slow] slow" in result.stderr


def test_interleaved_output_is_raw(project: Path) -> None:
    result = cli("run", "--output", "interleaved")
    assert result.stdout == "start\nlinting\nunit\n"


def test_sequential_workflow_defaults_to_interleaved_output(project: Path) -> None:
    write(project / "seq.yml", "name: s\nroot: {name: a, command: echo a, children: [{name: b, command: echo b}]}\n")
    assert cli("run", "seq.yml").stdout == "a\nb\n"


def test_grouped_output_prints_each_node_as_a_block(project: Path) -> None:
    result = cli("run", "--output", "grouped")
    assert "── lint (succeeded) ──\nlinting\n" in result.stdout


def test_quiet_output_prints_no_node_output(project: Path) -> None:
    result = cli("run", "--output", "quiet")
    assert (result.exit_code, result.stdout) == (0, "")


def test_failed_node_exits_1(project: Path) -> None:
    write(project / "fail.yml", "name: f\nroot: {name: a, command: 'exit 3'}\n")
    result = cli("run", "fail.yml")
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr


def test_invalid_workflow_exits_2_with_position_and_no_traceback(project: Path) -> None:
    write(project / "bad.yml", "name: b\nroot:\n  name: a\n  comand: echo\n")
    result = cli("run", "bad.yml", "--log-format", "console")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == "bad.yml:4:3: unknown key 'comand'; did you mean 'command'?\n"
    assert not (project / ".wtflow").exists()


def test_missing_path_exits_2(project: Path) -> None:
    result = cli("run", "nope.yml", "--log-format", "console")
    assert (result.exit_code, result.stderr) == (2, "Error: nope.yml: no such file or directory\n")


def test_bad_option_value_exits_2(project: Path) -> None:
    result = cli("run", "--max-parallel", "0")
    assert result.exit_code == 2
    assert "Invalid value for '--max-parallel'" in result.stderr


def test_bad_environment_value_exits_2(project: Path) -> None:
    result = cli("run", env={"WTFLOW_IGNORE_FAILURE": "maybe"})
    assert result.exit_code == 2
    assert "'maybe' is not a valid boolean" in result.stderr


def test_dry_run_prints_the_plan_and_runs_nothing(project: Path) -> None:
    result = cli("run", "--dry-run", "--max-parallel", "3")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[:4] == [
        "workflow 'ci': 5 nodes, at most 3 at once",
        "    1. ci",
        "    2. lint",
        "    3. unit, slow  (in parallel)",
    ]
    assert not (project / ".wtflow").exists()


def test_target_runs_the_node_and_what_it_needs(project: Path) -> None:
    result = cli("run", "--target", "unit", "--output", "interleaved")
    assert result.exit_code == 0
    assert result.stdout == "start\nunit\n"


def test_unknown_target_is_a_usage_error(project: Path) -> None:
    result = cli("run", "--target", "unt", "--log-format", "console")
    assert result.exit_code == 2
    assert "--target 'unt' is not a node of workflow 'ci'; did you mean 'unit'?" in result.stderr


def test_runs_are_recorded_in_dot_wtflow_by_default(project: Path) -> None:
    cli("run")
    listing = cli("runs", "list")
    assert listing.exit_code == 0
    header, row = listing.stdout.splitlines()
    assert header.split() == ["RUN", "ID", "WORKFLOW", "STATUS", "EXIT", "STARTED", "DURATION"]
    run_id = row.split()[0]
    assert row.split()[1:4] == ["ci", "succeeded", "0"]
    assert (project / ".wtflow" / "wtflow.db").is_file()
    assert (project / ".wtflow" / "artifacts" / run_id / "run.json").is_file()


def test_runs_show_lists_nodes_with_status_and_artifacts(project: Path) -> None:
    cli("run")
    run_id = last_run_dir(project).name
    shown = cli("runs", "show", run_id[:20])
    assert shown.exit_code == 0
    assert f"run       {run_id}" in shown.stdout
    lines = {line.split()[0]: line for line in shown.stdout.splitlines() if line.startswith("ci")}
    assert lines["ci/lint"].split()[1:3] == ["succeeded", "0"]
    assert "stdout 8B" in lines["ci/lint"]


def test_runs_logs_prints_a_nodes_output(project: Path) -> None:
    cli("run")
    run_id = last_run_dir(project).name
    assert cli("runs", "logs", run_id, "lint").stdout == "linting\n"
    assert cli("runs", "logs", run_id, "slow", "--stderr").stdout == "slow\n"


def test_runs_show_unknown_run_exits_2(project: Path) -> None:
    result = cli("runs", "show", "nope")
    assert (result.exit_code, result.stderr) == (2, "Error: no run 'nope'; `wtflow runs list` shows the runs\n")


def test_runs_list_filters_by_status(project: Path) -> None:
    write(project / "fail.yml", "name: f\nroot: {name: a, command: 'exit 3'}\n")
    cli("run")
    cli("run", "fail.yml")
    failed = cli("runs", "list", "--status", "failed").stdout.splitlines()[1:]
    assert [line.split()[1:3] for line in failed] == [["f", "failed"]]


def test_nodes_get_run_id_node_and_run_dir_in_their_environment(project: Path) -> None:
    write(
        project / "env.yml", 'name: e\nroot: {name: a, command: "echo $WTFLOW_RUN_ID $WTFLOW_NODE $WTFLOW_RUN_DIR"}\n'
    )
    result = cli("run", "env.yml")
    run_dir = last_run_dir(project)
    assert result.stdout == f"{run_dir.name} a {run_dir}\n"


def test_workflow_env_and_working_directory_apply(project: Path) -> None:
    (project / "sub").mkdir()
    write(
        project / "wd.yml",
        """
        name: wd
        env: {GREETING: hello}
        root: {name: a, command: 'echo $GREETING $(basename $(pwd)) $LOCAL', working_directory: sub, env: {LOCAL: x}}
        """,
    )
    assert cli("run", "wd.yml").stdout == "hello sub x\n"


def test_retries_rerun_a_failing_node(project: Path) -> None:
    write(
        project / "retry.yml",
        """
        name: r
        root: {name: flaky, command: 'test -f done || { touch done; exit 1; }', retries: {max: 2, delay: 0s}}
        """,
    )
    result = cli("run", "retry.yml", "--log-format", "json")
    assert result.exit_code == 0
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert [e["attempt"] for e in events if e["event"] == "node_retrying"] == [1]
    finished = next(e for e in events if e["event"] == "node_finished")
    assert (finished["status"], finished["attempt"]) == ("succeeded", 2)


def test_continue_on_error_node_does_not_fail_the_run(project: Path) -> None:
    write(
        project / "coe.yml",
        """
        name: c
        nodes:
          - {name: a, command: 'exit 1', continue_on_error: true}
          - {name: b, command: 'echo b ran', needs: [a]}
        """,
    )
    result = cli("run", "coe.yml")
    assert (result.exit_code, result.stdout) == (0, "b ran\n")
    nodes = json.loads((last_run_dir(project) / "run.json").read_text())["nodes"]
    assert (nodes["a"]["status"], nodes["a"]["exit_code"]) == ("failed", 1)
    assert nodes["b"]["status"] == "succeeded"


def test_ignore_failure_flag_keeps_going(project: Path) -> None:
    write(project / "ign.yml", "name: i\nroot: {name: a, command: 'exit 1', children: [{name: b, command: echo b}]}\n")
    result = cli("run", "ign.yml", "--ignore-failure")
    assert (result.exit_code, result.stdout) == (1, "b\n")


def test_declared_file_artifacts_are_kept(project: Path) -> None:
    write(
        project / "art.yml",
        """
        name: a
        root:
          name: build
          command: mkdir -p out && echo report > out/report.txt && echo x > out/other.log
          artifacts: [{name: report, path: "out/*.txt"}]
        """,
    )
    assert cli("run", "art.yml").exit_code == 0
    kept = last_run_dir(project) / "build" / "files" / "report" / "out" / "report.txt"
    assert kept.read_text() == "report\n"
    assert not (kept.parent / "other.log").exists()


def test_json_logs_make_every_stderr_line_a_json_object(project: Path) -> None:
    result = cli("run", "--log-format", "json")
    assert result.exit_code == 0
    records = [json.loads(line) for line in result.stderr.splitlines()]
    kinds = [r["event"] for r in records]
    assert kinds[0] == "run_started"
    assert kinds[-1] == "run_finished"
    assert {"node": "slow", "stream": "stderr", "line": "slow"}.items() <= next(
        r for r in records if r["event"] == "output" and r["node"] == "slow"
    ).items()
    assert result.stdout == ""
    assert all(r["run_id"] == records[0]["run_id"] for r in records)


def test_json_logs_report_errors_as_json(project: Path) -> None:
    result = cli("run", "missing.yml", "--log-format", "json")
    assert result.exit_code == 2
    assert json.loads(result.stderr) == {
        "event": "error",
        "level": "error",
        "message": "missing.yml: no such file or directory",
    }


def test_events_file_records_the_run(project: Path) -> None:
    cli("run")
    lines = (last_run_dir(project) / "events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    assert events[0]["event"] == "run_started"
    assert events[-1] == events[-1] | {"event": "run_finished", "status": "succeeded", "exit_code": 0}
    assert sum(e["event"] == "node_finished" for e in events) == 5


def test_flags_beat_environment_beats_config_file(project: Path) -> None:
    write(project / "wtflow.ini", "[storage]\nartifacts_dir = from-ini\n[run]\nmax_parallel = 1\n")
    cli("run", "--config", "wtflow.ini")
    assert (project / "from-ini").is_dir()
    cli("run", "--config", "wtflow.ini", env={"WTFLOW_ARTIFACTS_DIR": "from-env"})
    assert (project / "from-env").is_dir()
    cli("run", "--config", "wtflow.ini", "--artifacts-dir", "from-flag", env={"WTFLOW_ARTIFACTS_DIR": "from-env"})
    assert (project / "from-flag").is_dir()


def test_config_file_errors_exit_2(project: Path) -> None:
    write(project / "bad.ini", "[run]\nmax_paralel = 2\n")
    result = cli("run", "--config", "bad.ini", "--log-format", "console")
    assert result.exit_code == 2
    assert "unknown key 'max_paralel' in [run]; did you mean 'max_parallel'?" in result.stderr


def test_unreachable_database_exits_3_before_running(project: Path) -> None:
    result = cli("run", "--db-url", "postgresql://nobody@127.0.0.1:1/x", "--log-format", "console")
    assert result.exit_code == 3
    assert "is unavailable" in result.stderr
    assert result.stdout == ""


def test_empty_db_url_disables_the_database(project: Path) -> None:
    assert cli("run", "--db-url", "").exit_code == 0
    assert not (project / ".wtflow" / "wtflow.db").exists()


def test_validate_reports_every_file(project: Path) -> None:
    write(project / "bad.yml", "name: b\nroot: {name: a, parallel: 1}\n")
    result = cli("validate", "wtflow.yml", "bad.yml")
    assert result.exit_code == 2
    assert result.stdout == "wtflow.yml: ok: workflow 'ci', 5 nodes\n"
    assert result.stderr == "bad.yml:2:27: parallel: expected true or false, got number 1\n"


def test_list_shows_the_tree(project: Path) -> None:
    result = cli("list")
    assert result.stdout.splitlines()[1:] == [
        "  ci  [command]",
        "    lint  [command]",
        "    tests  [group, parallel]",
        "      unit  [command]",
        "      slow  [command]",
    ]


def test_graph_mermaid_and_dot(project: Path) -> None:
    mermaid = cli("graph").stdout
    assert mermaid.startswith("flowchart TD\n")
    assert '  n2(["tests"])' in mermaid
    dot = cli("graph", "--format", "dot").stdout
    assert '"tests" -> "unit";' in dot


def test_schema_is_a_json_schema_that_accepts_the_documented_examples(project: Path) -> None:
    schema = json.loads(cli("schema").stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    examples = Path(__file__).parents[2] / "examples"
    for path in sorted(examples.glob("*.yml")):
        assert list(validator.iter_errors(yaml.safe_load(path.read_text()))) == [], path
    typo = jsonschema.exceptions.best_match(validator.iter_errors({"name": "x", "root": {"name": "a", "comand": "x"}}))
    assert typo is not None
    assert (typo.validator, list(typo.absolute_path)) == ("additionalProperties", ["root"])
    assert "'comand' was unexpected" in typo.message


def test_main_help_shows_its_examples_line_by_line_without_escape_codes() -> None:
    result = cli("--help")
    assert result.exit_code == 0
    assert "\\b" not in result.stdout
    assert "\b" not in result.stdout
    assert "\n  Quick start:\n    wtflow run                 run wtflow.yml of this directory\n" in result.stdout
    assert "\n    wtflow runs list           what ran, newest first\n" in result.stdout


def test_help_documents_exit_codes() -> None:
    result = cli("run", "--help")
    assert "3    a backend is unavailable" in result.stdout
    assert "WTFLOW_MAX_PARALLEL" in result.stdout


def test_options_without_their_own_variable_still_have_one(project: Path) -> None:
    cli("run")
    cli("run")
    result = cli("runs", "list", env={"WTFLOW_RUNS_LIST_LIMIT": "1"})
    assert len(result.stdout.splitlines()) == 2


def test_unwritable_artifacts_directory_exits_3_before_running(project: Path) -> None:
    (project / "blocked").write_text("a file, not a directory")
    result = cli("run", "--artifacts-dir", "blocked/arts", "--log-format", "console")
    assert result.exit_code == 3
    assert "artifacts directory blocked/arts cannot be written: Not a directory" in result.stderr
    assert result.stdout == ""
    listing = cli("runs", "list").stdout.splitlines()
    assert listing[1].split()[1:4] == ["ci", "failed", "1"]  # the run is recorded, as failed


SECRET_WORKFLOW = """
name: s
secrets: [API_TOKEN]
root:
  name: leak
  command: 'echo "token=$API_TOKEN"; echo "::add-mask::later-value"; echo "then later-value"; echo "$OTHER" >&2'
  children:
    - {name: missing, command: ["tok-12345-program"]}  # its error text holds the secret
"""


def test_secrets_are_masked_in_console_logs_events_artifacts_and_database(project: Path) -> None:
    write(project / "s.yml", SECRET_WORKFLOW)
    env = {"API_TOKEN": "tok-12345", "OTHER": "other-secret"}
    result = cli("run", "s.yml", "--secret", "OTHER", "--log-format", "json", env=env)
    assert result.exit_code == 1
    run_dir = last_run_dir(project)
    everything = [
        result.stdout,
        result.stderr,
        (run_dir / "events.jsonl").read_text(),
        (run_dir / "run.json").read_text(),
    ]
    everything += [p.read_text() for p in run_dir.glob("*/*.log")]
    everything += [(project / ".wtflow" / "wtflow.db").read_bytes().decode("latin-1")]
    for text in everything:
        assert "tok-12345" not in text
        assert "other-secret" not in text
        assert "then later-value" not in text
    assert (run_dir / "leak" / "stdout.log").read_text() == "token=***\n::add-mask::***\nthen ***\n"
    assert "cannot start '***-program'" in (run_dir / "missing" / "stderr.log").read_text()
    shown = cli("runs", "show", run_dir.name).stdout
    assert "missing: cannot start '***-program'" in shown


def test_no_mask_artifacts_keeps_stored_output_raw_but_the_console_masked(project: Path) -> None:
    write(project / "s.yml", "name: s\nsecrets: [API_TOKEN]\nroot: {name: a, command: 'echo $API_TOKEN'}\n")
    result = cli("run", "s.yml", "--no-mask-artifacts", env={"API_TOKEN": "tok-12345"})
    assert result.stdout == "***\n"
    assert (last_run_dir(project) / "a" / "stdout.log").read_text() == "tok-12345\n"


@pytest.mark.parametrize("github", [False, True])
def test_grouped_output_of_raw_stored_output_is_masked_on_the_console(project: Path, github: bool) -> None:
    write(project / "s.yml", "name: s\nsecrets: [API_TOKEN]\nroot: {name: a, command: 'echo $API_TOKEN'}\n")
    env = {"API_TOKEN": "tok-12345", "GITHUB_ACTIONS": "true" if github else "false"}
    result = cli("run", "s.yml", "--no-mask-artifacts", "--output", "grouped", env=env)
    assert result.exit_code == 0
    assert "tok-12345" not in result.output
    assert "***\n" in result.stdout
    assert (last_run_dir(project) / "a" / "stdout.log").read_text() == "tok-12345\n"


def test_the_step_summary_masks_values_a_node_announced(project: Path) -> None:
    command = "echo ::add-mask::topsecret-99; echo leaked topsecret-99; exit 1"
    write(project / "m.yml", f"name: m\nroot: {{name: a, command: '{command}'}}\n")
    summary = project / "summary.md"
    result = cli("run", "m.yml", env={"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)})
    assert result.exit_code == 1
    text = summary.read_text()
    assert "leaked ***" in text
    assert "topsecret-99" not in text + result.output


GITHUB_WORKFLOW = """
name: gh
root:
  name: gh
  parallel: true
  children:
    - {name: good, command: echo fine}
    - {name: bad, command: 'echo oops-line >&2; exit 4', continue_on_error: true}
"""


def test_under_github_actions_outputs_summary_annotations_and_groups(project: Path) -> None:
    write(project / "gh.yml", GITHUB_WORKFLOW)
    output, summary = project / "output.txt", project / "summary.md"
    env = {"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary)}
    result = cli("run", "gh.yml", env=env)
    assert result.exit_code == 0
    run_dir = last_run_dir(project)
    assert output.read_text() == f"run-id={run_dir.name}\nstatus=succeeded\nartifacts-dir=.wtflow/artifacts\n"
    text = summary.read_text()
    assert "| good | ✅ succeeded |" in text
    assert "| bad | ❌ failed |" in text
    assert "```mermaid\nflowchart TD" in text
    assert "classDef failed" in text
    assert "### bad: last lines of stderr\n\n```\noops-line\n```" in text
    assert "::error title=wtflow%3A node bad failed::exit code 4\n" in result.stdout
    assert "::group::good (succeeded)\nfine\n::endgroup::\n" in result.stdout


def test_the_step_summary_shows_a_failed_nodes_stdout_and_what_nodes_add_to_it(project: Path) -> None:
    write(
        project / "report.yml",
        """
        name: report
        root:
          name: root
          children:
            - {name: cov, command: 'printf "## Coverage\\n\\n93%% of lines\\n" >> "$WTFLOW_STEP_SUMMARY"'}
            - {name: tests, command: 'echo FAILED tests/test_x.py::test_y; exit 1'}
        """,
    )
    summary = project / "summary.md"
    result = cli("run", "report.yml", env={"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)})
    assert result.exit_code == 1
    text = summary.read_text()
    assert "\n### cov\n\n## Coverage\n\n93% of lines\n" in text
    assert "### tests: last lines of stdout\n\n```\nFAILED tests/test_x.py::test_y\n```" in text
    assert "last lines of stderr" not in text  # it wrote nothing there


def test_the_state_directory_keeps_itself_out_of_version_control(project: Path) -> None:
    cli("run")
    assert (project / ".wtflow" / ".gitignore").read_text().splitlines()[-1] == "*"
