"""Command nodes run as real processes, in their own process group."""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import process_alive, wait_for
from tests.integration.conftest import Runner
from wtflow import Command, Config, Engine, Node, NodeStatus, RunConfig, StorageConfig, Workflow
from wtflow.executors import spawn, supervise
from wtflow.executors.child import Child


@pytest.fixture
def starts(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple[str, ...], Child]]:
    """Every process the run starts, as the argv it was given and the child watching it."""
    started: list[tuple[tuple[str, ...], Child]] = []
    real_start = spawn.start

    async def recording_start(argv: Sequence[str], **options: Any) -> Child:
        child = await real_start(argv, **options)
        started.append((tuple(argv), child))
        return child

    monkeypatch.setattr(supervise, "start", recording_start)  # as run_process finds it
    return started


def output(runner: Runner, node: str, stream: str = "stdout") -> bytes:
    assert runner.engine is not None
    assert runner.engine.result is not None
    return runner.engine.result[node].artifacts[stream].data


def test_string_command_runs_through_the_shell(run_workflow: Runner) -> None:
    run_workflow(Node("a", executable=Command("echo $((1 + 2)) && echo err >&2")))
    assert output(run_workflow, "a") == b"3\n"
    assert output(run_workflow, "a", "stderr") == b"err\n"


def test_list_command_is_not_interpreted_by_a_shell(run_workflow: Runner) -> None:
    run_workflow(Node("a", executable=Command(["echo", "$HOME", "; rm -rf /", "*"])))
    assert output(run_workflow, "a") == b"$HOME ; rm -rf / *\n"


def test_non_zero_exit_fails_the_node_with_its_code(run_workflow: Runner) -> None:
    engine = run_workflow(Node("a", executable=Command("exit 7")))
    assert engine.result is not None
    assert (engine.result["a"].status, engine.result["a"].exit_code, engine.result.exit_code) == (
        NodeStatus.FAILED,
        7,
        1,
    )


def test_missing_program_fails_with_127_and_says_why(run_workflow: Runner) -> None:
    engine = run_workflow(Node("a", executable=Command(["no-such-program-wtflow"])))
    assert engine.result is not None
    assert engine.result["a"].exit_code == 127
    assert b"cannot start 'no-such-program-wtflow'" in output(run_workflow, "a", "stderr")


def test_env_and_cwd_reach_the_process(run_workflow: Runner, tmp_path: Path) -> None:
    run_workflow(Node("a", executable=Command('echo "$GREETING $(pwd)"', env={"GREETING": "hi"}, cwd=tmp_path)))
    assert output(run_workflow, "a") == f"hi {tmp_path}\n".encode()


