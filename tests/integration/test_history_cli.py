"""`wtflow runs show|logs` as a CI user types them: run ids, retried attempts, file artifacts, why nodes failed.

Run ids are resolved against SQLite files and PostgreSQL alike (runs recorded directly, with
chosen ids and start times); output is read back from real runs recorded in SQLite.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from wtflow.cli import main
from wtflow.db.history import open_history
from wtflow.db.tables import runs

# Three runs of workflow ci and one of docs, oldest first; two suffixes start alike (bc63).
OLDEST, OLDER, NEWER, NEWEST = (
    "20261129T010200000000Z-bc6362ac",
    "20261129T010300000000Z-bc6399ff",
    "20261129T010400000000Z-0a1b2c3d",
    "20261129T010500000000Z-77e0d1f2",
)
WORKFLOWS = {OLDEST: "ci", OLDER: "ci", NEWER: "ci", NEWEST: "docs"}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for variable in ("WTFLOW_DB_URL", "WTFLOW_ARTIFACTS_DIR", "WTFLOW_MAX_PARALLEL", "WTFLOW_IGNORE_FAILURE"):
        monkeypatch.delenv(variable, raising=False)
    return tmp_path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def history(request: pytest.FixtureRequest, project: Path) -> str:
    """A database URL holding the four runs above."""
    if request.param == "sqlite":
        url = f"sqlite:///{project / 'history.db'}"
    else:
        url = str(request.getfixturevalue("postgres_url"))
    engine = open_history(url)
    start = datetime(2026, 11, 29, 1, 2, tzinfo=UTC)
    rows = [
        {"id": run_id, "workflow": workflow, "status": "succeeded", "exit_code": 0, "host": "ci-1", "pid": 1}
        | {"started_at": start + timedelta(minutes=n), "finished_at": start + timedelta(minutes=n, seconds=5)}
        for n, (run_id, workflow) in enumerate(WORKFLOWS.items())
    ]
    try:
        with engine.begin() as connection:
            connection.execute(runs.insert(), rows)
    finally:
        engine.dispose()
    return url


def cli(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def shown_run(url: str, *args: str) -> str:
    """The id `wtflow runs show ARGS` shows."""
    result = cli("runs", "show", *args, "--db-url", url)
    assert result.exit_code == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("run       ")
    return first.split()[1]


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def run(project: Path, workflow: str) -> str:
    """Run ``workflow`` (YAML text) and return the run's id."""
    write(project / "wtflow.yml", workflow)
    cli("run", "--output", "quiet")
    return max((project / ".wtflow" / "artifacts").iterdir()).name


# -- run ids ----------------------------------------------------------------------------------


def test_a_run_is_named_by_its_whole_id(history: str) -> None:
    assert shown_run(history, OLDER) == OLDER


def test_a_run_is_named_by_a_unique_prefix_of_its_id(history: str) -> None:
    assert shown_run(history, "20261129T0104") == NEWER


def test_a_run_is_named_by_its_random_suffix(history: str) -> None:
    assert shown_run(history, "bc6362ac") == OLDEST


def test_a_run_is_named_by_a_unique_prefix_of_its_random_suffix(history: str) -> None:
    assert shown_run(history, "bc639") == OLDER


def test_a_run_id_may_be_typed_in_any_case(history: str) -> None:
    assert shown_run(history, "BC6362AC") == OLDEST


def test_latest_is_the_newest_run(history: str) -> None:
    assert shown_run(history, "latest") == NEWEST


def test_latest_tilde_n_is_the_nth_run_before_the_newest(history: str) -> None:
    assert [shown_run(history, f"latest~{n}") for n in range(4)] == [NEWEST, NEWER, OLDER, OLDEST]


def test_latest_tilde_alone_is_the_run_before_the_newest(history: str) -> None:
    """As git's ``HEAD~``."""
    assert shown_run(history, "latest~") == NEWER


