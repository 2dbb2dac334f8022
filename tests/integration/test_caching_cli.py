"""Cached nodes through ``wtflow run`` on workflow files: keys, hits, ``--force``, faults and the cache's commands.

A node with ``sources`` (or ``cache: true``) is skipped when the cache holds an entry of its key.
Commands here append to a marker file, so a test sees whether a process started: a hit
leaves the marker as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import cli
from tests.integration.workflow_files import (
    WAIT_SCRIPT,
    assert_clean_exit,
    clear_settings,
    run,
    run_record,
    statuses,
    stdout_of,
    write,
)
from wtflow.cache import CacheStore, Entry

CACHE = Path(".wtflow/cache")

BUILD = """
name: cache
nodes:
  - name: build
    sources: ["src/**"]
    outputs: [dist]
    command: |
      echo ran >> build.marker
      mkdir -p dist && cat src/*.txt > dist/app.txt
      echo "built from $(cat src/a.txt)"
      echo "compiler warning" >&2
      echo "version=1.2" >> "$WTFLOW_OUTPUT"
"""


@pytest.fixture
def project(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    clear_settings(monkeypatch)
    monkeypatch.delenv("WTFLOW_CACHE_DIR", raising=False)
    return workdir


@pytest.fixture
def build(project: Path) -> Path:
    """The BUILD workflow with one source file, ``src/a.txt``."""
    write(project / "wtflow.yml", BUILD)
    write(project / "src" / "a.txt", "alpha\n")
    return project


def times_ran(project: Path, node: str = "build") -> int:
    """How many times ``node``'s command started: the lines of its marker file."""
    marker = project / f"{node}.marker"
    return len(marker.read_text().splitlines()) if marker.exists() else 0


def entries(root: Path = CACHE) -> list[Entry]:
    return CacheStore(root).entries()


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


# --- a hit ---------------------------------------------------------------------------------------


def test_a_node_with_sources_runs_the_first_time_and_fills_the_cache(build: Path) -> None:
    result = run()
    assert_clean_exit(result, 0)
    assert statuses(build)["build"] == "succeeded"
    assert times_ran(build) == 1
    assert [entry.node for entry in entries()] == ["build"]


def test_a_second_run_with_nothing_changed_is_cached_and_starts_no_process(build: Path) -> None:
    assert_clean_exit(run(), 0)
    result = run()
    assert_clean_exit(result, 0)
    assert statuses(build)["build"] == "cached"
    assert times_ran(build) == 1


def test_a_hit_replays_the_earlier_stdout_and_stderr_on_the_console(build: Path) -> None:
    first = run()
    result = run()
    assert_clean_exit(result, 0)
    assert result.stdout == first.stdout == "built from alpha\n"
    assert "compiler warning\n" in result.stderr


def test_a_hit_says_so_in_the_console_log(build: Path) -> None:
    run()
    result = run()
    assert "build cached: its earlier output follows" in result.stderr
    assert "build started" not in result.stderr
    assert "build cached in " in result.stderr


def test_json_logs_mark_the_start_of_a_hit_as_replaying_cached(build: Path) -> None:
    run()
    result = cli("run", "--db-url", "", "--log-format", "json")
    assert_clean_exit(result, 0)
    started = [
        line for line in json_lines(result.stderr) if line["event"] == "node_started" and line["node"] == "build"
    ]
    assert [line.get("replaying") for line in started] == ["cached"]


def test_json_logs_say_which_entry_a_hit_came_from_and_the_time_it_saved(build: Path) -> None:
    run()
    result = cli("run", "--db-url", "", "--log-format", "json")
    assert_clean_exit(result, 0)
    [entry] = entries()
    [finished] = [
        line for line in json_lines(result.stderr) if line["event"] == "node_finished" and line["node"] == "build"
    ]
    assert (finished["status"], finished["reused_from"]) == ("cached", entry.key)
    assert finished["saved"] == round(entry.duration, 3)


def test_json_log_output_lines_of_a_hit_are_marked_replayed(build: Path) -> None:
    run()
    result = cli("run", "--db-url", "", "--log-format", "json")
    assert_clean_exit(result, 0)
    output = [line for line in json_lines(result.stderr) if line["event"] == "output" and line["node"] == "build"]
    assert [(line["stream"], line["line"]) for line in output] == [
        ("stdout", "built from alpha"),
        ("stderr", "compiler warning"),
    ]
    assert [line.get("replayed") for line in output] == [True, True]


def test_a_hit_keeps_the_replayed_output_as_this_runs_artifacts(build: Path) -> None:
    run()
    run()
    node = run_record(build)["nodes"]["build"]
    assert node["status"] == "cached"
    assert stdout_of(build, "build") == "built from alpha\n"
    assert Path(node["artifacts"]["stderr"]["path"]).read_text() == "compiler warning\n"


QUIET = "name: quiet\nnodes:\n  - {name: q, sources: [src/*], command: 'echo ran >> q.marker'}\n"


@pytest.mark.parametrize("artifacts_dir", [".wtflow/artifacts", "/dev/shm"], ids=["beside-the-cache", "elsewhere"])
def test_a_hit_of_a_node_that_printed_nothing_keeps_empty_streams_as_this_runs_artifacts(
    project: Path, artifacts_dir: str
) -> None:
    """Another file system than the cache's (tmpfs under /dev/shm) takes copies: no link crosses them."""
    if not Path(artifacts_dir).is_absolute():
        artifacts_dir = str(project / artifacts_dir)
    elif not Path(artifacts_dir).is_dir() or Path(artifacts_dir).stat().st_dev == project.stat().st_dev:
        pytest.skip(f"{artifacts_dir} is not another file system here")
    write(project / "wtflow.yml", QUIET)
    write(project / "src" / "a.txt", "alpha\n")
    artifacts = Path(artifacts_dir) / f"wtflow-test-{project.name}"
    assert_clean_exit(run("--artifacts-dir", str(artifacts)), 0)
    try:
        assert_clean_exit(run("--artifacts-dir", str(artifacts)), 0)
        (_first, second) = sorted(artifacts.iterdir())
        record = json.loads((second / "run.json").read_text())["nodes"]["q"]
        assert (record["status"], times_ran(project, "q")) == ("cached", 1)
        (entry,) = entries()
        for stream, cached in (("stdout", entry.stdout), ("stderr", entry.stderr)):
            assert record["artifacts"][stream]["size"] == 0
            kept = second / "q" / f"{stream}.log"
            assert kept.read_bytes() == b""
            # Beside the cache, the run's file is the cache's own (a link: no new file made).
            assert kept.samefile(cached) == (kept.stat().st_dev == cached.stat().st_dev)
    finally:
        shutil.rmtree(artifacts, ignore_errors=True)


LOUD = """
name: loud
nodes:
  - name: build
    sources: [src/*]
    command: python3 -c "import sys; sys.stdout.write('x' * 100000); sys.stderr.write('e' * 100000)"
"""


def test_a_hit_replays_its_large_streams_though_another_run_prunes_the_cache_before_the_replay(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wtflow import reuse
    from wtflow.scheduler import Scheduler

    write(project / "wtflow.yml", LOUD)
    write(project / "src" / "a.txt", "alpha\n")
    assert_clean_exit(run(), 0)
    monkeypatch.setattr(reuse, "SMALL", 1000)  # streams not read with the check, wherever it runs
    take = Scheduler._take

    async def pruned_first(self: Scheduler, *args: Any) -> Any:
        assert CacheStore(CACHE).prune(max_size=0)[0] == 1  # another run's prune, after this run's check
        return await take(self, *args)

    monkeypatch.setattr(Scheduler, "_take", pruned_first)
    assert_clean_exit(run(), 0)
    assert statuses(project)["build"] == "cached"
    assert stdout_of(project, "build") == "x" * 100000


def test_a_hit_gives_later_nodes_the_outputs_of_the_run_that_filled_the_cache(project: Path) -> None:
    write(
        project / "wtflow.yml",
        BUILD + '  - {name: use, needs: build, command: "echo v${{ needs.build.outputs.version }}"}\n',
    )
    write(project / "src" / "a.txt", "alpha\n")
    run()
    result = run()
    assert_clean_exit(result, 0)
    assert statuses(project) == {"cache": "succeeded", "build": "cached", "use": "succeeded"}
    assert result.stdout.endswith("v1.2\n")
    assert run_record(project)["nodes"]["build"]["outputs"] == {"version": "1.2"}


def test_a_hit_counts_as_a_success_for_conditions_and_the_exit_code(project: Path) -> None:
    write(
        project / "wtflow.yml",
        BUILD
        + """
  - {name: on-success, needs: build, if: success(), command: echo ok}
  - {name: on-failure, needs: build, if: failure(), command: echo bad}
  - {name: after, needs: build, command: 'echo "${{ needs.build.result }}"'}
""",
    )
    write(project / "src" / "a.txt", "alpha\n")
    run()
    result = run()
    assert_clean_exit(result, 0)
    assert statuses(project) == {
        "cache": "succeeded",
        "build": "cached",
        "on-success": "succeeded",
        "on-failure": "skipped",
        "after": "succeeded",
    }
    assert stdout_of(project, "after") == "success\n"


def test_a_hit_restores_declared_outputs_that_are_missing(build: Path) -> None:
    run()
    shutil.rmtree(build / "dist")
    assert_clean_exit(run(), 0)
    assert times_ran(build) == 1
    assert (build / "dist" / "app.txt").read_text() == "alpha\n"


def test_a_hit_restores_declared_outputs_that_differ(build: Path) -> None:
    run()
    (build / "dist" / "app.txt").write_text("edited by hand\n")
    assert_clean_exit(run(), 0)
    assert times_ran(build) == 1
    assert (build / "dist" / "app.txt").read_text() == "alpha\n"


def test_a_hit_leaves_declared_outputs_alone_when_they_are_equal(build: Path) -> None:
    run()
    before = (build / "dist" / "app.txt").stat()
    assert_clean_exit(run(), 0)
    after = (build / "dist" / "app.txt").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_declaring_another_output_runs_the_node_again(project: Path) -> None:
    """What a hit restores is what the node declares now: a new ``outputs`` glob is not in the old entry."""
    workflow = """
name: cache
nodes:
  - name: build
    sources: [a.txt]
    outputs: [OUTPUTS]
    command: echo ran >> build.marker; echo A > out-a.txt; echo B > out-b.txt
"""
    write(project / "a.txt", "a\n")
    write(project / "wtflow.yml", workflow.replace("OUTPUTS", "out-a.txt"))
    run()
    write(project / "wtflow.yml", workflow.replace("OUTPUTS", "out-a.txt, out-b.txt"))
    (project / "out-b.txt").unlink()
    assert_clean_exit(run(), 0)
    assert (project / "out-b.txt").read_text() == "B\n"
    assert times_ran(project) == 2


def test_a_source_glob_matching_nothing_is_allowed(project: Path) -> None:
    write(
        project / "wtflow.yml",
        """
        name: cache
        nodes:
          - {name: build, sources: ["none/**/*.c"], command: echo ran >> build.marker}
        """,
    )
    assert_clean_exit(run(), 0)
    assert_clean_exit(run(), 0)
    assert statuses(project)["build"] == "cached"
    assert times_ran(project) == 1


def test_cache_true_caches_a_node_without_sources(project: Path) -> None:
    write(
        project / "wtflow.yml",
        """
        name: cache
        nodes:
          - {name: build, cache: true, command: echo ran >> build.marker}
        """,
    )
    run()
    assert_clean_exit(run(), 0)
    assert statuses(project)["build"] == "cached"
    assert times_ran(project) == 1


def test_cache_false_runs_a_node_with_sources_every_time(project: Path) -> None:
    write(
        project / "wtflow.yml",
        """
        name: cache
        nodes:
          - {name: build, sources: ["*.txt"], cache: false, command: echo ran >> build.marker}
        """,
    )
    write(project / "a.txt", "a\n")
    run()
    assert_clean_exit(run(), 0)
    assert statuses(project)["build"] == "succeeded"
    assert times_ran(project) == 2
    assert not CACHE.exists()


def test_a_node_without_sources_or_cache_is_never_cached(project: Path) -> None:
    write(project / "wtflow.yml", "name: cache\nnodes:\n  - {name: build, command: echo ran >> build.marker}\n")
    run()
    run()
    assert times_ran(project) == 2
    assert not CACHE.exists()


# --- what the key covers -------------------------------------------------------------------------

# The node under test is `check`; MARK stands for the absolute path of its marker file. Each case
# is a workflow (and its files) and a change that must make `check` run again.
Setup = dict[str, str]
Change = Callable[[Path], None]


def _edit(name: str, old: str, new: str) -> Change:
    def change(project: Path) -> None:
        path = project / name
        text = path.read_text()
        assert old in text, (old, text)
        path.write_text(text.replace(old, new))

    return change


def _rename(old: str, new: str) -> Change:
    return lambda project: (project / old).rename(project / new)


def _remove(name: str) -> Change:
    return lambda project: (project / name).unlink()


def _add(name: str) -> Change:
    return lambda project: (project / name).write_text("new\n")


def _check(extra: str = "", command: str = "echo ran >> MARK") -> str:
    return f"name: key\nnodes:\n  - name: check\n    sources: ['src/**']\n{extra}    command: {command}\n"


KEY_CASES: dict[str, tuple[Setup, Change]] = {
    "command text": ({"wtflow.yml": _check(command="echo ran >> MARK; echo one")}, _edit("wtflow.yml", "one", "two")),
    "command argv": (
        {"wtflow.yml": _check(command="[sh, -c, 'echo ran >> MARK', x, one]")},
        _edit("wtflow.yml", "one", "two"),
    ),
    "an expression's value": (
        {"wtflow.yml": "vars: {v: one}\n" + _check(command="echo ran >> MARK; echo ${{ vars.v }}")},
        _edit("wtflow.yml", "v: one", "v: two"),
    ),
    "an env value": ({"wtflow.yml": _check("    env: {MODE: one}\n")}, _edit("wtflow.yml", "one", "two")),
    "an env name": ({"wtflow.yml": _check("    env: {MODE: x}\n")}, _edit("wtflow.yml", "MODE", "STYLE")),
    "the workflow's env": ({"wtflow.yml": "env: {MODE: one}\n" + _check()}, _edit("wtflow.yml", "one", "two")),
    "a secret from an env file": (
        {"wtflow.yml": "secrets: [TOKEN]\n" + _check("    env_file: .env\n"), ".env": "TOKEN=first-secret\n"},
        _edit(".env", "first", "second"),
    ),
    "the working directory": (
        {"wtflow.yml": _check("    working_directory: one\n"), "one/src/a.txt": "a\n", "two/src/a.txt": "a\n"},
        _edit("wtflow.yml", "one", "two"),
    ),
    "a source's content": ({"wtflow.yml": _check()}, _edit("src/a.txt", "a", "changed")),
    "a source's content deep below": (
        {"wtflow.yml": _check(), "src/x/y/z.txt": "deep\n"},
        _edit("src/x/y/z.txt", "deep", "deeper"),
    ),
    "a source's path": ({"wtflow.yml": _check()}, _rename("src/a.txt", "src/b.txt")),
    "a source added": ({"wtflow.yml": _check()}, _add("src/new.txt")),
    "a source removed": ({"wtflow.yml": _check(), "src/b.txt": "b\n"}, _remove("src/b.txt")),
    "the key of a node it needs": (
        {
            "wtflow.yml": "name: key\nnodes:\n"
            "  - {name: up, sources: [up.txt], command: 'true'}\n"
            "  - {name: check, needs: up, cache: true, command: echo ran >> MARK}\n",
            "up.txt": "one\n",
        },
        _edit("up.txt", "one", "two"),
    ),
    "the outputs of a node it needs": (
        {
            "wtflow.yml": "name: key\nnodes:\n"
            '  - {name: up, command: echo "v=$(cat v.txt)" >> "$WTFLOW_OUTPUT"}\n'
            "  - {name: check, needs: up, cache: true, command: echo ran >> MARK}\n",
            "v.txt": "one\n",
        },
        _edit("v.txt", "one", "two"),
    ),
    "the result of a node it needs": (
        {
            "wtflow.yml": "name: key\nnodes:\n"
            '  - {name: up, continue_on_error: true, command: exit "$(cat code.txt)"}\n'
            "  - {name: check, needs: up, if: always(), cache: true, command: echo ran >> MARK}\n",
            "code.txt": "0\n",
        },
        _edit("code.txt", "0", "1"),
    ),
    "the outputs of a node inside a group it needs": (
        {
            "wtflow.yml": "name: key\nroot:\n  name: all\n  parallel: true\n  children:\n"
            "    - name: group\n      children:\n"
            '        - {name: up, command: echo "v=$(cat v.txt)" >> "$WTFLOW_OUTPUT"}\n'
            "    - {name: check, needs: group, cache: true, command: echo ran >> MARK}\n",
            "v.txt": "one\n",
        },
        _edit("v.txt", "one", "two"),
    ),
    "the outputs of the sibling before it": (
        {
            "wtflow.yml": "name: key\nroot:\n  name: group\n  children:\n"
            '    - {name: first, command: echo "v=$(cat v.txt)" >> "$WTFLOW_OUTPUT"}\n'
            "    - {name: check, cache: true, command: echo ran >> MARK}\n",
            "v.txt": "one\n",
        },
        _edit("v.txt", "one", "two"),
    ),
    "the outputs of its parent": (
        {
            "wtflow.yml": "name: key\nroot:\n  name: parent\n"
            '  command: echo "v=$(cat v.txt)" >> "$WTFLOW_OUTPUT"\n'
            "  children:\n"
            "    - {name: check, cache: true, command: echo ran >> MARK}\n",
            "v.txt": "one\n",
        },
        _edit("v.txt", "one", "two"),
    ),
}


@pytest.mark.parametrize(("setup", "change"), KEY_CASES.values(), ids=KEY_CASES.keys())
def test_a_change_to_what_the_key_covers_runs_the_node_again(project: Path, setup: Setup, change: Change) -> None:
    """Nothing changed: cached; then the one change: the node runs again."""
    marker = project / "check.marker"
    write(project / "src" / "a.txt", "a\n")
    for name, text in setup.items():
        write(project / name, text.replace("MARK", str(marker)))
    assert_clean_exit(run(), 0)
    assert_clean_exit(run(), 0)
    assert statuses(project)["check"] == "cached"
    change(project)
    assert_clean_exit(run(), 0)
    assert statuses(project)["check"] == "succeeded"
    assert times_ran(project, "check") == 2


def test_a_function_reading_an_uncached_nodes_stdout_runs_again_when_that_stdout_changes(project: Path) -> None:
    """The artifact a function is given is part of what it computes from, cached producer or not."""
    write(
        project / "wtflow.yml",
        """
        name: key
        nodes:
          - {name: up, command: cat value.txt}
          - name: down
            cache: true
            function: tests.integration.test_caching_cli:shout
            args: [{artifact: up.stdout}]
        """,
    )
    write(project / "value.txt", "one\n")
    run()
    write(project / "value.txt", "two\n")
    result = run()
    assert_clean_exit(result, 0)
    assert stdout_of(project, "down") == "TWO\n"
    assert statuses(project)["down"] == "succeeded"


def shout(artifact: Any) -> None:
    """A function node's body for the test above: its upstream's stdout, upper-cased."""
    print(artifact.data.decode().strip().upper())


def test_each_matrix_combination_is_cached_under_its_own_key(project: Path) -> None:
    write(
        project / "wtflow.yml",
        """
        name: m
        nodes:
          - name: test
            matrix: {n: ["1", "2"]}
            sources: [a.txt]
            command: echo ran >> test.marker; echo "n=${{ matrix.n }}"
        """,
    )
    write(project / "a.txt", "a\n")
    run()
    result = run()
    assert_clean_exit(result, 0)
    assert statuses(project) == {"m": "succeeded", "test": "succeeded", "test (1)": "cached", "test (2)": "cached"}
    assert sorted(result.stdout.splitlines()) == ["n=1", "n=2"]
    assert times_ran(project, "test") == 2
    assert sorted(entry.node for entry in entries()) == ["test (1)", "test (2)"]


def test_a_matrix_combination_runs_again_when_what_the_matrix_needs_changes(project: Path) -> None:
    write(
        project / "wtflow.yml",
        """
        name: m
        nodes:
          - {name: up, command: echo "v=$(cat v.txt)" >> "$WTFLOW_OUTPUT"}
          - {name: test, needs: up, matrix: {n: ["1"]}, cache: true, command: echo ran >> test.marker}
        """,
    )
    write(project / "v.txt", "one\n")
    run()
    assert_clean_exit(run(), 0)
    assert statuses(project)["test (1)"] == "cached"
    write(project / "v.txt", "two\n")
    assert_clean_exit(run(), 0)
    assert statuses(project)["test (1)"] == "succeeded"
    assert times_ran(project, "test") == 2


def test_a_variable_inherited_from_wtflows_environment_is_not_part_of_the_key(project: Path) -> None:
    """Only the declared environment counts: declare what changes the output, in env: or an env file."""
    write(
        project / "wtflow.yml",
        """
        name: key
        nodes:
          - {name: build, sources: [a.txt], command: echo ran >> build.marker; echo "mode $MODE"}
        """,
    )
    write(project / "a.txt", "a\n")
    run(env={"MODE": "debug"})
    result = run(env={"MODE": "release"})
    assert_clean_exit(result, 0)
    assert statuses(project)["build"] == "cached"
    assert result.stdout == "mode debug\n"


def test_a_project_moved_to_another_path_keeps_its_hits(
    tmp_path: Path, build: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys hold the working directory relative to the workflow file, never an absolute path."""
    run()
    moved = tmp_path.parent / f"{tmp_path.name}-moved"
    shutil.copytree(build, moved, symlinks=True)
    try:
        monkeypatch.chdir(moved)
        assert_clean_exit(run(), 0)
        assert statuses(moved)["build"] == "cached"
        assert times_ran(moved) == 1
    finally:
        monkeypatch.chdir(build)
        shutil.rmtree(moved)


