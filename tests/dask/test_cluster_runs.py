"""Workflows run on a real Dask cluster: through the CLI with YAML files and through the Python API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import cli
from tests.dask import funcs
from tests.dask.conftest import Cluster, processes_with, run_json, start_run
from wtflow import Command, Config, Engine, Node, PyFunc, StorageConfig, Workflow
from wtflow.config import DaskConfig
from wtflow.events import BaseObserver, Event, NodeOutput


def _write(workdir: Path, text: str, name: str = "wtflow.yml") -> Path:
    path = workdir / name
    path.write_text(text)
    return path


FILE = """
name: on-dask
env: {{MARK: {marker}}}
nodes:
  - name: setup
    runs_on: local
    command: mkdir -p sub
  - name: build
    needs: setup
    working_directory: sub
    env: {{GREETING: hello}}
    command: |
      echo "$GREETING from $(pwd)"; echo version=1.2 >> "$WTFLOW_OUTPUT"; echo "## built" >> "$WTFLOW_STEP_SUMMARY"
  - name: fails
    needs: build
    continue_on_error: true
    command: 'echo "got ${{{{ needs.build.outputs.version }}}}"; echo oops >&2; exit 7'
  - name: after-failure
    needs: fails
    if: needs.fails.result == 'failure'
    command: echo saw the failure
  - name: never
    needs: fails
    if: false
    command: echo never
  - name: function
    needs: build
    function: shared:double
    args: [21]
"""


def test_yaml_workflow_runs_on_the_workers_as_it_would_here(workdir: Path, cluster: Cluster, marker: str) -> None:
    """Environment, working directory, outputs, summary, exit codes, conditions, functions; workers recorded."""
    _write(workdir, FILE.format(marker=marker))
    (workdir / "shared.py").write_text("def double(n):\n    print('doubling', n)\n    return {'value': n * 2}\n")
    result = cli("run", "--dask-scheduler", cluster.address, "--log-format", "json")
    assert result.exit_code == 0, result.output
    nodes = run_json(workdir)["nodes"]
    workers = {worker.address for worker in cluster.workers.values()}
    assert nodes["setup"]["worker"] is None  # runs_on: local
    for name in ("build", "fails", "after-failure", "function"):
        assert nodes[name]["worker"] in workers, name
    assert nodes["never"]["status"] == "skipped"
    assert (nodes["fails"]["status"], nodes["fails"]["exit_code"]) == ("failed", 7)
    assert nodes["after-failure"]["status"] == "succeeded"
    assert nodes["build"]["outputs"] == {"version": "1.2"}
    assert nodes["function"]["outputs"] == {"value": "42"}
    run_dir = Path(nodes["build"]["artifacts"]["stdout"]["path"]).parent.parent
    assert (run_dir / "build" / "stdout.log").read_text() == f"hello from {(workdir / 'sub').resolve()}\n"
    assert (run_dir / "build" / "summary.md").read_text() == "## built\n"
    assert (run_dir / "fails" / "stdout.log").read_text() == "got 1.2\n"
    assert (run_dir / "fails" / "stderr.log").read_text() == "oops\n"
    assert json.loads((run_dir / "function" / "result.json").read_text()) == {"value": 42}
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    finished = {e["node"]: e for e in events if e["event"] == "node_finished"}
    assert finished["build"]["worker"] == nodes["build"]["worker"]
    assert "worker" not in finished["setup"]


def test_runs_show_has_a_worker_column_for_a_run_on_a_cluster(workdir: Path, cluster: Cluster) -> None:
    _write(
        workdir,
        "name: w\nnodes:\n  - {name: here, command: 'true', runs_on: local}\n  - {name: there, command: 'true'}\n",
    )
    ran = cli("run", "--dask-scheduler", cluster.address)
    assert ran.exit_code == 0, ran.output
    shown = cli("runs", "show")
    assert shown.exit_code == 0, shown.output
    rows = {line.split()[0]: line.split() for line in shown.output.splitlines()[5:] if line.strip()}
    assert rows["NODE"][4] == "WORKER"
    assert rows["w/here"][4] == "-"
    assert rows["w/there"][4] in {worker.address for worker in cluster.workers.values()}


def test_a_gpu_node_runs_on_the_gpu_worker_and_a_function_there_reads_output_made_on_the_other(
    tmp_path: Path, cluster: Cluster
) -> None:
    """Placement by resources, and an artifact passed between two workers (through the shared run directory)."""
    produce = Node("produce", Command("echo payload-from-the-gpu"), resources={"GPU": 1})
    consume = Node(
        "consume", PyFunc(funcs.shout, args=(produce.stdout_artifact,)), needs=["produce"], resources={"PLAIN": 1}
    )
    config = Config(storage=StorageConfig(tmp_path / "artifacts"), dask=DaskConfig(scheduler=cluster.address))
    engine = Engine(Workflow("passing", Node("root", children=[produce, consume])), config, observers=[])
    assert engine.run() == 0
    assert engine.result is not None
    assert engine.result["produce"].worker == cluster.workers["gpu"].address
    assert engine.result["consume"].worker == cluster.workers["plain"].address
    assert engine.result["consume"].artifacts["result"].text() == '{"shouted": "PAYLOAD-FROM-THE-GPU"}'
    assert engine.result["consume"].artifacts["stdout"].text() == "read PAYLOAD-FROM-THE-GPU\n"


class _MarkerOnLine(BaseObserver):
    """Creates the marker file once the node's first line has reached the runner."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker
        self.seen: list[bytes] = []

    def notify(self, event: Event) -> None:
        if isinstance(event, NodeOutput):
            self.seen.append(event.data)
            if b"waiting for the marker" in event.data:
                self.marker.touch()