def test_latest_with_workflow_counts_that_workflows_runs_only(history: str) -> None:
    assert shown_run(history, "latest", "--workflow", "ci") == NEWER
    assert shown_run(history, "latest~2", "--workflow", "ci") == OLDEST


def test_runs_show_without_a_run_id_shows_the_newest_run(history: str) -> None:
    assert shown_run(history) == NEWEST


def test_runs_logs_takes_latest(project: Path) -> None:
    run(project, "name: w\nroot: {name: hello, command: echo first}\n")
    run(project, "name: w\nroot: {name: hello, command: echo second}\n")
    assert cli("runs", "logs", "latest", "hello").stdout == "second\n"
    assert cli("runs", "logs", "latest~1", "hello").stdout == "first\n"


def test_an_ambiguous_run_id_exits_2_listing_the_candidates(history: str) -> None:
    result = cli("runs", "show", "bc63", "--db-url", history)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == f"Error: run id 'bc63' is ambiguous: {OLDER} (ci), {OLDEST} (ci)\n"


def test_an_unknown_run_id_exits_2(history: str) -> None:
    result = cli("runs", "show", "ffff", "--db-url", history)
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == "Error: no run 'ffff'; `wtflow runs list` shows the runs\n"


def test_a_run_of_another_workflow_is_not_found_with_workflow(history: str) -> None:
    result = cli("runs", "show", "77e0", "--workflow", "ci", "--db-url", history)
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == ("Error: no run '77e0' of workflow 'ci'; `wtflow runs list --workflow ci` shows the runs\n")


def test_latest_beyond_the_oldest_run_exits_2_saying_how_many_there_are(history: str) -> None:
    result = cli("runs", "show", "latest~3", "--workflow", "ci", "--db-url", history)
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == "Error: no run 'latest~3': there are only 3 runs of workflow 'ci'\n"


def test_latest_without_any_run_exits_2(project: Path) -> None:
    result = cli("runs", "show", "--db-url", f"sqlite:///{project / 'empty.db'}")
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == "Error: no run 'latest': there are no runs\n"


# -- runs logs --attempt ----------------------------------------------------------------------

# Fails twice, then succeeds: three attempts, each saying which it is on stdout and stderr.
FLAKY = """
name: f
root:
  name: flaky
  retries: 2
  command: >-
    n=$(($(cat tries 2>/dev/null || echo 0) + 1)); echo $n > tries;
    echo "out $n"; echo "err $n" >&2; test $n -ge 3
"""


def test_logs_attempt_prints_a_retried_attempts_stdout(project: Path) -> None:
    run_id = run(project, FLAKY)
    result = cli("runs", "logs", run_id, "flaky", "--attempt", "1")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "out 1\n", "")


def test_logs_attempt_with_stderr_prints_that_attempts_stderr(project: Path) -> None:
    run_id = run(project, FLAKY)
    result = cli("runs", "logs", run_id, "flaky", "--attempt", "2", "--stderr")
    assert (result.exit_code, result.stdout) == (0, "err 2\n")


def test_logs_last_attempt_is_the_nodes_own_output(project: Path) -> None:
    run_id = run(project, FLAKY)
    assert cli("runs", "logs", run_id, "flaky", "--attempt", "3").stdout == "out 3\n"
    assert cli("runs", "logs", run_id, "flaky").stdout == "out 3\n"


def test_logs_missing_attempt_exits_2_naming_the_attempts(project: Path) -> None:
    run_id = run(project, FLAKY)
    result = cli("runs", "logs", run_id, "flaky", "--attempt", "4")
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == f"Error: node 'flaky' of run {run_id} has no attempt 4; its attempts: 1, 2, 3\n"


