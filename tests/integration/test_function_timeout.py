"""A function node's timeout covers its function, not the import of its module; import output is kept.

The modules here take their time only in the nodes' processes (see ``import_effects``): a slow
import sleeps 1.5 s against a timeout of 0.5 s, and the functions sleep far past both.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from tests.conftest import cli, process_alive, wait_for
from tests.integration import import_effects
from tests.integration.conftest import Runner
from wtflow import Config, Engine, Node, NodeResult, NodeStatus, PyFunc, RunConfig, StorageConfig, Workflow
from wtflow.executors.pyfunc import PyFuncExecutor

SLOW_IMPORT = {"WTFLOW_TEST_IMPORT_SAYS": "imported", "WTFLOW_TEST_IMPORT_SLEEP": "1.5"}
# The import limit of the tests of imports that hang: ample time for a process to start and print.
HANG_LIMIT = 5.0
# How the function's process starts: forked by the fork server, or a fresh interpreter.
STARTS = pytest.mark.parametrize("fork_server", [True, False], ids=["fork-server", "fresh-process"])


def run_function(tmp_path: Path, function: PyFunc, *, fork_server: bool, import_limit: float = 60.0) -> NodeResult:
    """Run one function node to its end and give back how it ended."""
    executor = PyFuncExecutor(fork_server=fork_server, import_limit=import_limit)
    config = Config(storage=StorageConfig(tmp_path / "artifacts"), run=RunConfig(kill_grace=2.0))
    engine = Engine(Workflow("wf", Node("f", executable=function)), config, observers=[], executor=executor)
    asyncio.run(engine.run_async())
    assert engine.result is not None
    return engine.result["f"]


@STARTS
def test_the_clock_starts_when_the_function_is_called(tmp_path: Path, fork_server: bool) -> None:
    """A module slower to import than the timeout still runs its function, which prints before it is stopped."""
    function = PyFunc(import_effects.says_hello_then_sleeps, timeout=0.5, env=SLOW_IMPORT)
    node = run_function(tmp_path, function, fork_server=fork_server)
    assert node.status is NodeStatus.TIMED_OUT
    assert node.error == "timed out after 0.5s"
    assert node.artifacts["stdout"].data == b"imported\nhello\n"


def test_the_default_executor_times_the_function_only(run_workflow: Runner) -> None:
    """Through the engine's own executor too (the fork server, where the platform can fork)."""
    engine = run_workflow(
        Node("f", executable=PyFunc(import_effects.says_hello_then_sleeps, timeout=0.5, env=SLOW_IMPORT))
    )
    assert engine.result is not None
    assert engine.result["f"].status is NodeStatus.TIMED_OUT
    assert engine.result["f"].artifacts["stdout"].data == b"imported\nhello\n"


@STARTS
def test_output_printed_while_the_module_is_imported_is_the_nodes(tmp_path: Path, fork_server: bool) -> None:
    function = PyFunc(import_effects.says_hello, env={"WTFLOW_TEST_IMPORT_SAYS": "imported"})
    node = run_function(tmp_path, function, fork_server=fork_server)
    assert node.status is NodeStatus.SUCCEEDED
    assert node.artifacts["stdout"].data == b"imported\nhello\n"
    assert node.artifacts["stderr"].data == b"imported (stderr)\n"


@STARTS
def test_an_import_that_hangs_is_stopped_at_the_import_limit(tmp_path: Path, fork_server: bool) -> None:
    pid_file = tmp_path / "pid"
    env = {"WTFLOW_TEST_IMPORT_SAYS": "importing", "WTFLOW_TEST_IMPORT_SLEEP": "300"}
    function = PyFunc(import_effects.says_hello, timeout=0.5, env={**env, "WTFLOW_TEST_IMPORT_PID_FILE": str(pid_file)})
    node = run_function(tmp_path, function, fork_server=fork_server, import_limit=HANG_LIMIT)
    assert node.status is NodeStatus.TIMED_OUT
    assert node.error is not None
    assert f"timed out after {HANG_LIMIT:g}s before the function was called" in node.error
    assert node.artifacts["stdout"].data == b"importing\n"
    assert not process_alive(int(pid_file.read_text()))


