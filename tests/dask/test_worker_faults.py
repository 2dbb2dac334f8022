"""A worker that dies under a node: the node fails naming it, or is retried on another worker."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import wait_for
from tests.dask.conftest import Cluster, DaskProcess, parent_of, processes_with, run_json, start_run

# Prints, then ticks until its output pipe breaks: once its worker is gone, it ends by itself.
TICKING = "echo started; while :; do echo tick; sleep 0.1; done"


def _kill_its_worker_mid_node(
    workdir: Path,
    cluster: Cluster,
    started: list[subprocess.Popen[bytes]],
    marker: str,
    *,
    victim: str,
    workers: list[DaskProcess],
) -> tuple[int, str, DaskProcess]:
    """Run the one node ``victim`` (a flow mapping), SIGKILL its worker once it has printed.

    How the run ended: ``(exit code, stderr, the worker killed)``.
    """
    process = _run_until_it_printed(workdir, cluster, started, marker, victim)
    killed = _kill_the_worker_running(marker, workers)
    _, stderr = process.communicate(timeout=60)
    return process.returncode, stderr.decode(), killed


def _run_until_it_printed(
    workdir: Path, cluster: Cluster, started: list[subprocess.Popen[bytes]], marker: str, victim: str
) -> subprocess.Popen[bytes]:
    """Start a run of the one node ``victim`` (a flow mapping, ``MARK`` set); return once it printed ``started``."""
    (workdir / "wtflow.yml").write_text(f"name: k\nenv: {{MARK: {marker}}}\nnodes:\n  - {victim}\n")
    process = start_run(workdir, cluster, started, "--output", "interleaved")
    assert process.stdout is not None
    assert process.stdout.readline() == b"started\n"
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


def test_a_worker_killed_mid_node_fails_the_node_naming_the_worker(
    workdir: Path,
    cluster: Cluster,
    spare_workers: Callable[[int], list[DaskProcess]],
    marker: str,
    started: list[subprocess.Popen[bytes]],
) -> None:
    victim = f"{{name: victim, resources: {{SPARE: 1}}, command: '{TICKING}'}}"
    workers = spare_workers(1)
    code, stderr, killed = _kill_its_worker_mid_node(workdir, cluster, started, marker, victim=victim, workers=workers)
    assert code == 1, stderr
    node = run_json(workdir)["nodes"]["victim"]
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
    victim = f"{{name: victim, retries: 1, resources: {{SPARE: 1}}, command: '{command}'}}"
    code, stderr, killed = _kill_its_worker_mid_node(workdir, cluster, started, marker, victim=victim, workers=workers)
    assert code == 0, stderr
    node = run_json(workdir)["nodes"]["victim"]
    (other,) = (worker for worker in workers if worker is not killed)
    assert (node["status"], node["attempts"], node["worker"]) == ("succeeded", 2, other.address)
    (events,) = (workdir / ".wtflow" / "artifacts").glob("*/events.jsonl")
    retried = [e for e in map(json.loads, events.read_text().splitlines()) if e["event"] == "node_retrying"]
    assert retried[0]["error"].startswith(f"lost worker {killed.address}")


def _sigterm_its_worker_mid_node(
    workdir: Path,
    cluster: Cluster,
    started: list[subprocess.Popen[bytes]],
    marker: str,
    *,
    victim: str,
    worker: DaskProcess,
) -> None:
    """Run the one node ``victim`` (a flow mapping) on ``worker``, SIGTERM the worker once it has printed.

    Then the run fails, the worker ends, no process of the node is left, and the node says why.
    """
    process = _run_until_it_printed(workdir, cluster, started, marker, victim)
    assert processes_with(marker)  # the node's processes, on the worker
    os.kill(worker.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1, stderr.decode()
    wait_for(lambda: not worker.alive, seconds=30)
    assert processes_with(marker) == []
    node = run_json(workdir)["nodes"]["victim"]
    assert (node["status"], node["error"]) == ("failed", f"worker {worker.address} was shut down while the node ran")


def test_a_worker_shut_down_with_sigterm_stops_its_nodes_processes_first(
    workdir: Path,
    cluster: Cluster,
    spare_workers: Callable[[int], list[DaskProcess]],
    marker: str,
    started: list[subprocess.Popen[bytes]],
) -> None:
    """As systemd, Kubernetes or an autoscaler stop a worker: the node's processes do not outlive it."""
    (worker,) = spare_workers(1)
    victim = "{name: victim, resources: {SPARE: 1}, command: 'echo started; exec sleep 600'}"
    _sigterm_its_worker_mid_node(workdir, cluster, started, marker, victim=victim, worker=worker)


