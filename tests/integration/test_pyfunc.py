"""PyFunc nodes run Python functions in their own processes."""

from __future__ import annotations

import json
import os
import pickle
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import process_alive
from tests.integration import pyfuncs
from tests.integration.conftest import Runner
from wtflow import Command, Node, NodeStatus, PyFunc


def result_of(runner: Runner, node: str) -> object:
    assert runner.engine is not None
    assert runner.engine.result is not None
    return json.loads(runner.engine.result[node].artifacts["result"].data)


def artifact(runner: Runner, node: str, name: str) -> bytes:
    assert runner.engine is not None
    assert runner.engine.result is not None
    return runner.engine.result[node].artifacts[name].data


def test_output_and_return_value_are_kept(run_workflow: Runner) -> None:
    run_workflow(Node("f", executable=PyFunc(pyfuncs.hello)))
    assert artifact(run_workflow, "f", "stdout") == b"hello from a function\n"
    assert result_of(run_workflow, "f") == "done"


def test_none_is_kept_as_a_null_result(run_workflow: Runner) -> None:
    run_workflow(Node("f", executable=PyFunc(pyfuncs.returns_none)))
    assert result_of(run_workflow, "f") is None


def test_exception_writes_its_traceback_and_exits_1(run_workflow: Runner) -> None:
    engine = run_workflow(Node("f", executable=PyFunc(pyfuncs.raises)))
    assert engine.result is not None
    assert (engine.result["f"].status, engine.result["f"].exit_code) == (NodeStatus.FAILED, 1)
    stderr = artifact(run_workflow, "f", "stderr").decode()
    assert stderr.startswith("Traceback (most recent call last):")
    assert 'raise ValueError("boom")' in stderr
    assert stderr.endswith("ValueError: boom\n")
    assert "pychild" not in stderr


def test_system_exit_code_becomes_the_exit_code(run_workflow: Runner) -> None:
    engine = run_workflow(Node("f", executable=PyFunc(pyfuncs.exits, args=(3,))))
    assert engine.result is not None
    assert engine.result["f"].exit_code == 3


def test_output_is_captured_at_the_file_descriptor_level(run_workflow: Runner) -> None:
    run_workflow(Node("f", executable=PyFunc(pyfuncs.low_level_output)))
    assert artifact(run_workflow, "f", "stdout") == b"fd one\nfrom C\nfrom a subprocess\n"
    assert artifact(run_workflow, "f", "stderr") == b"fd two\n"


def test_artifacts_inside_containers_arrive_with_their_data(run_workflow: Runner) -> None:
    a = Node("a", executable=Command("printf A"))
    b = Node("b", executable=Command("printf B"))
    reader = Node(
        "reader",
        executable=PyFunc(
            pyfuncs.reads,
            kwargs={"artifacts": {"many": [a.stdout_artifact, b.stdout_artifact]}, "single": b.stdout_artifact},
        ),
    )
    run_workflow(Node("root", parallel=True, children=[reader, a, b]))
    assert result_of(run_workflow, "reader") == {"nested": ["A", "B"], "single": "B"}


def test_result_artifact_can_feed_another_function(run_workflow: Runner) -> None:
    producer = Node("producer", executable=PyFunc(pyfuncs.hello))
    reader = Node(
        "reader",
        executable=PyFunc(pyfuncs.reads, args=({"many": [producer.result_artifact]}, producer.stdout_artifact)),
    )
    run_workflow(Node("root", children=[producer, reader]))
    assert result_of(run_workflow, "reader") == {"nested": ['"done"'], "single": "hello from a function\n"}


def test_unserialisable_return_value_is_reported_not_fatal(run_workflow: Runner) -> None:
    engine = run_workflow(Node("f", executable=PyFunc(pyfuncs.returns_object)))
    assert engine.result is not None
    assert engine.result["f"].status is NodeStatus.SUCCEEDED
    assert "result" not in engine.result["f"].artifacts
    assert b"not JSON-serialisable" in artifact(run_workflow, "f", "stderr")


def test_function_sees_an_empty_stdin(run_workflow: Runner) -> None:
    run_workflow(Node("f", executable=PyFunc(pyfuncs.reads_stdin)))
    assert result_of(run_workflow, "f") == ""


def test_function_timeout_keeps_its_output(run_workflow: Runner) -> None:
    engine = run_workflow(Node("f", executable=PyFunc(pyfuncs.sleeps, timeout=1)))
    assert engine.result is not None
    assert engine.result["f"].status is NodeStatus.TIMED_OUT
    assert artifact(run_workflow, "f", "stdout") == b"sleeping\n"