def test_output_streams_back_while_the_node_runs(tmp_path: Path, cluster: Cluster) -> None:
    """The node waits for a file the runner creates only once it has seen the node's first line."""
    marker = tmp_path / "marker"
    watcher = _MarkerOnLine(marker)
    node = Node("waits", PyFunc(funcs.wait_for_marker, args=(str(marker),), timeout=60))
    config = Config(storage=StorageConfig(tmp_path / "artifacts"), dask=DaskConfig(scheduler=cluster.address))
    engine = Engine(Workflow("streaming", node), config, observers=[watcher])
    assert engine.run() == 0, engine.result
    assert engine.result is not None
    assert engine.result["waits"].worker is not None
    assert watcher.seen == [b"waiting for the marker\n"]


SLEEPER = """
name: slow
env: {{MARK: {marker}}}
nodes:
  - name: sleeper
    command: "trap 'echo stopping; exit 3' TERM; sleep 300 & sleep 300 & echo started; wait"
"""


def test_ctrl_c_stops_the_node_and_its_processes_on_the_worker(
    workdir: Path, cluster: Cluster, marker: str, started: list[subprocess.Popen[bytes]]
) -> None:
    _write(workdir, SLEEPER.format(marker=marker))
    process = start_run(workdir, cluster, started, "--kill-grace", "20")
    assert process.stdout is not None
    assert process.stdout.readline() == b"started\n"  # streamed while the node runs
    assert len(processes_with(marker)) == 3  # the shell and its two sleeps, on a worker
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr.decode()
    assert stdout == b"stopping\n"  # the node's TERM trap ran, and its last words came back
    assert processes_with(marker) == []
    assert run_json(workdir)["nodes"]["sleeper"]["status"] == "cancelled"


def test_a_second_ctrl_c_kills_the_node_on_the_worker_at_once(
    workdir: Path, cluster: Cluster, marker: str, started: list[subprocess.Popen[bytes]]
) -> None:
    """A node that ignores SIGTERM is killed by the second signal, long before its grace period ends."""
    _write(
        workdir,
        f"name: stubborn\nenv: {{MARK: {marker}}}\nnodes:\n  - name: sleeper\n"
        "    command: \"trap 'echo ignoring' TERM; echo started; while :; do sleep 1 & wait $!; done\"\n",
    )
    process = start_run(workdir, cluster, started, "--kill-grace", "300")
    assert process.stdout is not None
    assert process.stdout.readline() == b"started\n"
    process.send_signal(signal.SIGINT)
    assert process.stdout.readline() == b"ignoring\n"  # the worker sent SIGTERM
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr.decode()
    assert processes_with(marker) == []