def test_timeout_kills_the_whole_process_group(run_workflow: Runner, tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    script = f"sleep 300 & echo $! > {pid_file}; wait"
    engine = run_workflow(Node("a", executable=Command(script, timeout=0.5)))
    assert engine.result is not None
    assert engine.result["a"].status is NodeStatus.TIMED_OUT
    assert engine.result["a"].error == "timed out after 0.5s"
    grandchild = int(pid_file.read_text())
    assert not process_alive(grandchild)


def test_background_process_left_by_a_finished_command_is_stopped(run_workflow: Runner, tmp_path: Path) -> None:
    pid_file = tmp_path / "bg.pid"
    engine = run_workflow(Node("a", executable=Command(f"sleep 300 & echo $! > {pid_file}; echo done")))
    assert engine.result is not None
    assert engine.result["a"].status is NodeStatus.SUCCEEDED
    assert output(run_workflow, "a") == b"done\n"
    assert not process_alive(int(pid_file.read_text()))


def test_large_output_is_stored_completely(run_workflow: Runner) -> None:
    run_workflow(Node("a", executable=Command("head -c 5000000 /dev/zero | tr '\\0' 'x'; printf end")))
    data = output(run_workflow, "a")
    assert len(data) == 5_000_003
    assert data.endswith(b"xend")


def test_failure_cancels_sibling_process_promptly(run_workflow: Runner, tmp_path: Path) -> None:
    pid_file = tmp_path / "sleeper.pid"
    root = Node(
        "root",
        parallel=True,
        children=[
            Node("sleeper", executable=Command(f"echo $$ > {pid_file}; exec sleep 300")),
            Node("bad", executable=Command(f"while [ ! -s {pid_file} ]; do sleep 0.01; done; exit 1")),
        ],
    )
    engine = run_workflow(root)
    assert engine.result is not None
    assert engine.result["sleeper"].status is NodeStatus.CANCELLED
    assert engine.result["bad"].status is NodeStatus.FAILED
    assert not process_alive(int(pid_file.read_text()))


GRACE = 0.5
# SIGKILL must come once the grace is over, long before ten times it (a machine may be slow). The
# trap notes SIGTERM only once the shell's current `sleep 0.05` ends: the note may come a little late.
EARLY = GRACE - 0.25
LATE = GRACE + 4.5


def _ignoring_sigterm(tmp_path: Path) -> tuple[str, Path, Path]:
    """A command that notes when SIGTERM came and goes on; and the files it writes."""
    ready, termed = tmp_path / "ready", tmp_path / "termed"
    script = f"trap 'date +%s.%N > {termed}' TERM; touch {ready}; while true; do sleep 0.05; done"
    return script, ready, termed


def _seconds_from_sigterm_to_end(termed: Path, finished: datetime) -> float:
    return finished.timestamp() - float(termed.read_text())


def test_a_timed_out_process_ignoring_sigterm_is_killed_once_the_grace_is_over(
    run_workflow: Runner, tmp_path: Path
) -> None:
    script, _, termed = _ignoring_sigterm(tmp_path)
    engine = run_workflow(Node("a", executable=Command(script, timeout=1)), kill_grace=GRACE)
    assert engine.result is not None
    node = engine.result["a"]
    assert (node.status, node.exit_code) == (NodeStatus.TIMED_OUT, 137)  # SIGKILL
    assert termed.exists()  # SIGTERM came first, and the trap was there to see it
    assert node.finished_at is not None
    assert EARLY <= _seconds_from_sigterm_to_end(termed, node.finished_at) < LATE


def test_a_cancelled_process_ignoring_sigterm_is_killed_once_the_grace_is_over(tmp_path: Path) -> None:
    """The run is stopped only once the trap is in place: nothing races the process's start."""
    script, ready, termed = _ignoring_sigterm(tmp_path)
    config = Config(storage=StorageConfig(tmp_path / "artifacts"), run=RunConfig(kill_grace=GRACE))
    engine = Engine(Workflow("wf", Node("a", executable=Command(script))), config, observers=[])

    async def main() -> None:
        run = asyncio.create_task(engine.run_async())
        await asyncio.to_thread(wait_for, ready.exists)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run

    asyncio.run(main())
    assert engine.result is not None
    node = engine.result["a"]
    assert node.status is NodeStatus.CANCELLED
    assert termed.exists()
    assert node.finished_at is not None
    assert EARLY <= _seconds_from_sigterm_to_end(termed, node.finished_at) < LATE


def test_unwritable_artifacts_directory_fails_the_node_clearly(run_workflow: Runner) -> None:
    # The first node puts a file where the second node's artifacts directory must go.
    root = Node(
        "root",
        children=[
            Node("a", executable=Command('rm -rf "$WTFLOW_RUN_DIR/b"; touch "$WTFLOW_RUN_DIR/b"')),
            Node("b", executable=Command("true")),
        ],
    )
    engine = run_workflow(root)
    assert engine.result is not None
    assert engine.result["b"].status is NodeStatus.FAILED
    assert (engine.result["b"].error or "").startswith("cannot store artifacts: ")
    assert engine.result.exit_code == 1


def test_a_program_is_found_on_the_path_the_node_sets(run_workflow: Runner, tmp_path: Path) -> None:
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "wtflow-test-tool").write_text("#!/bin/sh\necho found\n")
    (tools / "wtflow-test-tool").chmod(0o755)
    path = f"{tools}:{os.environ.get('PATH', os.defpath)}"
    run_workflow(Node("a", executable=Command(["wtflow-test-tool"], env={"PATH": path})))
    assert output(run_workflow, "a") == b"found\n"