def test_function_timeout_kills_its_process(run_workflow: Runner, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    engine = run_workflow(Node("f", executable=PyFunc(pyfuncs.sleeps_noting_its_pid, args=(str(pid_file),), timeout=1)))
    assert engine.result is not None
    assert engine.result["f"].status is NodeStatus.TIMED_OUT
    assert not process_alive(int(pid_file.read_text()))


def test_unpicklable_argument_fails_the_node_clearly(run_workflow: Runner) -> None:
    engine = run_workflow(Node("f", executable=PyFunc(pyfuncs.hello, args=(lambda: None,))))
    assert engine.result is not None
    assert engine.result["f"].status is NodeStatus.FAILED
    assert b"cannot send the arguments" in artifact(run_workflow, "f", "stderr")


MAIN_SCRIPT = """
import wtflow

def shout(word):
    print(word.upper())
    return len(word)

if __name__ == "__main__":
    wf = wtflow.Workflow("wf", wtflow.Node("n", executable=wtflow.PyFunc(shout, args=("hey",))))
    engine = wtflow.Engine(wf)
    code = engine.run()
    print("result:", engine.result["n"].artifacts["result"].data.decode())
    raise SystemExit(code)
"""


def test_functions_defined_in_a_scripts_main_work(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(MAIN_SCRIPT)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, "HEY\nresult: 3\n", "")


EDITED_BETWEEN_RUNS = """
import asyncio, pathlib, sys
import wtflow
from wtflow.executors.pyfunc import PyFuncExecutor

VERSION = 1

def version():
    print("version", VERSION)

class Kept(PyFuncExecutor):
    async def aclose(self):
        pass  # kept for the next run, as a worker keeps it

async def twice(executor):
    for _ in range(2):
        wf = wtflow.Workflow("wf", wtflow.Node("n", executable=wtflow.PyFunc(version)))
        await wtflow.Engine(wf, observers=[], executor=executor).run_async()
        here = pathlib.Path(__file__)
        here.write_text(here.read_text().replace("VERSION = 1", "VERSION = 2"))
    await PyFuncExecutor.aclose(executor)

if __name__ == "__main__":
    asyncio.run(twice(Kept(serve_main=sys.argv[1] == "yes")))
"""


@pytest.mark.parametrize(("serve_main", "seen"), [("yes", "version 1\nversion 1\n"), ("no", "version 1\nversion 2\n")])
def test_an_executor_that_outlives_a_run_can_start_main_functions_from_the_script_as_it_is_now(
    tmp_path: Path, serve_main: str, seen: str
) -> None:
    """As a Dask worker's does (serve_main=False): its fork server would keep the script it loaded first."""
    script = tmp_path / "flow.py"
    script.write_text(EDITED_BETWEEN_RUNS)
    env = {**os.environ, "WTFLOW_ARTIFACTS_DIR": str(tmp_path / "artifacts"), "WTFLOW_DB_URL": ""}
    done = subprocess.run(
        [sys.executable, str(script), serve_main], capture_output=True, text=True, cwd=tmp_path, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    printed = b"".join(path.read_bytes() for path in sorted((tmp_path / "artifacts").glob("*/n/stdout.log")))
    assert printed.decode() == seen


def test_functions_of_a_main_module_run_with_dash_m_work(tmp_path: Path) -> None:
    (tmp_path / "mymod.py").write_text(MAIN_SCRIPT)
    done = subprocess.run([sys.executable, "-m", "mymod"], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, "HEY\nresult: 3\n", "")


def test_functions_from_an_interactive_main_are_refused_with_advice() -> None:
    code = "import wtflow\ndef f(): pass\nwtflow.PyFunc(f)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert "is defined in an interactive session" in done.stderr


@pytest.mark.parametrize("name", ["stdout", "stderr"])
def test_example_reader_gets_bytes(run_workflow: Runner, name: str) -> None:
    source = Node("source", executable=Command("echo out; echo err >&2"))
    reader = Node("reader", executable=PyFunc(pyfuncs.reads, args=({"many": []}, source.artifact(name))))
    run_workflow(Node("root", children=[source, reader]))
    assert result_of(run_workflow, "reader") == {"nested": [], "single": "out\n" if name == "stdout" else "err\n"}


def test_functions_also_run_without_the_fork_server(run_workflow: Runner, tmp_path: Path) -> None:
    from wtflow import Config, Engine, StorageConfig, Workflow
    from wtflow.executors.pyfunc import PyFuncExecutor

    executor = PyFuncExecutor(fork_server=False)
    workflow = Workflow("wf", Node("f", executable=PyFunc(pyfuncs.low_level_output)))
    engine = Engine(workflow, Config(storage=StorageConfig(tmp_path)), observers=[], executor=executor)
    assert engine.run() == 0
    assert engine.result is not None
    assert engine.result["f"].artifacts["stdout"].data == b"fd one\nfrom C\nfrom a subprocess\n"


def test_fork_server_is_gone_after_the_run(run_workflow: Runner) -> None:
    before = _forkservers()
    run_workflow(Node("f", executable=PyFunc(pyfuncs.hello)))
    assert _forkservers() == before


def _forkservers() -> set[int]:
    found = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if b"forkserver_main.py" in (proc / "cmdline").read_bytes():
                    found.add(int(proc.name))
            except OSError:
                continue
    return found


def test_each_function_sees_its_own_nodes_environment(run_workflow: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WTFLOW_TEST_COLOUR", "outer")  # what the fork server starts with

    def reader(name: str, variable: str, env: dict[str, str] | None = None) -> Node:
        return Node(name, executable=PyFunc(pyfuncs.environment_value, args=(variable,), env=env))

    colour = "WTFLOW_TEST_COLOUR"
    run_workflow(
        Node(
            "root",
            children=[
                reader("red", colour, {colour: "red"}),
                reader("blue", colour, {colour: "blue"}),
                reader("plain", colour),
                reader("named", "WTFLOW_NODE"),
            ],
        )
    )
    assert [result_of(run_workflow, n) for n in ("red", "blue", "plain", "named")] == ["red", "blue", "outer", "named"]


_SILENT_SERVER = """
import os, socket, sys
sys.path.insert(0, {executors!r})  # as for the real server, run as a script beside its modules
import forkserver_main as server
sock = socket.socket(fileno=int(sys.argv[1]))
header, fds = server._receive(sock)
for fd in fds:
    os.close(fd)
server._send(sock, ("loaded", 0, None))
while True:  # takes jobs, forks nothing, answers nothing
    job, fds = server._receive(sock)
"""


def test_a_fork_server_that_stops_answering_is_killed_and_the_function_runs_the_slow_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wtflow import Config, Engine, StorageConfig, Workflow
    from wtflow.executors import forkserver
    from wtflow.executors.pyfunc import PyFuncExecutor

    silent = tmp_path / "silent_server.py"
    silent.write_text(_SILENT_SERVER.format(executors=str(Path(forkserver.SERVER).parent)))
    monkeypatch.setattr(forkserver, "SERVER", str(silent))
    monkeypatch.setattr(forkserver, "REPLY_TIMEOUT", 0.5)
    workflow = Workflow("wf", Node("f", executable=PyFunc(pyfuncs.hello)))
    engine = Engine(workflow, Config(storage=StorageConfig(tmp_path / "runs")), observers=[], executor=PyFuncExecutor())
    assert engine.run() == 0
    assert engine.result is not None
    assert engine.result["f"].artifacts["stdout"].data == b"hello from a function\n"
    assert not [pid for pid in _silent_servers(silent) if process_alive(pid)]


def test_the_silent_fork_server_of_these_tests_serves_until_its_socket_closes(tmp_path: Path) -> None:
    """So the test above sees a server that stops answering, not one that failed to start."""
    from wtflow.executors import forkserver

    silent = tmp_path / "silent_server.py"
    silent.write_text(_SILENT_SERVER.format(executors=str(Path(forkserver.SERVER).parent)))
    ours, theirs = socket.socketpair()
    with ours:
        process = subprocess.Popen([sys.executable, str(silent), str(theirs.fileno())], pass_fds=(theirs.fileno(),))
        theirs.close()
        body = pickle.dumps({"sys_path": sys.path})
        sink = os.open(os.devnull, os.O_WRONLY)  # where loading the main module would print
        socket.send_fds(ours, [struct.pack("!I", len(body))], [sink, sink])
        os.close(sink)
        ours.sendall(body)
        (length,) = struct.unpack("!I", ours.recv(4))
        assert pickle.loads(ours.recv(length)) == ("loaded", 0, None)  # noqa: S301 - the test's own server
        assert process.poll() is None
    assert process.wait(timeout=30) != 0  # it ends once its socket closes


def _silent_servers(script: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(script).encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found