def test_a_secret_value_is_not_stored_in_the_cache_in_clear(project: Path) -> None:
    write(
        project / "wtflow.yml",
        """
        name: key
        secrets: [TOKEN]
        nodes:
          - {name: build, sources: [a.txt], env_file: .env, command: 'echo "token $TOKEN"'}
        """,
    )
    write(project / ".env", "TOKEN=hunter2-very-secret\n")
    write(project / "a.txt", "a\n")
    assert_clean_exit(run(), 0)
    assert entries()
    for path in CACHE.rglob("*"):
        if path.is_file():
            assert b"hunter2-very-secret" not in path.read_bytes(), path


# --- --force -------------------------------------------------------------------------------------

TWO = """
name: force
nodes:
  - {name: build, sources: [a.txt], command: echo ran >> build.marker}
  - {name: test, sources: [a.txt], command: echo ran >> test.marker}
"""


@pytest.fixture
def two(project: Path) -> Path:
    write(project / "wtflow.yml", TWO)
    write(project / "a.txt", "a\n")
    assert_clean_exit(run(), 0)
    return project


def test_force_runs_every_cached_node(two: Path) -> None:
    assert_clean_exit(run("--force"), 0)
    assert statuses(two) == {"force": "succeeded", "build": "succeeded", "test": "succeeded"}
    assert (times_ran(two, "build"), times_ran(two, "test")) == (2, 2)


