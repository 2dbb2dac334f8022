"""``matrix:``: one node fanned out over combinations of values, as GitHub Actions' ``strategy.matrix``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import cli
from tests.integration.conftest import Runner
from tests.integration.workflow_files import (
    assert_clean_exit,
    run,
    run_dir,
    run_file,
    statuses,
    stdout_of,
    write,
)
from wtflow import Command, Node, NodeStatus
from wtflow.matrix import Matrix

BUILD = """
name: m
nodes:
  - name: build
    command: echo "${{ matrix.os }}/${{ matrix.py }}"
    matrix:
      os: [linux, mac]
      py: ["3.11", "3.12"]
      exclude: [{os: mac, py: "3.11"}]
  - name: after
    command: echo after
    needs: [build]
"""
EXPANSIONS = ["build (linux, 3.11)", "build (linux, 3.12)", "build (mac, 3.12)"]


@pytest.fixture
def build(project: Path) -> Path:
    return write(project / "wtflow.yml", BUILD)


def test_each_combination_runs_once_with_its_values(build: Path) -> None:
    result = run()
    assert_clean_exit(result, 0)
    lines = result.stdout.splitlines()
    assert sorted(lines[:3]) == ["linux/3.11", "linux/3.12", "mac/3.12"]
    assert lines[3] == "after"


def test_expansions_are_named_for_their_values(build: Path) -> None:
    assert_clean_exit(run(), 0)
    assert statuses(build.parent) == {
        **dict.fromkeys(EXPANSIONS, "succeeded"),
        "build": "succeeded",
        "after": "succeeded",
        "m": "succeeded",
    }
    assert stdout_of(build.parent, "build (mac, 3.12)") == "mac/3.12\n"


def test_include_extends_matching_combinations_and_adds_unmatched_ones(project: Path) -> None:
    run_file(
        """
        name: inc
        nodes:
          - name: t
            command: echo "${{ matrix.os }} [${{ matrix.extra }}]"
            matrix:
              os: [linux, mac]
              include: [{os: linux, extra: x}, {os: win}]
        """,
        exit_code=0,
    )
    names = {name for name in statuses(project) if name.startswith("t (")}
    assert names == {"t (linux, x)", "t (mac)", "t (win)"}
    assert stdout_of(project, "t (linux, x)") == "linux [x]\n"
    assert stdout_of(project, "t (win)") == "win []\n"


def test_needs_on_a_matrix_waits_for_every_expansion(project: Path) -> None:
    run_file(
        """
        name: wait
        nodes:
          - name: shard
            command: "touch done-${{ matrix.n }}"
            matrix: {n: [1, 2, 3, 4]}
          - name: merge
            command: "ls done-* | tr '\\n' ' '"
            needs: shard
        """,
        exit_code=0,
    )
    assert stdout_of(project, "merge") == "done-1 done-2 done-3 done-4 "


def test_a_condition_on_matrix_values_skips_only_the_expansions_it_rules_out(project: Path) -> None:
    result = run_file(
        """
        name: cond
        nodes:
          - name: t
            command: echo "${{ matrix.os }}"
            matrix: {os: [linux, mac, win]}
            if: matrix.os != 'mac'
        """,
        exit_code=0,
    )
    found = statuses(project)
    assert (found["t (linux)"], found["t (mac)"], found["t (win)"]) == ("succeeded", "skipped", "succeeded")
    assert sorted(result.stdout.splitlines()) == ["linux", "win"]


# -- --target -------------------------------------------------------------------------------------


def test_target_naming_the_matrix_runs_every_expansion(build: Path) -> None:
    result = run("--target", "build")
    assert_clean_exit(result, 0)
    assert set(statuses(build.parent)) == {"m", "build", *EXPANSIONS}


def test_target_naming_one_expansion_runs_only_it(build: Path) -> None:
    result = run("--target", "build (linux, 3.12)")
    assert_clean_exit(result, 0)
    assert result.stdout == "linux/3.12\n"


# -- failures -------------------------------------------------------------------------------------


# t (1) fails once t (2) has started; t (2) waits for a file ``go`` that no node here makes.
FIRST_FAILS = """
name: ff
nodes:
  - name: t
    matrix: {n: [1, 2]}
    command: |
      if [ "${{ matrix.n }}" = 1 ]; then sh wait.sh started-2; exit 1; fi
      touch started-2; sh wait.sh go && echo finished
"""


def test_a_failing_expansion_cancels_the_others_by_default(project: Path) -> None:
    """fail_fast is on unless the node turns it off."""
    run_file(FIRST_FAILS, "--kill-grace", "5", exit_code=1)
    found = statuses(project)
    assert (found["t (1)"], found["t (2)"]) == ("failed", "cancelled")


def test_fail_fast_false_lets_the_other_expansions_finish(project: Path) -> None:
    """``t (2)`` is still running when ``t (1)`` fails; it finishes once a node started after that failure says so."""
    # t turns fail_fast off; witness makes ``go`` once t (1) has failed.
    witnessed = """\
    fail_fast: false
  - {name: witness, needs: "t (1)", if: always(), command: touch go}