def test_logs_removed_attempt_says_the_artifacts_may_have_been_removed(project: Path) -> None:
    run_id = run(project, FLAKY)
    (project / ".wtflow" / "artifacts" / run_id / "flaky" / "stdout.attempt-1.log").unlink()
    result = cli("runs", "logs", run_id, "flaky", "--attempt", "1")
    assert result.exit_code == 2
    assert result.stderr.endswith(
        "stdout.attempt-1.log: No such file or directory; the artifacts may have been removed\n"
    )


# -- runs logs --artifact ---------------------------------------------------------------------

BUILD = """
name: b
root:
  name: build
  command: mkdir -p dist/sub && printf 'wheel\\0bytes' > dist/w.whl && echo a > dist/sub/a.txt && echo b > dist/b.txt
  artifacts:
    - {name: wheel, path: dist/w.whl}
    - {name: texts, path: "dist/**/*.txt"}
"""


def test_logs_artifact_of_one_file_prints_its_bytes(project: Path) -> None:
    run_id = run(project, BUILD)
    result = cli("runs", "logs", run_id, "build", "--artifact", "wheel")
    assert (result.exit_code, result.stdout_bytes, result.stderr) == (0, b"wheel\0bytes", "")


def test_logs_artifact_of_several_files_lists_them_and_says_so_on_stderr(project: Path) -> None:
    run_id = run(project, BUILD)
    result = cli("runs", "logs", run_id, "build", "--artifact", "texts")
    assert result.exit_code == 0
    assert result.stdout == "dist/b.txt\ndist/sub/a.txt\n"
    assert result.stderr.startswith("artifact 'texts' holds 2 files, listed here; they are under ")


def test_logs_unknown_artifact_exits_2_listing_the_nodes_artifacts(project: Path) -> None:
    run_id = run(project, BUILD)
    result = cli("runs", "logs", run_id, "build", "--artifact", "whel")
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        f"Error: node 'build' of run {run_id} has no whel artifact (status succeeded); "
        "its artifacts: stderr, stdout, texts, wheel\n"
    )


def test_logs_removed_artifact_says_the_artifacts_may_have_been_removed(project: Path) -> None:
    run_id = run(project, BUILD)
    shutil.rmtree(project / ".wtflow" / "artifacts")
    result = cli("runs", "logs", run_id, "build", "--artifact", "wheel")
    assert result.exit_code == 2
    assert result.stderr.endswith("No such file or directory; the artifacts may have been removed\n")


def test_logs_artifact_cannot_be_combined_with_stderr_or_attempt(project: Path) -> None:
    run_id = run(project, BUILD)
    for extra in (["--stderr"], ["--attempt", "1"]):
        result = cli("runs", "logs", run_id, "build", "--artifact", "wheel", *extra)
        assert (result.exit_code, result.stdout) == (2, "")
        assert (
            result.stderr
            == "Error: --artifact shows a file artifact: it cannot be combined with --stderr or --attempt\n"
        )


# -- runs show: why a node failed -------------------------------------------------------------


def show(run_id: str) -> Result:
    result = cli("runs", "show", run_id)
    assert result.exit_code == 0, result.stderr
    return result


def test_show_prints_the_last_ten_lines_of_a_failed_nodes_stderr(project: Path) -> None:
    run_id = run(project, "name: s\nroot: {name: t, command: 'echo out; seq 1 12 >&2; exit 4'}\n")
    tail = show(run_id).stdout.split("\n\n")[-1]
    assert tail.splitlines() == ["t (failed, exit 4), the last 10 lines of its stderr:"] + [
        f"  {n}" for n in range(3, 13)
    ]


def test_show_prints_a_failed_nodes_stdout_when_its_stderr_is_empty(project: Path) -> None:
    run_id = run(project, "name: s\nroot: {name: t, command: 'echo one; echo two; exit 4'}\n")
    tail = show(run_id).stdout.split("\n\n")[-1]
    assert tail == "t (failed, exit 4), the last 2 lines of its stdout:\n  one\n  two\n"