def test_force_after_the_workflow_file_runs_every_cached_node(two: Path) -> None:
    assert_clean_exit(run("wtflow.yml", "--force"), 0)
    assert (times_ran(two, "build"), times_ran(two, "test")) == (2, 2)


def test_force_node_runs_only_that_node(two: Path) -> None:
    assert_clean_exit(run("wtflow.yml", "--force", "build"), 0)
    assert statuses(two) == {"force": "succeeded", "build": "succeeded", "test": "cached"}


def test_force_equals_node_runs_only_that_node(two: Path) -> None:
    assert_clean_exit(run("--force=test"), 0)
    assert statuses(two) == {"force": "succeeded", "build": "cached", "test": "succeeded"}


def test_force_node_is_repeatable(two: Path) -> None:
    assert_clean_exit(run("wtflow.yml", "--force", "build", "--force", "test"), 0)
    assert statuses(two) == {"force": "succeeded", "build": "succeeded", "test": "succeeded"}


def test_force_of_an_unknown_node_exits_2_with_a_suggestion(two: Path) -> None:
    result = run("wtflow.yml", "--force", "biuld")
    assert_clean_exit(result, 2)
    assert result.stdout == ""
    assert "Error: --force 'biuld' is not a node of workflow 'force'; did you mean 'build'?" in result.stderr
    assert (times_ran(two, "build"), times_ran(two, "test")) == (1, 1)


