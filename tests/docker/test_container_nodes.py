"""Command nodes in containers, on a real engine."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EventLog
from wtflow import BackendUnavailable, Command, Config, Engine, Node, NodeStatus, RunConfig, StorageConfig, Workflow
from wtflow.executors.container import LABEL_RUN
from wtflow.model import Container

pytestmark = pytest.mark.docker


def run(tmp_path: Path, root: Node, **env: str) -> Engine:
    config = Config(storage=StorageConfig(tmp_path / "arts"), run=RunConfig(kill_grace=1))
    engine = Engine(Workflow("wf", root, env=env), config, observers=[EventLog()])
    asyncio.run(engine.run_async())
    return engine


def node(name: str, cmd: str, image: str, cwd: Path, **kwargs: Any) -> Node:
    return Node(name, executable=Command(cmd, cwd=cwd, container=Container(image=image, network="none", **kwargs)))


def leftovers(docker_client: Any, engine: Engine) -> list[Any]:
    assert engine.result is not None
    found: list[Any] = docker_client.containers.list(all=True, filters={"label": f"{LABEL_RUN}={engine.result.run_id}"})
    return found


def test_stdout_and_stderr_stay_separate_and_the_exit_code_is_the_nodes(
    tmp_path: Path, image: str, docker_client: Any
) -> None:
    engine = run(tmp_path, node("c", "echo out; echo err >&2; exit 3", image, tmp_path))
    assert engine.result is not None
    result = engine.result["c"]
    assert (result.status, result.exit_code) == (NodeStatus.FAILED, 3)
    assert result.artifacts["stdout"].data == b"out\n"
    assert result.artifacts["stderr"].data == b"err\n"
    assert leftovers(docker_client, engine) == []


def test_only_the_declared_environment_reaches_the_container(
    tmp_path: Path, image: str, docker_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOST_ONLY_SECRET", "leak")
    cmd = 'echo "[$HOST_ONLY_SECRET] $WF $OWN $WTFLOW_NODE"'
    engine = run(tmp_path, node("c", cmd, image, tmp_path, env={"OWN": "own"}), WF="wf")
    assert engine.result is not None
    assert engine.result["c"].artifacts["stdout"].data == b"[] wf own c\n"


def test_a_file_written_in_the_working_directory_is_on_the_host(tmp_path: Path, image: str, docker_client: Any) -> None:
    engine = run(tmp_path, node("c", "echo made-in-container > made.txt", image, tmp_path))
    assert engine.result is not None
    assert engine.result["c"].status is NodeStatus.SUCCEEDED
    assert (tmp_path / "made.txt").read_text() == "made-in-container\n"


def test_timeout_stops_and_removes_the_container(tmp_path: Path, image: str, docker_client: Any) -> None:
    root = Node("c", executable=Command("echo begun; sleep 300", cwd=tmp_path, timeout=1, container=Container(image)))
    engine = run(tmp_path, root)
    assert engine.result is not None
    assert engine.result["c"].status is NodeStatus.TIMED_OUT
    assert engine.result["c"].artifacts["stdout"].data == b"begun\n"
    assert leftovers(docker_client, engine) == []


def test_a_failing_sibling_cancels_and_removes_a_running_container(
    tmp_path: Path, image: str, docker_client: Any
) -> None:
    root = Node(
        "root",
        parallel=True,
        children=[
            node("sleeper", "sleep 300", image, tmp_path),
            Node("bad", executable=Command("sleep 1; exit 1", cwd=tmp_path)),
        ],
    )
    engine = run(tmp_path, root)
    assert engine.result is not None
    assert engine.result["sleeper"].status is NodeStatus.CANCELLED
    assert leftovers(docker_client, engine) == []


def test_missing_image_with_pull_never_fails_before_any_node_runs(tmp_path: Path, docker_client: Any) -> None:
    marker = tmp_path / "ran"
    root = Node(
        "root",
        children=[
            Node("first", executable=Command(f"touch {marker}")),
            Node("c", executable=Command("true", container=Container("wtflow-test/no-such-image:1", pull="never"))),
        ],
    )
    with pytest.raises(BackendUnavailable, match="is not on the docker engine and its pull policy is never"):
        run(tmp_path, root)
    assert not marker.exists()


def test_a_workflow_file_can_run_a_command_in_a_container(tmp_path: Path, image: str, docker_client: Any) -> None:
    from click.testing import CliRunner

    from wtflow.cli import main

    (tmp_path / "wtflow.yml").write_text(
        "name: c\nroot:\n  name: inside\n  command: echo $GREETING from $(cat /etc/hostname | wc -c)\n"
        f"  container: {{image: '{image}', env: {{GREETING: hi}}, network: none, pull: never}}\n"
    )
    result = CliRunner().invoke(
        main, ["run", str(tmp_path / "wtflow.yml"), "--db-url", "", "--artifacts-dir", str(tmp_path / "arts")]
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("hi from ")


def test_sigterm_to_wtflow_removes_its_running_containers(tmp_path: Path, image: str, docker_client: Any) -> None:
    import json
    import os
    import signal
    import subprocess
    import sys

    (tmp_path / "wtflow.yml").write_text(
        "name: c\nroot:\n  name: inside\n  command: echo begun; sleep 300\n"
        f"  container: {{image: '{image}', network: none, pull: never}}\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "wtflow", "run", "--db-url", "", "--kill-grace", "2"],
        cwd=tmp_path,
        env={**os.environ, "WTFLOW_LOG_FORMAT": "json"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    run_id = ""
    for line in process.stderr:
        event = json.loads(line)
        run_id = event.get("run_id", run_id)
        if event.get("line") == "begun":
            break
    assert run_id
    assert docker_client.containers.list(all=True, filters={"label": f"{LABEL_RUN}={run_id}"}) != []
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    assert process.returncode == 143
    assert docker_client.containers.list(all=True, filters={"label": f"{LABEL_RUN}={run_id}"}) == []


def test_no_reachable_engine_fails_before_any_node_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    marker = tmp_path / "ran"
    root = Node(
        "root",
        children=[
            Node("first", executable=Command(f"touch {marker}")),
            Node("c", executable=Command("true", container=Container("busybox"))),
        ],
    )
    with pytest.raises(BackendUnavailable, match="the docker engine is unavailable"):
        run(tmp_path, root)
    assert not marker.exists()