def test_a_timeout_stops_the_node_and_its_processes_on_the_worker(workdir: Path, cluster: Cluster, marker: str) -> None:
    _write(
        workdir,
        f"name: t\nenv: {{MARK: {marker}}}\nnodes:\n"
        "  - {name: slow, timeout: 1s, command: 'sleep 300 & echo started; wait'}\n",
    )
    result = cli("run", "--dask-scheduler", cluster.address, "--kill-grace", "2", "--db-url", "")
    assert result.exit_code == 1, result.output
    node = run_json(workdir)["nodes"]["slow"]
    assert (node["status"], node["error"]) == ("timed_out", "timed out after 1s")
    assert node["worker"] is not None
    assert processes_with(marker) == []


def test_retries_run_again_on_the_cluster(workdir: Path, cluster: Cluster) -> None:
    _write(
        workdir,
        "name: r\nnodes:\n  - name: flaky\n    retries: 2\n"
        "    command: 'if [ -e tried ]; then echo second; else touch tried; exit 4; fi'\n",
    )
    result = cli("run", "--dask-scheduler", cluster.address, "--db-url", "")
    assert result.exit_code == 0, result.output
    node = run_json(workdir)["nodes"]["flaky"]
    assert (node["status"], node["attempts"]) == ("succeeded", 2)