def test_force_refreshes_the_cache_with_the_new_output(project: Path) -> None:
    """A forced run's output is what the next hit replays, not the one it replaced."""
    write(
        project / "wtflow.yml",
        """
        name: force
        nodes:
          - name: count
            sources: [a.txt]
            command: echo ran >> count.marker; echo "run $(wc -l < count.marker)"
        """,
    )
    write(project / "a.txt", "a\n")
    assert run().stdout == "run 1\n"
    assert run("--force").stdout == "run 2\n"
    result = run()
    assert_clean_exit(result, 0)
    assert statuses(project)["count"] == "cached"
    assert result.stdout == "run 2\n"


# --- what never fills the cache -----------------------------------------------------------------


def test_a_failed_node_does_not_fill_the_cache(project: Path) -> None:
    write(
        project / "wtflow.yml",
        "name: f\nnodes:\n  - {name: build, sources: [a.txt], command: echo ran >> build.marker; exit 3}\n",
    )
    write(project / "a.txt", "a\n")
    assert_clean_exit(run(), 1)
    assert_clean_exit(run(), 1)
    assert times_ran(project) == 2
    assert entries() == []


def test_a_node_that_timed_out_does_not_fill_the_cache(project: Path) -> None:
    write(project / "wait.sh", WAIT_SCRIPT)
    write(
        project / "wtflow.yml",
        """
        name: t
        nodes:
          - {name: build, sources: [a.txt], timeout: 0.3, command: echo ran >> build.marker; sh wait.sh never}
        """,
    )
    write(project / "a.txt", "a\n")
    assert_clean_exit(run("--kill-grace", "2"), 1)
    assert statuses(project)["build"] == "timed_out"
    assert_clean_exit(run("--kill-grace", "2"), 1)
    assert times_ran(project) == 2
    assert entries() == []


