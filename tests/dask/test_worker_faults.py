"""A worker that dies under a node: the node fails naming it, or is retried on another worker."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.conftest import wait_for
from tests.dask.conftest import Cluster, DaskProcess, parent_of, processes_with

# Prints, then ticks until its output pipe breaks: once its worker is gone, it ends by itself.
TICKING = "echo started; while :; do echo tick; sleep 0.1; done"


def _start(
    workdir: Path, cluster: Cluster, text: str, started: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    (workdir / "wtflow.yml").write_text(text)
    process = subprocess.Popen(
        [sys.executable, "-m", "wtflow", "run", "--dask-scheduler", cluster.address, "--output", "interleaved"],
        cwd=workdir,
        env={**os.environ, "WTFLOW_DB_URL": "", "WTFLOW_LOG_FORMAT": "console"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    started.append(process)
    return process


def _kill_the_worker_running(marker: str, workers: list[DaskProcess]) -> DaskProcess:
    """SIGKILL the worker whose child is the node's process (found by its marker).

    Found by parent, not by command line: a process the node's shell has forked but not yet
    replaced by ``sleep`` is a shell with the marker too.
    """
    by_pid = {worker.pid: worker for worker in workers}
    parents = set()
    for pid in processes_with(marker):
        with contextlib.suppress(OSError):  # ended meanwhile (one of the node's sleeps)
            parents.add(parent_of(pid))
    (worker_pid,) = parents & by_pid.keys()
    worker = by_pid[worker_pid]
    worker.kill()
    return worker


def _run_json(workdir: Path) -> dict:  # type: ignore[type-arg]
    (found,) = (workdir / ".wtflow" / "artifacts").glob("*/run.json")
    return json.loads(found.read_text())  # type: ignore[no-any-return]


def test_a_worker_killed_mid_node_fails_the_node_naming_the_worker(
    workdir: Path,
    cluster: Cluster,
    spare_workers: Callable[[int], list[DaskProcess]],
    marker: str,
    started: list[subprocess.Popen[bytes]],
) -> None:
    workers = spare_workers(1)
    process = _start(
        workdir,
        cluster,
        f"name: k\nenv: {{MARK: {marker}}}\nnodes:\n"
        f"  - {{name: victim, resources: {{SPARE: 1}}, command: '{TICKING}'}}\n",
        started,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == b"started\n"
    killed = _kill_the_worker_running(marker, workers)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1, stderr.decode()
    node = _run_json(workdir)["nodes"]["victim"]
    assert node["status"] == "failed"
    assert node["worker"] == killed.address
    assert node["error"].startswith(f"lost worker {killed.address} while the node ran: the worker died")
    wait_for(lambda: processes_with(marker) == [], seconds=30)  # its output pipe broke


def test_a_worker_killed_mid_node_is_retried_on_another_worker(
    workdir: Path,
    cluster: Cluster,
    spare_workers: Callable[[int], list[DaskProcess]],
    marker: str,
    started: list[subprocess.Popen[bytes]],
) -> None:
    workers = spare_workers(2)
    command = f"if [ -e tried ]; then echo second try; else touch tried; {TICKING}; fi"
    process = _start(
        workdir,
        cluster,
        f"name: k\nenv: {{MARK: {marker}}}\nnodes:\n"
        f"  - {{name: victim, retries: 1, resources: {{SPARE: 1}}, command: '{command}'}}\n",
        started,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == b"started\n"
    killed = _kill_the_worker_running(marker, workers)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr.decode()
    node = _run_json(workdir)["nodes"]["victim"]
    (other,) = (worker for worker in workers if worker is not killed)
    assert (node["status"], node["attempts"], node["worker"]) == ("succeeded", 2, other.address)
    (events,) = (workdir / ".wtflow" / "artifacts").glob("*/events.jsonl")
    retried = [e for e in map(json.loads, events.read_text().splitlines()) if e["event"] == "node_retrying"]
    assert retried[0]["error"].startswith(f"lost worker {killed.address}")