def test_cli_function_timeout_leaves_out_the_import(workdir: Path) -> None:
    (workdir / "wtflow.yml").write_text(
        textwrap.dedent(
            """
            name: slow-import
            root:
              name: f
              function: tests.integration.import_effects:says_hello_then_sleeps
              timeout: 0.5
              env: {WTFLOW_TEST_IMPORT_SAYS: imported, WTFLOW_TEST_IMPORT_SLEEP: "1.5"}
            """
        )
    )
    result = cli("run")
    assert result.exit_code == 1
    run_dir = max((workdir / ".wtflow" / "artifacts").iterdir())
    assert json.loads((run_dir / "run.json").read_text())["nodes"]["f"]["status"] == "timed_out"
    assert cli("runs", "logs", run_dir.name, "f").stdout == "imported\nhello\n"


# A script whose function the node's process finds by loading the script again as __mp_main__:
# the fork server loads it once for every node (with FORK=1), a fresh process each time (FORK=0).
MAIN_SCRIPT = """
import os
import time

if __name__ == "__mp_main__":
    print("loaded", flush=True)
    time.sleep(float(os.environ.get("LOAD_SLEEP", "0")))

import json
import sys

import wtflow
from wtflow.executors.pyfunc import PyFuncExecutor


def shout():
    print("HEY", flush=True)
    time.sleep(float(os.environ.get("CALL_SLEEP", "0")))


if __name__ == "__main__":
    timeout = float(os.environ["TIMEOUT"]) if "TIMEOUT" in os.environ else None
    workflow = wtflow.Workflow("wf", wtflow.Node("n", executable=wtflow.PyFunc(shout, timeout=timeout)))
    executor = PyFuncExecutor(fork_server=os.environ["FORK"] == "1", import_limit=float(os.environ["IMPORT_LIMIT"]))
    config = wtflow.Config(storage=wtflow.StorageConfig(sys.argv[1]))
    engine = wtflow.Engine(workflow, config, observers=[], executor=executor)
    engine.run()
    node = engine.result["n"]
    stdout = node.artifacts["stdout"].data.decode()
    print(json.dumps({"status": node.status.value, "error": node.error, "stdout": stdout}))
"""


def run_main_script(tmp_path: Path, fork_server: bool, **env: str) -> dict[str, str]:
    """Run ``MAIN_SCRIPT`` with ``env``; how its node ended. Nothing it started may outlive it."""
    script = tmp_path / "script.py"
    script.write_text(MAIN_SCRIPT)
    mark = uuid.uuid4().hex
    settings = {"FORK": "1" if fork_server else "0", "IMPORT_LIMIT": "60", "WTFLOW_TEST_MARK": mark, **env}
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "artifacts")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, **settings},
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    wait_for(lambda: not _processes_marked(mark))
    result: dict[str, str] = json.loads(done.stdout)
    return result


@STARTS
def test_output_of_loading_the_main_script_is_the_nodes(tmp_path: Path, fork_server: bool) -> None:
    node = run_main_script(tmp_path, fork_server)
    assert (node["status"], node["stdout"]) == ("succeeded", "loaded\nHEY\n")


@STARTS
def test_loading_the_main_script_is_outside_the_clock(tmp_path: Path, fork_server: bool) -> None:
    node = run_main_script(tmp_path, fork_server, LOAD_SLEEP="1.5", CALL_SLEEP="30", TIMEOUT="0.5")
    assert (node["status"], node["error"], node["stdout"]) == ("timed_out", "timed out after 0.5s", "loaded\nHEY\n")


@STARTS
def test_loading_the_main_script_that_hangs_is_stopped_at_the_import_limit(tmp_path: Path, fork_server: bool) -> None:
    """The process that hangs (the fork server itself, with FORK=1) is killed; what it printed is kept."""
    node = run_main_script(tmp_path, fork_server, LOAD_SLEEP="300", TIMEOUT="0.5", IMPORT_LIMIT=f"{HANG_LIMIT:g}")
    assert (node["status"], node["stdout"]) == ("timed_out", "loaded\n")
    assert f"timed out after {HANG_LIMIT:g}s before the function was called" in node["error"]


def _processes_marked(mark: str) -> list[int]:
    """Processes still alive whose environment holds ``WTFLOW_TEST_MARK=mark``."""
    found = []
    needle = f"WTFLOW_TEST_MARK={mark}".encode()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                marked = needle in (proc / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if marked and process_alive(int(proc.name)):
                found.append(int(proc.name))
    return found