def test_a_cancelled_node_does_not_fill_the_cache(project: Path) -> None:
    """``build`` is cancelled when ``breaks`` fails; once ``go`` exists it can finish, and runs again."""
    write(project / "wait.sh", WAIT_SCRIPT)
    write(
        project / "wtflow.yml",
        """
        name: c
        nodes:
          - {name: build, sources: [a.txt], command: echo ran >> build.marker; sh wait.sh go}
          - {name: breaks, command: sh wait.sh build.marker; test -e go}
        """,
    )
    write(project / "a.txt", "a\n")
    assert_clean_exit(run("--kill-grace", "2"), 1)
    assert statuses(project)["build"] == "cancelled"
    assert entries() == []
    (project / "go").touch()
    assert_clean_exit(run(), 0)
    assert statuses(project)["build"] == "succeeded"
    assert times_ran(project) == 2


# --- faults --------------------------------------------------------------------------------------


def _truncate_stdout(entry: Entry) -> None:
    entry.stdout.chmod(0o644)  # read-only in the cache (root writes anyway)
    entry.stdout.write_bytes(entry.stdout.read_bytes()[:3])


def _alter_a_declared_file(entry: Entry) -> None:
    path = entry.path / "files" / "dist" / "app.txt"
    path.write_text("ALPHA\n")  # same size, other content


