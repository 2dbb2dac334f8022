"""A real Dask cluster on 127.0.0.1: a scheduler and two workers, one of them with a GPU (``GPU=1``).

Started once for the tests of this directory with the ``dask`` command that comes with
distributed, each process in a process group of its own, and torn down by killing the groups.
They are not children of the test process: a ``wtflow run`` in this process (``cli``) stops the
children it adopted when its run ends, as it should, and these must outlive it.
Tests that kill workers get spare workers of their own (:func:`spare_workers`). Without
distributed the tests skip, saying why, unless ``WTFLOW_REQUIRE_DASK=1`` (``.ci/run``) makes
that a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import missing_backend, process_alive, wait_for

DASK = Path(sys.executable).with_name("dask")
_STARTED = re.compile(r"Start worker at:\s+(tcp://\S+)")
_REGISTERED = re.compile(r"Register worker addr: (tcp://\S+)")


# Starts the command in a session of its own, prints its pid and exits: the command is orphaned.
_LAUNCH = (
    "import subprocess, sys\n"
    "with open(sys.argv[1], 'wb') as log:\n"
    "    print(subprocess.Popen(sys.argv[3:], stdout=log, stderr=subprocess.STDOUT, cwd=sys.argv[2],"
    " start_new_session=True).pid)\n"
)


@dataclass
class DaskProcess:
    """A ``dask`` process we started (leading its process group), its log, and a worker's address once it is up."""

    pid: int
    log: Path
    address: str = ""

    @classmethod
    def launch(cls, log: Path, cwd: Path, *argv: str) -> DaskProcess:
        launched = subprocess.run(
            [sys.executable, "-c", _LAUNCH, str(log), str(cwd), *argv], capture_output=True, check=True
        )
        return cls(int(launched.stdout), log)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    @property
    def alive(self) -> bool:
        return process_alive(self.pid)

    def kill(self) -> None:
        """SIGKILL the process itself (a worker dying under a node)."""
        os.kill(self.pid, signal.SIGKILL)
        wait_for(lambda: not self.alive, seconds=30)

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it if it lingers."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while self.alive and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):  # what is left of the group (a worker under its nanny)
            os.killpg(self.pid, signal.SIGKILL)


@dataclass
class Cluster:
    """The test cluster: the scheduler's address and its workers (``plain`` and ``gpu``)."""

    address: str
    scheduler: DaskProcess
    workers: dict[str, DaskProcess] = field(default_factory=dict)
    directory: Path = Path()

    def start_worker(self, name: str, *args: str) -> DaskProcess:
        """Start a worker joining the cluster (not yet waited for)."""
        log = self.directory / f"worker-{name}-{secrets.token_hex(3)}.log"
        argv = [str(DASK), "worker", self.address, "--host", "127.0.0.1", "--no-dashboard", "--name", name, *args]
        return DaskProcess.launch(log, self.directory, *argv)

    def wait_for_workers(self, *workers: DaskProcess) -> None:
        """Until each worker said its address and the scheduler registered it."""
        deadline = time.monotonic() + 60
        for worker in workers:
            while not worker.address or worker.address not in _REGISTERED.findall(self.scheduler.log_text()):
                assert worker.alive, f"dask worker exited:\n{worker.log_text()}"
                assert time.monotonic() < deadline, f"dask worker did not start:\n{worker.log_text()}"
                found = _STARTED.search(worker.log_text())
                worker.address = found[1] if found else ""
                time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_distributed() -> None:
    """Skip (or fail, with ``WTFLOW_REQUIRE_DASK=1``) when distributed is not installed."""
    try:
        import distributed  # noqa: F401
    except ImportError as exc:
        missing_backend(f"distributed is not installed ({exc}): pip install 'wtflow[dask]'", "WTFLOW_REQUIRE_DASK")
    if not DASK.exists():
        missing_backend(f"no dask command at {DASK}", "WTFLOW_REQUIRE_DASK")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The scheduler and two workers (``--nworkers 1 --nthreads 4``; ``gpu`` has ``GPU=1``, ``plain`` ``PLAIN=4``)."""
    require_distributed()
    directory = tmp_path_factory.mktemp("dask")
    address = f"tcp://127.0.0.1:{free_port()}"
    port = address.rsplit(":", 1)[1]
    argv = [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard"]
    running = Cluster(address, DaskProcess.launch(directory / "scheduler.log", directory, *argv), directory=directory)
    try:
        common = ("--nworkers", "1", "--nthreads", "4")
        running.workers["plain"] = running.start_worker("plain", *common, "--resources", "PLAIN=4")
        running.workers["gpu"] = running.start_worker("gpu", *common, "--resources", "GPU=1")
        running.wait_for_workers(*running.workers.values())
        yield running
    finally:
        for worker in running.workers.values():
            worker.stop()
        running.scheduler.stop()


@pytest.fixture
def spare_workers(cluster: Cluster) -> Iterator[Callable[[int], list[DaskProcess]]]:
    """Start N more workers without a nanny (a killed one stays dead), each with ``SPARE=1``; stopped after the test."""
    started: list[DaskProcess] = []

    def start(count: int) -> list[DaskProcess]:
        workers = [
            cluster.start_worker(f"spare{len(started) + i}", "--nthreads", "2", "--no-nanny", "--resources", "SPARE=1")
            for i in range(count)
        ]
        started.extend(workers)
        cluster.wait_for_workers(*workers)
        return workers

    yield start
    for worker in started:
        worker.stop()


def processes_with(marker: str) -> list[int]:
    """The live processes whose environment holds ``marker`` (a value only one test's nodes have)."""
    needle = marker.encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ and process_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


@pytest.fixture
def marker() -> Iterator[str]:
    """A value for a node's environment (``MARK``) that finds its processes; any left are killed after the test."""
    value = f"wtflow-dask-test-{secrets.token_hex(6)}"
    yield value
    for pid in processes_with(value):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes the test started: those still running after it (it failed early) are killed; all are reaped.

    So a failed test leaves no process, and no pipe for the garbage collector to warn about in a later one.
    """
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.communicate()  # reaps it and closes its pipes


def start_run(
    workdir: Path, cluster: Cluster, started: list[subprocess.Popen[bytes]], *args: str
) -> subprocess.Popen[bytes]:
    """``wtflow run`` of ``workdir``'s wtflow.yml on ``cluster``, in the background: console logs, no database."""
    process = subprocess.Popen(
        [sys.executable, "-m", "wtflow", "run", "--dask-scheduler", cluster.address, *args],
        cwd=workdir,
        env={**os.environ, "WTFLOW_DB_URL": "", "WTFLOW_LOG_FORMAT": "console"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    started.append(process)
    return process


def run_json(workdir: Path) -> dict:  # type: ignore[type-arg]
    """The run.json of the one run in ``workdir``'s ``.wtflow``."""
    (found,) = (workdir / ".wtflow" / "artifacts").glob("*/run.json")
    return json.loads(found.read_text())  # type: ignore[no-any-return]


def parent_of(pid: int) -> int:
    """The parent process of ``pid``."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(") ", 1)[1].split()[1])