"""
    run_file(FIRST_FAILS + witnessed, "--kill-grace", "5", exit_code=1)
    found = statuses(project)
    assert (found["t (1)"], found["t (2)"], found["witness"]) == ("failed", "succeeded", "succeeded")
    assert stdout_of(project, "t (2)") == "finished\n"


def test_max_parallel_bounds_the_expansions_running_at_once(project: Path) -> None:
    """Each expansion logs its start and end; the first two wait for each other, then briefly for more."""
    run_file(
        """
        name: bounded
        nodes:
          - name: t
            matrix: {n: [1, 2, 3, 4]}
            max_parallel: 2
            command: |
              echo start >> log
              i=0; until [ "$(grep -c start log)" -ge 2 ] || [ $i -ge 1500 ]; do sleep 0.02; i=$((i+1)); done
              i=0; until [ "$(grep -c start log)" -ge 4 ] || [ $i -ge 15 ]; do sleep 0.02; i=$((i+1)); done
              echo end >> log
        """,
        exit_code=0,
    )
    running = most = 0
    for line in (project / "log").read_text().splitlines():
        running += 1 if line == "start" else -1
        most = max(most, running)
    assert most == 2


def square(side: int) -> str:
    """A matrix (in YAML's flow style) of ``a`` and ``b`` each over ``side`` values: side² combinations."""
    values = ", ".join(str(n) for n in range(side))
    return f"{{a: [{values}], b: [{values}]}}"


def test_more_than_256_combinations_is_refused_naming_the_node_and_the_count(project: Path) -> None:
    write(
        project / "wtflow.yml",
        f"""
        name: big
        nodes:
          - name: first
            command: touch ran
          - name: huge
            command: echo ${{{{ matrix.a }}}}
            matrix: {square(17)}
        """,
    )
    result = cli("run", "wtflow.yml", "--db-url", "", "--log-format", "console")
    assert_clean_exit(result, 2)
    assert result.stderr.startswith("wtflow.yml:7:"), result.stderr
    assert "289" in result.stderr
    assert "huge" in result.stderr
    assert not (project / "ran").exists()


def test_exactly_256_combinations_are_accepted(project: Path) -> None:
    write(project / "wtflow.yml", f'name: big\nnodes:\n  - {{name: t, command: "true", matrix: {square(16)}}}\n')
    result = cli("validate", "wtflow.yml")
    assert_clean_exit(result, 0)
    assert result.stdout == "wtflow.yml: ok: workflow 'big', 257 nodes\n"


# -- where expansions show ------------------------------------------------------------------------


def test_list_shows_the_expansions_under_the_matrix(build: Path) -> None:
    result = cli("list")
    assert_clean_exit(result, 0)
    assert result.stdout.splitlines()[1:] == [
        "  build  [group, parallel]",
        "    build (linux, 3.11)  [command]",
        "    build (linux, 3.12)  [command]",
        "    build (mac, 3.12)  [command]",
        "  after  [command, needs build]",
    ]


def test_graph_draws_each_expansion(build: Path) -> None:
    result = cli("graph", "--format", "dot")
    assert_clean_exit(result, 0)
    for name in EXPANSIONS:
        assert f'"build" -> "{name}";' in result.stdout


def test_dry_run_plans_the_expansions_together(build: Path) -> None:
    result = cli("run", "--dry-run")
    assert_clean_exit(result, 0)
    assert result.stdout.splitlines()[:3] == [
        "workflow 'm': 5 nodes",
        f"    1. {', '.join(EXPANSIONS)}  (in parallel)",
        "    2. after",
    ]
    assert not (build.parent / ".wtflow").exists()


def test_the_database_records_each_expansion(build: Path) -> None:
    url = f"sqlite:///{build.parent / 'runs.db'}"
    assert_clean_exit(cli("run", "--db-url", url), 0)
    shown = cli("runs", "show", "--db-url", url)
    assert_clean_exit(shown, 0)
    lines = shown.stdout.splitlines()
    for name in EXPANSIONS:
        row = next(line for line in lines if line.startswith(f"m/build/{name} "))
        assert row.removeprefix(f"m/build/{name}").split()[:2] == ["succeeded", "0"]


def test_the_step_summary_lists_each_expansion(build: Path) -> None:
    summary = build.parent / "summary.md"
    result = cli("run", "--db-url", "", env={"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)})
    assert_clean_exit(result, 0)
    text = summary.read_text()
    for name in EXPANSIONS:
        assert f"| {name} | ✅ succeeded |" in text


def test_the_run_directory_keeps_each_expansions_output(build: Path) -> None:
    assert_clean_exit(run(), 0)
    assert sorted(path.read_text() for path in run_dir(build.parent).glob("*/stdout.log")) == [
        "after\n",
        "linux/3.11\n",
        "linux/3.12\n",
        "mac/3.12\n",
    ]


# -- the Python API ---------------------------------------------------------------------------------


def test_a_node_with_a_matrix_fans_out_through_the_python_api(run_workflow: Runner) -> None:
    node = Node(
        "t",
        executable=Command("echo ${{ matrix.n }}-${{ matrix.s }}"),
        matrix=Matrix({"n": [1, 2], "s": ["a"]}, include=[{"n": 3, "s": "b"}]),
    )
    engine = run_workflow(Node("root", children=[node]))
    assert engine.result is not None
    expansions = {name: result for name, result in engine.result.nodes.items() if name.startswith("t (")}
    assert {name: result.status for name, result in expansions.items()} == dict.fromkeys(
        ["t (1, a)", "t (2, a)", "t (3, b)"], NodeStatus.SUCCEEDED
    )
    assert expansions["t (3, b)"].artifacts["stdout"].data == b"3-b\n"