def test_dask_local_starts_a_cluster_of_worker_processes_here(workdir: Path) -> None:
    _write(workdir, "name: l\nnodes:\n  - {name: a, command: 'echo on $WTFLOW_NODE'}\n  - {name: b, command: 'true'}\n")
    process = subprocess.run(
        [sys.executable, "-m", "wtflow", "run", "--dask-local", "2"],
        cwd=workdir,
        env={**os.environ, "WTFLOW_DB_URL": "", "WTFLOW_LOG_FORMAT": "console"},
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert process.returncode == 0, process.stderr.decode()
    assert b"[a] on a\n" in process.stdout
    nodes = run_json(workdir)["nodes"]
    assert all(nodes[name]["worker"].startswith("tcp://127.0.0.1:") for name in ("a", "b"))
    assert b"Traceback" not in process.stderr


def test_ctrl_c_in_a_terminal_stops_a_local_cluster_run_without_a_traceback(workdir: Path) -> None:
    """A terminal's Ctrl-C goes to the whole foreground process group: the runner and its workers."""
    _write(workdir, "name: c\nnodes:\n  - {name: a, command: 'echo started; sleep 60'}\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "wtflow", "run", "--dask-local", "1", "--output", "prefixed"],
        cwd=workdir,
        env={**os.environ, "WTFLOW_DB_URL": "", "WTFLOW_LOG_FORMAT": "console"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # a group of its own, as a terminal's foreground job has
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"[a] started\n"
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, stderr.decode()
    assert b"Traceback" not in stderr, stderr.decode()
    assert run_json(workdir)["nodes"]["a"]["status"] == "cancelled"


def test_dask_local_workers_also_run_the_preloads_the_users_dask_configuration_names(workdir: Path) -> None:
    (workdir / "userpre.py").write_text(
        "import os\n\ndef dask_setup(worker):\n    open(os.environ['PRELOAD_MARK'], 'a').write('loaded\\n')\n"
    )
    _write(workdir, "name: p\nnodes:\n  - {name: a, command: 'true'}\n")
    process = subprocess.run(
        [sys.executable, "-m", "wtflow", "run", "--dask-local", "1"],
        cwd=workdir,
        env={
            **os.environ,
            "WTFLOW_DB_URL": "",
            "PRELOAD_MARK": str(workdir / "preloaded"),
            "DASK_DISTRIBUTED__WORKER__PRELOAD": json.dumps([str(workdir / "userpre.py")]),
            "DASK_DISTRIBUTED__WORKER__PRELOAD_ARGV": "[[]]",
        },
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert process.returncode == 0, process.stderr.decode()
    assert (workdir / "preloaded").read_text() == "loaded\n"


def test_an_unreachable_scheduler_exits_3_naming_it_before_any_node_runs(workdir: Path) -> None:
    _write(
        workdir,
        "name: u\nnodes:\n  - {name: a, command: 'touch ran', runs_on: local}\n  - {name: b, command: 'true'}\n",
    )
    address = "tcp://127.0.0.1:9"  # the discard port: nothing listens there
    result = cli("run", "--dask-scheduler", address, "--dask-wait", "1s", "--db-url", "")
    assert result.exit_code == 3, result.output
    assert f"the Dask scheduler at {address} cannot be reached" in result.output
    assert not (workdir / "ran").exists()
    assert not (workdir / ".wtflow" / "artifacts").exists() or not any((workdir / ".wtflow" / "artifacts").iterdir())


def test_a_node_needing_resources_no_worker_has_fails_after_the_wait(workdir: Path, cluster: Cluster) -> None:
    _write(
        workdir,
        "name: res\nmax_fail: 1\nnodes:\n  - {name: tpu, command: 'true', resources: {TPU: 2}}\n"
        "  - {name: cpu, command: 'echo fine'}\n",
    )
    result = cli("run", "--dask-scheduler", cluster.address, "--dask-wait", "2s", "--db-url", "")
    assert result.exit_code == 1, result.output
    nodes = run_json(workdir)["nodes"]
    assert nodes["cpu"]["status"] == "succeeded"
    assert nodes["tpu"]["status"] == "failed"
    error = nodes["tpu"]["error"]
    assert error.startswith("no worker of the Dask cluster has the resources TPU=2 the node needs (waited 2s")
    assert f"{cluster.workers['gpu'].address}: GPU=1" in error


def test_a_busy_resource_is_waited_for_not_failed(workdir: Path, cluster: Cluster) -> None:
    """Two nodes that need the one GPU run one after the other, however short the wait."""
    _write(
        workdir,
        "name: busy\nnodes:\n"
        "  - {name: first, command: 'sleep 2', resources: {GPU: 1}}\n"
        "  - {name: second, command: 'sleep 2', resources: {GPU: 1}}\n",
    )
    result = cli("run", "--dask-scheduler", cluster.address, "--dask-wait", "1s", "--db-url", "")
    assert result.exit_code == 0, result.output


def test_runs_on_dask_without_a_cluster_is_a_usage_error(workdir: Path) -> None:
    _write(workdir, "name: n\nnodes:\n  - {name: a, command: 'touch ran', runs_on: dask}\n")
    result = cli("run", "--db-url", "")
    assert result.exit_code == 2, result.output
    assert "node 'a' runs on Dask (runs_on: dask), but no Dask cluster is configured" in result.output
    assert not (workdir / "ran").exists()


@pytest.mark.docker
def test_a_container_node_runs_on_a_worker_with_a_docker_engine(workdir: Path, cluster: Cluster) -> None:
    from tests.docker.conftest import missing_backend
    from wtflow.errors import BackendUnavailable
    from wtflow.executors import container

    try:
        container.client().close()
    except BackendUnavailable as exc:
        missing_backend(f"no docker engine: {exc}", "WTFLOW_REQUIRE_DOCKER")
    image = os.environ.get("WTFLOW_TEST_IMAGE")
    if not image:
        missing_backend("WTFLOW_TEST_IMAGE is not set (../shared/tools/docker-up --env)", "WTFLOW_REQUIRE_DOCKER")
    _write(
        workdir,
        f"name: c\nnodes:\n  - name: boxed\n    container: {{image: {image}, network: none}}\n"
        "    command: 'echo in a container; exit 5'\n",
    )
    result = cli("run", "--dask-scheduler", cluster.address, "--db-url", "")
    assert result.exit_code == 1, result.output
    node = run_json(workdir)["nodes"]["boxed"]
    assert (node["exit_code"], node["worker"] is not None) == (5, True)
    run_dir = Path(node["artifacts"]["stdout"]["path"]).parent
    assert (run_dir / "stdout.log").read_text() == "in a container\n"