def test_a_program_removed_since_a_node_found_it_is_looked_up_again(run_workflow: Runner, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for tools in (first, second):
        tools.mkdir()
        (tools / "wtflow-test-tool").write_text(f"#!/bin/sh\necho {tools.name}\n")
        (tools / "wtflow-test-tool").chmod(0o755)
    env = {"PATH": f"{first}:{second}:{os.environ.get('PATH', os.defpath)}"}
    run_workflow(Node("a", executable=Command(["wtflow-test-tool"], env=env)))
    assert output(run_workflow, "a") == b"first\n"
    (first / "wtflow-test-tool").unlink()
    run_workflow(Node("b", executable=Command(["wtflow-test-tool"], env=env)))
    assert output(run_workflow, "b") == b"second\n"


def test_a_program_that_is_not_executable_fails_with_126(run_workflow: Runner, tmp_path: Path) -> None:
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\necho never\n")
    engine = run_workflow(Node("a", executable=Command([str(script)])))
    assert engine.result is not None
    assert engine.result["a"].exit_code == 126
    assert b"Permission denied" in output(run_workflow, "a", "stderr")


def test_commands_die_quietly_of_a_closed_pipe(run_workflow: Runner) -> None:
    # Python ignores SIGPIPE; its children must not: `yes` would complain of a broken pipe.
    run_workflow(Node("a", executable=Command("yes | head -c 4")))
    assert output(run_workflow, "a") == b"y\ny\n"
    assert output(run_workflow, "a", "stderr") == b""


def test_a_plain_command_string_starts_its_program_without_a_shell(
    run_workflow: Runner, starts: list[tuple[tuple[str, ...], Child]]
) -> None:
    run_workflow(Node("a", executable=Command("printf %s, done"), children=[Node("b", executable=Command("true"))]))
    assert output(run_workflow, "a") == b"done,"
    # printf and true are the shell's own: only a program it would merely exec starts directly.
    assert [argv for argv, _ in starts] == [("/bin/sh", "-c", "printf %s, done"), ("/bin/sh", "-c", "true")]
    run_workflow(Node("c", executable=Command("  head -c 3 /dev/zero ")))
    assert starts[-1][0] == ("head", "-c", "3", "/dev/zero")
    assert output(run_workflow, "c") == b"\0\0\0"


def test_a_plain_command_naming_a_missing_program_fails_as_the_shell_says(run_workflow: Runner) -> None:
    engine = run_workflow(Node("a", executable=Command("no-such-program-wtflow --flag")))
    assert engine.result is not None
    assert engine.result["a"].exit_code == 127
    assert b"no-such-program-wtflow: not found" in output(run_workflow, "a", "stderr")


def test_a_plain_command_running_a_script_without_a_shebang_runs_it_with_the_shell(
    run_workflow: Runner, tmp_path: Path
) -> None:
    script = tmp_path / "steps.sh"
    script.write_text("echo $((6 * 7))\n")
    script.chmod(0o755)
    run_workflow(Node("a", executable=Command("./steps.sh", cwd=tmp_path)))
    assert output(run_workflow, "a") == b"42\n"


def test_a_plain_command_finds_pwd_naming_its_working_directory(run_workflow: Runner, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    link = tmp_path / "link"
    link.symlink_to(work)
    run_workflow(
        Node(
            "root",
            executable=Command("env", cwd=work, env={"PWD": "/somewhere/else"}),
            children=[Node("through_link", executable=Command("env", cwd=link, env={"PWD": str(link)}))],
        )
    )
    # As the shell does: a PWD that names the directory is kept (even through a link), any other replaced.
    assert f"PWD={work.resolve()}\n".encode() in output(run_workflow, "root")
    assert f"PWD={link}\n".encode() in output(run_workflow, "through_link")


def test_a_process_that_cannot_be_watched_is_stopped_and_its_node_fails(
    run_workflow: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    spawned: list[int] = []

    class Unwatchable(spawn.SpawnedChild):
        def __init__(self, pid: int, *args: Any) -> None:
            spawned.append(pid)
            raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(spawn, "SpawnedChild", Unwatchable)
    engine = run_workflow(Node("a", executable=Command("sleep 30")))
    assert engine.result is not None
    assert engine.result["a"].exit_code == 126
    assert b"Too many open files" in output(run_workflow, "a", "stderr")
    assert len(spawned) == 1  # a lack of descriptors is not a reason to try through the shell
    assert not process_alive(spawned[0])


def test_a_node_in_another_directory_is_watched_like_any_other(
    run_workflow: Runner, tmp_path: Path, starts: list[tuple[tuple[str, ...], Child]]
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    engine = run_workflow(Node("a", executable=Command("pwd; echo err >&2; exit 7", cwd=elsewhere)))
    assert engine.result is not None
    assert (engine.result["a"].exit_code, output(run_workflow, "a")) == (7, f"{elsewhere}\n".encode())
    assert output(run_workflow, "a", "stderr") == b"err\n"
    assert [type(child) for _, child in starts] == [spawn.SpawnedChild]  # a pidfd, not a thread per child


def test_a_missing_program_in_another_directory_fails_with_127(run_workflow: Runner, tmp_path: Path) -> None:
    engine = run_workflow(Node("a", executable=Command(["no-such-program-wtflow"], cwd=tmp_path)))
    assert engine.result is not None
    assert engine.result["a"].exit_code == 127
    assert f"cannot start 'no-such-program-wtflow' in {tmp_path}".encode() in output(run_workflow, "a", "stderr")


def test_a_plain_command_runs_when_the_runners_directory_is_gone(
    run_workflow: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    engine = run_workflow(Node("a", executable=Command("uname -s")))
    assert engine.result is not None
    assert (engine.result["a"].status, output(run_workflow, "a")) == (NodeStatus.SUCCEEDED, b"Linux\n")


def test_a_node_in_its_own_directory_gets_pwd_when_the_runners_directory_is_gone(
    run_workflow: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    run_workflow(Node("a", executable=Command("env", cwd=work, env={"PWD": "/somewhere/else"})))
    assert f"PWD={work.resolve()}\n".encode() in output(run_workflow, "a")
