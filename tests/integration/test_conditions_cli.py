"""``if:`` conditions, ``needs.<node>.result``, and ``max_fail``: what runs after a failure, a skip or a signal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import cli, wait_for
from tests.integration.conftest import Runner
from tests.integration.workflow_files import (
    assert_clean_exit,
    run,
    run_file,
    statuses,
    stdout_of,
    write,
)
from wtflow import Command, Node, NodeStatus

AFTER_FAILURE = """
name: c
nodes:
  - {name: bad, command: "exit 1"}
  - {name: plain, needs: bad, command: touch plain-ran}
  - {name: always, needs: bad, if: always(), command: touch always-ran}
  - {name: on-failure, needs: bad, if: "${{ failure() }}", command: touch failure-ran}
  - {name: after-plain, needs: plain, if: failure(), command: touch through-skipped-ran}
"""


@pytest.fixture
def after_failure(project: Path) -> Path:
    write(project / "wtflow.yml", AFTER_FAILURE)
    return project


def test_without_if_a_node_waiting_for_a_failed_node_is_skipped(after_failure: Path) -> None:
    assert_clean_exit(run(), 1)
    assert statuses(after_failure)["plain"] == "skipped"
    assert not (after_failure / "plain-ran").exists()


def test_if_always_runs_after_a_failure(after_failure: Path) -> None:
    assert_clean_exit(run(), 1)
    assert statuses(after_failure)["always"] == "succeeded"
    assert (after_failure / "always-ran").exists()


def test_if_failure_runs_when_a_node_it_waits_for_failed(after_failure: Path) -> None:
    assert_clean_exit(run(), 1)
    assert statuses(after_failure)["on-failure"] == "succeeded"
    assert (after_failure / "failure-ran").exists()


def test_failure_is_seen_through_a_node_skipped_for_it(after_failure: Path) -> None:
    assert_clean_exit(run(), 1)
    assert (after_failure / "through-skipped-ran").exists()


STOPPED = """
name: c
nodes:
  - {name: slow, command: "touch slow-started; sh wait.sh never"}
  - {name: bad, command: "sh wait.sh slow-started; exit 1"}
  - {name: on-cancel, needs: slow, if: cancelled(), command: touch cancel-ran}
  - {name: later, needs: slow, command: touch later-ran}