def test_show_prints_a_failed_nodes_error_text_instead_of_its_output(project: Path) -> None:
    run_id = run(project, "name: s\nroot: {name: t, command: [no-such-program-here]}\n")
    tail = show(run_id).stdout.split("\n\n")[-1]
    assert tail.startswith("t: cannot start 'no-such-program-here'")
    assert "its stderr" not in tail


def test_show_prints_a_timed_out_nodes_error_text(project: Path) -> None:
    run_id = run(project, "name: s\nroot: {name: t, command: 'echo waiting >&2; sleep 30', timeout: 0.5}\n")
    assert show(run_id).stdout.split("\n\n")[-1] == "t: timed out after 0.5s\n"


def test_show_says_output_removed_when_a_failed_nodes_files_are_gone(project: Path) -> None:
    run_id = run(project, "name: s\nroot: {name: t, command: 'echo bad >&2; exit 4'}\n")
    shutil.rmtree(project / ".wtflow" / "artifacts")
    assert show(run_id).stdout.split("\n\n")[-1] == "t (failed, exit 4): (output removed)\n"


def test_show_says_no_output_when_a_failed_node_printed_nothing(project: Path) -> None:
    run_id = run(project, "name: s\nroot: {name: t, command: 'exit 4'}\n")
    assert show(run_id).stdout.split("\n\n")[-1] == "t (failed, exit 4): (no output)\n"


def test_show_prints_no_output_section_for_succeeded_nodes(project: Path) -> None:
    run_id = run(project, "name: s\nroot: {name: t, command: 'echo fine >&2'}\n")
    assert "its stderr" not in show(run_id).stdout


def test_show_output_of_a_failed_node_is_masked(project: Path) -> None:
    write(
        project / "wtflow.yml", "name: s\nsecrets: [TOKEN]\nroot: {name: t, command: 'echo \"$TOKEN\" >&2; exit 1'}\n"
    )
    cli("run", "--output", "quiet", env={"TOKEN": "tok-12345"})
    stdout = show("latest").stdout
    assert "tok-12345" not in stdout
    assert stdout.endswith("t (failed, exit 1), the last 1 line of its stderr:\n  ***\n")


# -- the PostgreSQL cases above cannot skip when PostgreSQL is required -----------------------

CONFTEST = Path(__file__).parents[1] / "conftest.py"


def run_postgres_case_without_its_driver(tmp_path: Path, *, required: bool) -> subprocess.CompletedProcess[str]:
    """A test using ``postgres_url`` from this suite's conftest, in a Python where psycopg cannot be imported."""
    (tmp_path / "conftest.py").write_text(
        "import importlib.util, sys\n"
        "sys.modules['psycopg'] = None  # `import psycopg` raises ImportError\n"
        f"spec = importlib.util.spec_from_file_location('suite_conftest', {str(CONFTEST)!r})\n"
        "suite = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(suite)\n"
        "postgres_url = suite.postgres_url\n"
    )
    (tmp_path / "test_case.py").write_text("def test_case(postgres_url):\n    pass\n")
    env = {key: value for key, value in os.environ.items() if key != "WTFLOW_REQUIRE_POSTGRES"}
    if required:
        env["WTFLOW_REQUIRE_POSTGRES"] = "1"
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", "-c", os.devnull, str(tmp_path)]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, check=False)


def test_a_missing_postgres_driver_fails_when_postgres_is_required(tmp_path: Path) -> None:
    result = run_postgres_case_without_its_driver(tmp_path, required=True)
    assert result.returncode == 1, result.stdout
    assert "PostgreSQL driver missing" in result.stdout
    assert "WTFLOW_REQUIRE_POSTGRES=1 makes this a failure" in result.stdout


def test_a_missing_postgres_driver_skips_when_postgres_is_not_required(tmp_path: Path) -> None:
    result = run_postgres_case_without_its_driver(tmp_path, required=False)
    assert result.returncode == 0, result.stdout
    assert "SKIPPED" in result.stdout
    assert "PostgreSQL driver missing" in result.stdout