def _garble_the_manifest(entry: Entry) -> None:
    (entry.path / "manifest.json").write_text("{not json")


def _remove_the_manifest(entry: Entry) -> None:
    (entry.path / "manifest.json").unlink()


DAMAGE = {
    "a truncated stdout": _truncate_stdout,
    "an altered declared file": _alter_a_declared_file,
    "a corrupt manifest": _garble_the_manifest,
    "a missing manifest": _remove_the_manifest,
}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_entry_is_a_miss_reported_once_as_a_warning(build: Path, damage: Callable[[Entry], None]) -> None:
    run()
    [entry] = entries()
    damage(entry)
    result = run()
    assert_clean_exit(result, 0)
    assert statuses(build)["build"] == "succeeded"
    assert times_ran(build) == 2
    assert result.stderr.count("is unusable, treated as a miss") == 1
    assert f"cache entry {entry.key[:12]} is unusable" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_damaged_entry_is_replaced_by_the_run_that_missed(build: Path) -> None:
    run()
    [entry] = entries()
    _truncate_stdout(entry)
    run()
    result = run()
    assert_clean_exit(result, 0)
    assert statuses(build)["build"] == "cached"
    assert "unusable" not in result.stderr
    assert times_ran(build) == 2


def test_an_unreadable_source_fails_the_node_naming_the_file(build: Path) -> None:
    secret = build / "src" / "locked.txt"
    secret.write_text("x\n")
    secret.chmod(0)
    try:
        if os.access(secret, os.R_OK):
            pytest.skip("this user reads files whatever their permissions (root): chmod 000 locks nothing")
        result = run()
    finally:
        secret.chmod(0o644)
    assert_clean_exit(result, 1)
    assert statuses(build)["build"] == "failed"
    assert "source src/locked.txt cannot be read: Permission denied" in result.stderr
    assert times_ran(build) == 0


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux's /proc/self/mem")
def test_a_source_that_fails_to_read_fails_the_node_naming_the_file(build: Path) -> None:
    """Reading /proc/self/mem from its start is an I/O error, for root too."""
    (build / "src" / "mem.txt").symlink_to("/proc/self/mem")
    result = run()
    assert_clean_exit(result, 1)
    node = run_record(build)["nodes"]["build"]
    assert node["status"] == "failed"
    assert node["error"] == "source src/mem.txt cannot be read: Input/output error"
    assert "source src/mem.txt cannot be read" in result.stderr
    assert times_ran(build) == 0