"""


@pytest.fixture
def stopped(project: Path) -> dict[str, str]:
    """STOPPED, run (bad's failure stops it while slow runs): each node's status."""
    run_file(STOPPED, "--kill-grace", "5", exit_code=1)
    return statuses(project)


def test_if_cancelled_runs_once_a_failure_stopped_the_run(project: Path, stopped: dict[str, str]) -> None:
    assert (stopped["slow"], stopped["on-cancel"]) == ("cancelled", "succeeded")
    assert (project / "cancel-ran").exists()


@pytest.mark.parametrize("condition", ["failure()", "cancelled()"], ids=["failure", "cancelled"])
def test_if_failure_or_cancelled_is_skipped_when_everything_it_waits_for_succeeded(
    project: Path, condition: str
) -> None:
    run_file(
        f"""
        name: c
        nodes:
          - {{name: good, command: "true"}}
          - {{name: guarded, needs: good, if: {condition}, command: touch guarded-ran}}
        """,
        exit_code=0,
    )
    assert statuses(project)["guarded"] == "skipped"
    assert not (project / "guarded-ran").exists()


def test_a_false_condition_skips_the_node_and_the_run_succeeds(project: Path) -> None:
    run_file(
        """
        name: c
        vars: {DEPLOY: "no"}
        nodes:
          - {name: build, command: "true"}
          - {name: deploy, needs: build, if: "vars.DEPLOY == 'yes'", command: touch deployed}
        """,
        exit_code=0,
    )
    assert statuses(project) == {"build": "succeeded", "deploy": "skipped", "c": "succeeded"}
    assert not (project / "deployed").exists()


def test_nodes_waiting_for_a_skipped_node_are_skipped_too(project: Path) -> None:
    run_file(
        """
        name: c
        nodes:
          - {name: skipper, if: "false", command: touch off-ran}
          - {name: next, needs: skipper, command: touch next-ran}
          - {name: last, needs: next, command: touch last-ran}
        """,
        exit_code=0,
    )
    found = statuses(project)
    assert (found["skipper"], found["next"], found["last"]) == ("skipped", "skipped", "skipped")
    assert list(project.glob("*-ran")) == []


def test_a_node_waiting_for_a_skipped_node_runs_when_its_own_condition_says_so(project: Path) -> None:
    run_file(
        """
        name: c
        nodes:
          - {name: skipper, if: "false", command: touch off-ran}
          - name: fallback
            needs: skipper
            if: "always() && needs.skipper.result == 'skipped'"
            command: touch fallback-ran
        """,
        exit_code=0,
    )
    assert statuses(project)["fallback"] == "succeeded"


def test_a_condition_in_braces_reads_a_var_given_on_the_command_line(project: Path) -> None:
    run_file(
        """
        name: c
        vars: {RUN: "no"}
        nodes:
          - {name: maybe, if: "${{ vars.RUN == 'yes' }}", command: touch maybe-ran}
        """,
        "--var",
        "RUN=yes",
        exit_code=0,
    )
    assert (project / "maybe-ran").exists()


def test_a_false_condition_on_a_group_skips_everything_under_it(project: Path) -> None:
    run_file(
        """
        name: c
        root:
          name: root
          parallel: true
          children:
            - name: docs
              if: "false"
              children:
                - {name: build-docs, command: touch docs-ran}
            - {name: tests, command: touch tests-ran}
        """,
        exit_code=0,
    )
    found = statuses(project)
    assert (found["docs"], found["build-docs"], found["tests"]) == ("skipped", "skipped", "succeeded")
    assert not (project / "docs-ran").exists()


def test_needs_result_tells_how_each_node_ended(project: Path) -> None:
    run_file(
        """
        name: c
        nodes:
          - {name: ok, command: "true"}
          - {name: slow, command: "touch slow-started; sh wait.sh never"}
          - {name: bad, needs: ok, command: "sh wait.sh slow-started; exit 1"}
          - {name: skipper, if: "false", command: "true"}
          - name: report
            needs: [ok, bad, slow, skipper]
            if: always()
            command: >-
              echo ${{ needs.ok.result }} ${{ needs.bad.result }} ${{ needs.slow.result }} ${{ needs.skipper.result }}
        """,
        "--kill-grace",
        "5",
        exit_code=1,
    )
    assert stdout_of(project, "report") == "success failure cancelled skipped\n"


def test_dry_run_shows_each_nodes_condition(after_failure: Path) -> None:
    result = cli("run", "--dry-run")
    assert_clean_exit(result, 0)
    assert "  always: touch always-ran  (if: always())\n" in result.stdout


# -- Ctrl-C -----------------------------------------------------------------------------------------


# slow runs until the signal; the other nodes wait for it.
INTERRUPTED = """
name: sig
nodes:
  - {name: slow, command: "touch started; exec sleep 30"}
  - {name: cleanup, needs: slow, if: always(), command: "echo cleaned > cleaned"}
  - {name: on-cancel, needs: slow, if: cancelled(), command: "touch cancel-ran"}
  - {name: normal, needs: slow, command: touch normal-ran}
"""


@pytest.fixture
def interrupted(project: Path) -> tuple[int, str]:
    """INTERRUPTED run by ``wtflow run`` as a process, SIGINT once slow runs: its exit code and stderr."""
    write(project / "wtflow.yml", INTERRUPTED)
    process = subprocess.Popen(
        [sys.executable, "-m", "wtflow", "run", "--db-url", "", "--kill-grace", "5", "--log-format", "json"],
        cwd=project,
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: (project / "started").exists() or process.poll() is not None)
        assert process.poll() is None, process.communicate()[1].decode()  # it ended before its first node ran
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, stderr.decode()


def run_json_statuses(project: Path) -> dict[str, str]:
    record = json.loads(next((project / ".wtflow" / "artifacts").glob("*/run.json")).read_text())
    return {name: node["status"] for name, node in record["nodes"].items()}


def test_ctrl_c_still_runs_always_nodes_and_exits_130(project: Path, interrupted: tuple[int, str]) -> None:
    code, stderr = interrupted
    assert code == 130, stderr
    assert "Traceback" not in stderr
    assert (project / "cleaned").read_text() == "cleaned\n"
    assert not (project / "normal-ran").exists()
    found = run_json_statuses(project)
    assert (found["slow"], found["cleanup"], found["normal"]) == ("cancelled", "succeeded", "skipped")


def test_ctrl_c_runs_nodes_that_ask_for_cancelled(project: Path, interrupted: tuple[int, str]) -> None:
    code, stderr = interrupted
    assert code == 130, stderr
    assert (project / "cancel-ran").exists()


# -- max_fail ---------------------------------------------------------------------------------------

# Each node after the first runs unless the run was stopped, and fails: how many run shows max_fail.
CHAIN = """
name: chain
{max_fail}nodes:
  - {{name: f1, command: "touch f1; exit 1"}}
  - {{name: f2, needs: f1, if: "${{{{ !cancelled() }}}}", command: "touch f2; exit 1"}}
  - {{name: f3, needs: f2, if: "${{{{ !cancelled() }}}}", command: "touch f3; exit 1"}}
  - {{name: f4, needs: f3, if: "${{{{ !cancelled() }}}}", command: "touch f4"}}
"""


def chain(project: Path, max_fail: int | None = None) -> None:
    key = "" if max_fail is None else f"max_fail: {max_fail}\n"
    (project / "wtflow.yml").write_text(CHAIN.format(max_fail=key))


def ran(project: Path) -> list[str]:
    return sorted(path.name for path in project.glob("f[0-9]"))


def test_the_first_failure_stops_the_run_by_default(project: Path) -> None:
    chain(project)
    assert_clean_exit(run(), 1)
    assert ran(project) == ["f1"]
    assert statuses(project)["f2"] == "skipped"


@pytest.mark.parametrize("source", ["file", "flag", "variable", "ini"])
def test_max_fail_2_lets_two_failures_pass_and_stops_at_the_third(project: Path, source: str) -> None:
    chain(project, 2 if source == "file" else None)
    (project / "wtflow.ini").write_text("[run]\nmax_fail = 2\n" if source == "ini" else "[run]\n")
    args = {"flag": ["--max-fail", "2"], "ini": ["--config", "wtflow.ini"]}.get(source, [])
    result = run(*args, env={"WTFLOW_MAX_FAIL": "2"} if source == "variable" else None)
    assert_clean_exit(result, 1)
    assert ran(project) == ["f1", "f2", "f3"]
    assert statuses(project)["f4"] == "skipped"


def test_the_max_fail_flag_overrides_the_files_max_fail(project: Path) -> None:
    chain(project, 0)
    assert_clean_exit(run("--max-fail", "1"), 1)
    assert ran(project) == ["f1", "f2"]


def test_stopping_for_failures_cancels_running_nodes_and_skips_unstarted_ones(
    project: Path, stopped: dict[str, str]
) -> None:
    assert (stopped["bad"], stopped["slow"], stopped["later"]) == ("failed", "cancelled", "skipped")
    assert not (project / "later-ran").exists()


PARALLEL_FAILURES = """
name: par
nodes:
  - {name: slow, command: "touch slow-started; sh wait.sh release && echo finished"}
  - {name: bad1, command: "sh wait.sh slow-started; exit 1"}
  - {name: bad2, command: "sh wait.sh slow-started; exit 1"}
  - {name: release, needs: [bad1, bad2], if: "${{ !cancelled() }}", command: touch release}
"""


def test_running_nodes_go_on_while_failures_stay_within_max_fail(project: Path) -> None:
    run_file(PARALLEL_FAILURES, "--max-fail", "2", "--kill-grace", "5", exit_code=1)
    found = statuses(project)
    assert (found["bad1"], found["bad2"], found["slow"]) == ("failed", "failed", "succeeded")
    assert stdout_of(project, "slow") == "finished\n"


def test_one_failure_more_than_max_fail_cancels_running_nodes(project: Path) -> None:
    run_file(PARALLEL_FAILURES, "--max-fail", "1", "--kill-grace", "5", exit_code=1)
    found = statuses(project)
    assert (found["slow"], found["release"]) == ("cancelled", "skipped")


# -- the Python API ---------------------------------------------------------------------------------


def test_a_condition_and_max_fail_through_the_python_api(run_workflow: Runner) -> None:
    def failing(name: str) -> Node:
        return Node(name, executable=Command("exit 1"), condition="${{ !cancelled() }}")

    root = Node(
        "root",
        children=[
            Node("f1", executable=Command("exit 1")),
            failing("f2"),
            failing("f3"),
            Node("cleanup", executable=Command("echo cleanup"), condition="always()"),
        ],
    )
    engine = run_workflow(root, max_fail=1)
    assert engine.result is not None
    found = {name: result.status for name, result in engine.result.nodes.items()}
    assert [found[name] for name in ("f1", "f2", "f3", "cleanup")] == [
        NodeStatus.FAILED,
        NodeStatus.FAILED,
        NodeStatus.SKIPPED,
        NodeStatus.SUCCEEDED,
    ]
    assert engine.result.exit_code == 1