def test_a_worker_under_its_nanny_shut_down_with_sigterm_kills_a_node_that_ignores_sigterm(
    workdir: Path, cluster: Cluster, marker: str, started: list[subprocess.Popen[bytes]]
) -> None:
    """``dask worker``'s default: a nanny, which gives its worker process 8 s to close."""
    worker = cluster.start_worker("nannied", "--nthreads", "1", "--resources", "NANNIED=1")
    try:
        cluster.wait_for_workers(worker)
        victim = "{name: victim, resources: {NANNIED: 1}, command: 'trap \"\" TERM; echo started; sleep 600'}"
        _sigterm_its_worker_mid_node(workdir, cluster, started, marker, victim=victim, worker=worker)
    finally:
        worker.stop()


def _run_one(tmp_path: Path, name: str, address: str) -> str | None:
    """Run a workflow of one node ``name`` on the cluster at ``address``; the worker it ran on."""
    from wtflow import Command, Config, Engine, Node, StorageConfig, Workflow
    from wtflow.config import DaskConfig

    config = Config(storage=StorageConfig(tmp_path / "artifacts"), dask=DaskConfig(scheduler=address, wait=10))
    engine = Engine(Workflow(name, Node(name, Command("true"))), config, observers=[])
    assert engine.run() == 0, engine.result
    assert engine.result is not None
    return engine.result[name].worker


def _close_the_node_host(dask_task: Any) -> None:
    """Close the node host an in-process cluster's workers made here: it outlives them in this process."""
    host, dask_task._host = dask_task._host, None
    if host is not None:
        host.close()


def test_closing_one_of_two_workers_in_one_process_leaves_the_other_running_nodes(tmp_path: Path) -> None:
    """An in-process cluster: its workers share the process's node host, not their closing."""
    import distributed

    from wtflow.executors import dask_task

    try:
        with distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, protocol="tcp", host="127.0.0.1", dashboard_address=":0"
        ) as cluster:
            first = _run_one(tmp_path, "first", cluster.scheduler_address)  # the host made, the worker watched
            cluster.scale(2)
            cluster.wait_for_workers(2)
            (name,) = [name for name, worker in cluster.workers.items() if worker.address == first]
            cluster.sync(cluster.workers[name].close)
            cluster.wait_for_workers(1)
            assert _run_one(tmp_path, "second", cluster.scheduler_address) not in {None, first}
    finally:
        _close_the_node_host(dask_task)


def test_a_new_worker_at_a_closed_workers_address_runs_nodes(tmp_path: Path) -> None:
    """What a worker knows of its closing belongs to that worker, not to its address."""
    import distributed

    from tests.dask.conftest import free_port
    from wtflow.executors import dask_task

    port = free_port()
    try:
        with distributed.LocalCluster(
            n_workers=0, processes=False, protocol="tcp", host="127.0.0.1", dashboard_address=":0"
        ) as cluster:

            async def start() -> distributed.Worker:
                return await distributed.Worker(cluster.scheduler_address, host="127.0.0.1", port=port, nthreads=1)

            first = cluster.sync(start)
            assert _run_one(tmp_path, "first", cluster.scheduler_address) == first.address
            cluster.sync(first.close)
            second = cluster.sync(start)
            try:
                assert second.address == first.address
                assert _run_one(tmp_path, "second", cluster.scheduler_address) == second.address
            finally:
                cluster.sync(second.close)  # started here, not by the cluster, which would wait for it
    finally:
        _close_the_node_host(dask_task)