def test_outputs_matching_nothing_after_success_is_a_warning(project: Path) -> None:
    write(
        project / "wtflow.yml",
        "name: o\nnodes:\n  - {name: build, sources: [a.txt], outputs: [dist], command: 'true'}\n",
    )
    write(project / "a.txt", "a\n")
    result = run()
    assert_clean_exit(result, 0)
    assert "node 'build': outputs dist matched no file after the node succeeded" in result.stderr
    assert statuses(project)["build"] == "succeeded"


# `sh both.sh`: says this run's node started, returns once the other run's did too (gives up after 30 s).
BOTH = """\
touch "started.$WTFLOW_RUN_ID"
i=0
while [ "$(ls started.* | wc -l)" -lt 2 ]; do
  i=$((i + 1))
  if [ "$i" -gt 1500 ]; then echo "the other run never started" >&2; exit 99; fi
  sleep 0.02
done
"""


def test_two_runs_filling_the_same_cache_at_once_both_succeed(build: Path) -> None:
    """Both runs' nodes wait for each other, so both store the same key at the same time."""
    write(build / "both.sh", BOTH)
    (build / "wtflow.yml").write_text(BUILD.replace("echo ran >> build.marker", "echo ran >> build.marker; sh both.sh"))
    command = [sys.executable, "-m", "wtflow", "run", "--db-url", "", "--log-format", "json"]
    processes = [subprocess.Popen(command, cwd=build, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    for process in processes:
        _stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr.decode()
        assert b"not kept in the cache" not in stderr
    assert times_ran(build) == 2
    [entry] = entries()
    store = CacheStore(CACHE)
    assert store.get(entry.key) is not None
    assert store.warnings == []
    assert not list((CACHE / "tmp").iterdir())
    assert_clean_exit(run(), 0)
    assert statuses(build)["build"] == "cached"


# --- where the cache is, and its commands -------------------------------------------------------


def test_cache_dir_puts_the_cache_where_it_says(build: Path) -> None:
    assert_clean_exit(run("--cache-dir", "elsewhere"), 0)
    assert [entry.node for entry in entries(Path("elsewhere"))] == ["build"]
    assert not CACHE.exists()


def test_wtflow_cache_dir_puts_the_cache_where_it_says(build: Path) -> None:
    assert_clean_exit(run(env={"WTFLOW_CACHE_DIR": "from-env"}), 0)
    assert [entry.node for entry in entries(Path("from-env"))] == ["build"]


def test_the_ini_files_storage_cache_dir_puts_the_cache_where_it_says(build: Path) -> None:
    write(build / "wtflow.ini", "[storage]\ncache_dir = from-ini\n")
    assert_clean_exit(run("--config", "wtflow.ini"), 0)
    assert [entry.node for entry in entries(Path("from-ini"))] == ["build"]


def test_cache_dir_flag_wins_over_the_environment(build: Path) -> None:
    assert_clean_exit(run("--cache-dir", "flag", env={"WTFLOW_CACHE_DIR": "from-env"}), 0)
    assert [entry.node for entry in entries(Path("flag"))] == ["build"]
    assert not Path("from-env").exists()


def test_cache_ls_lists_what_a_run_stored(build: Path) -> None:
    run()
    result = cli("cache", "ls")
    assert result.exit_code == 0, result.output
    header, row, total = result.stdout.splitlines()
    assert header.split() == ["KEY", "NODE", "SIZE", "AGE", "SAVES"]
    [entry] = entries()
    assert row.split()[:2] == [entry.key[:12], "build"]
    assert total.startswith("1 entry, ")
    assert result.stderr == ""


def test_cache_prune_with_size_and_age_limits_keeps_a_small_recent_cache(build: Path) -> None:
    run()
    result = cli("cache", "prune", "--max-size", "2GiB", "--older-than", "7d")
    assert result.exit_code == 0, result.output
    assert result.stdout == "nothing to remove in .wtflow/cache\n"
    assert_clean_exit(run(), 0)
    assert statuses(build)["build"] == "cached"


def test_a_pruned_entry_runs_its_node_again(build: Path) -> None:
    run()
    result = cli("cache", "prune", "--max-size", "0")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("removed 1 entry, ")
    assert_clean_exit(run(), 0)
    assert statuses(build)["build"] == "succeeded"
    assert times_ran(build) == 2


def test_the_cache_directory_is_tagged_and_ignored_by_git(build: Path) -> None:
    run()
    assert (CACHE / "CACHEDIR.TAG").read_text().startswith("Signature: 8a477f597d28d172789f06886806bc55\n")
    assert (CACHE / ".gitignore").read_text().splitlines()[-1] == "*"


# --- the GitHub Action ---------------------------------------------------------------------------


def test_the_action_declares_a_cache_dir_input() -> None:
    import yaml

    root = Path(__file__).resolve().parents[2]
    inputs = yaml.safe_load((root / "action.yml").read_text())["inputs"]
    assert inputs["cache-dir"]["default"] == ""


def test_the_action_keeps_the_cache_in_the_workspace_by_default(build: Path) -> None:
    """The action runs in the workspace: ``actions/cache`` with ``path: .wtflow/cache`` finds it."""
    result = cli("action", env={"INPUT_WORKFLOW-FILE": "wtflow.yml", "INPUT_DB-URL": ""})
    assert_clean_exit(result, 0)
    assert [entry.node for entry in entries()] == ["build"]


def test_the_action_takes_cache_dir_through_its_args_input(build: Path) -> None:
    env = {"INPUT_WORKFLOW-FILE": "wtflow.yml", "INPUT_DB-URL": "", "INPUT_ARGS": "--cache-dir from-args"}
    assert_clean_exit(cli("action", env=env), 0)
    assert [entry.node for entry in entries(Path("from-args"))] == ["build"]


def test_the_action_passes_its_cache_dir_input_to_run(build: Path) -> None:
    env = {"INPUT_WORKFLOW-FILE": "wtflow.yml", "INPUT_DB-URL": "", "INPUT_CACHE-DIR": "action-cache"}
    result = cli("action", env=env)
    assert_clean_exit(result, 0)
    assert [entry.node for entry in entries(Path("action-cache"))] == ["build"]


# --- memory --------------------------------------------------------------------------------------

BIG = """
name: big
nodes:
  - name: big
    sources: [a.txt]
    command: yes 0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz | head -c SIZE
"""
MIB = 1 << 20


def _peak_of_a_hit(project: Path, size: int) -> tuple[int, int]:
    """Fill the cache with a node printing ``size`` bytes, then replay it: (bytes replayed, peak RSS in bytes)."""
    write(project / "wtflow.yml", BIG.replace("SIZE", str(size)))
    write(project / "a.txt", "a\n")
    command = [sys.executable, "-m", "wtflow", "run", "--db-url", "", "--output", "interleaved"]
    subprocess.run(command, cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=120)
    # A fresh interpreter runs the hit, so its children's peak is this hit's alone.
    probe = (
        "import resource, subprocess, sys\n"
        "with open('replayed.out', 'wb') as out:\n"
        "    subprocess.run(sys.argv[1:], stdout=out, stderr=subprocess.DEVNULL, check=True)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *command], cwd=project, capture_output=True, text=True, check=True, timeout=120
    )
    return (project / "replayed.out").stat().st_size, int(done.stdout) * 1024  # ru_maxrss is in KiB on Linux


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux (bytes on macOS)")
def test_a_hit_with_100_mib_of_output_streams_it(tmp_path: Path, project: Path) -> None:
    small, large = tmp_path / "small", tmp_path / "large"
    small.mkdir()
    large.mkdir()
    _replayed, baseline = _peak_of_a_hit(small, 100)
    replayed, peak = _peak_of_a_hit(large, 100 * MIB)
    assert replayed == 100 * MIB
    assert peak - baseline < 30 * MIB, f"a hit of 100 MiB peaked {(peak - baseline) / MIB:.1f} MiB above a small one"
