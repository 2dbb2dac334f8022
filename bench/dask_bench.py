"""W11: nodes on a Dask cluster, against the same commands ``client.map``-ed onto the same cluster.

    .venv/bin/python bench/dask_bench.py              # 3 interleaved repetitions
    .venv/bin/python bench/dask_bench.py --reps 5 --profile
    .venv/bin/python bench/dask_bench.py --dir /dev/shm   # artifacts and databases in memory

One cluster serves every contender, started here with the ``dask`` command: a scheduler and one
``dask worker --nworkers 2 --nthreads 16`` (two worker processes of 16 threads), on 127.0.0.1.

- W11: 1,000 nodes ``sleep 0.05``, max_parallel 32. wtflow (``wtflow run --dask-scheduler``,
  artifacts and SQLite tracking on, as users run it) against a 20-line script (MAP below) that
  ``client.map``s the same commands (subprocess, output captured) onto the cluster and gathers
  them. Target: wtflow <= 1.5 x the script. Both are whole processes: each imports distributed
  and connects to the scheduler.
- W1 through Dask: W1's 1,000 ``true`` at max_parallel 2, sent to the cluster, beside W1 run
  locally: the price of a node's round trip through the scheduler and a worker.

Per contender: the median wall time, and the CPU each process of the cluster spent during the
run (from /proc), divided by the nodes: where the time goes per node. ``--profile`` also runs
W11 once under py-spy (``.venv/bin/pip install py-spy``) and prints the runner's hottest frames.
"""

from __future__ import annotations

import argparse
import collections
import compileall
import importlib.util
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PYTHON = sys.executable
DASK = str(Path(PYTHON).with_name("dask"))
PYSPY = str(Path(PYTHON).with_name("py-spy"))
NODES = 1000
TICKS = os.sysconf("SC_CLK_TCK")

# The baseline: what a user of Dask alone writes to run a list of commands on the cluster.
MAP = """
import shlex, subprocess, sys
from distributed import Client

def run(command):
    done = subprocess.run(shlex.split(command), capture_output=True)
    return done.returncode, done.stdout, done.stderr

if __name__ == "__main__":
    address, listing = sys.argv[1], sys.argv[2]
    commands = open(listing).read().splitlines()
    with Client(address) as client:
        futures = client.map(run, commands, pure=False)
        results = client.gather(futures)
    failed = [code for code, _, _ in results if code != 0]
    sys.exit(1 if failed or len(results) != len(commands) else 0)
"""


def workflow(path: Path, command: str, max_parallel: int) -> Path:
    lines = [f"name: {path.stem}", f"max_parallel: {max_parallel}", "nodes:"]
    lines += [f"  - {{name: n{index}, command: {command!r}}}" for index in range(NODES)]
    path.write_text("\n".join(lines) + "\n")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def descendants(pid: int) -> list[int]:
    found, queue = [], [pid]
    while queue:
        parent = queue.pop()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat[stat.rfind(")") + 2 :].split()[1]) == parent:
                    found.append(int(entry.name))
                    queue.append(int(entry.name))
    return found


def cpu_seconds(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime of the process itself


class Cluster:
    def __init__(self, folder: Path) -> None:
        self.address = f"tcp://127.0.0.1:{free_port()}"
        self.log = (folder / "cluster.log").open("wb")
        common = {"stdout": self.log, "stderr": subprocess.STDOUT, "start_new_session": True, "cwd": folder}
        port = self.address.rsplit(":", 1)[1]
        self.scheduler = subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", port,
                                           "--no-dashboard"], **common)  # fmt: skip
        self.workers = subprocess.Popen([DASK, "worker", self.address, "--host", "127.0.0.1", "--nworkers", "2",
                                         "--nthreads", "16", "--no-dashboard"], **common)  # fmt: skip
        deadline = time.monotonic() + 60
        while len(re.findall(rb"Register worker addr", (folder / "cluster.log").read_bytes())) < 2:
            assert time.monotonic() < deadline, "the cluster did not start"
            time.sleep(0.1)
        self.worker_pids = descendants(self.workers.pid)  # the two worker processes under their nanny

    def cpu(self) -> dict[str, float]:
        return {
            "scheduler": cpu_seconds(self.scheduler.pid),
            "workers": sum(cpu_seconds(pid) for pid in self.worker_pids),
        }

    def close(self) -> None:
        for process in (self.workers, self.scheduler):
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.log.close()


def measure(argv: list[str], cluster: Cluster | None, cwd: Path) -> dict[str, float]:
    before = cluster.cpu() if cluster is not None else {}
    start = time.perf_counter()
    with open(cwd / "stderr", "wb") as err:
        process = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv[:4]} failed: {(cwd / 'stderr').read_text()[-2000:]}")
    result = {"wall": seconds, "runner": usage.ru_utime + usage.ru_stime}
    if cluster is not None:
        after = cluster.cpu()
        result.update({name: after[name] - before[name] for name in after})
    return result


def wtflow(path: Path, scratch: Path, *extra: str) -> list[str]:
    return [PYTHON, "-m", "wtflow", "run", str(path), "--artifacts-dir", str(scratch / "artifacts"),
            "--db-url", f"sqlite:///{scratch / 'wtflow.db'}", *extra]  # fmt: skip


def profile(argv: list[str], cwd: Path) -> str:
    """The runner's hottest frames (own time) over a W11 run, from py-spy's raw output."""
    raw = cwd / "profile.txt"
    subprocess.run([PYSPY, "record", "--format", "raw", "--rate", "500", "--output", str(raw), "--", *argv],
                   cwd=cwd, check=True, capture_output=True)  # fmt: skip
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        total += int(count)
        if "(" in frames[-1]:
            own[re.sub(r":\d+\)$", ")", frames[-1])] += int(count)
    lines = [f"{count / total:6.1%}  {frame}" for frame, count in own.most_common(25)]
    return f"{total} samples of the runner (all threads, idle included):\n" + "\n".join(lines)


# The road not taken for streaming output: a distributed.Queue per node, every chunk through the scheduler.
QUEUE = """
import subprocess, sys
from distributed import Client, Queue

def produce(size, name):
    queue = Queue(name, maxsize=4)
    process = subprocess.Popen(["head", "-c", str(size), "/dev/zero"], stdout=subprocess.PIPE)
    while chunk := process.stdout.read(1 << 18):
        queue.put(chunk)
    queue.put(b"")
    return process.wait()

if __name__ == "__main__":
    with Client(sys.argv[1]) as client:
        queue = Queue("out", maxsize=4, client=client)
        future = client.submit(produce, int(sys.argv[2]), "out", pure=False)
        received = 0
        while chunk := queue.get():
            received += len(chunk)
        assert future.result() == 0 and received == int(sys.argv[2]), received
"""
STREAM_BYTES = 100 << 20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="also profile one W11 run with py-spy")
    parser.add_argument(
        "--dir", type=Path, help="where runs keep their files (default: the system's temporary directory)"
    )
    parser.add_argument("--only", choices=["W11", "W1", "streams"], action="append", help="what to run (default: all)")
    args = parser.parse_args()
    # Byte-compiled as `pip install` leaves them (this workspace sets PYTHONDONTWRITEBYTECODE=1):
    # every contender and worker would otherwise compile wtflow and distributed on each start.
    for package in ("wtflow", "distributed", "dask", "tornado", "toolz", "cloudpickle", "msgpack", "zict"):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            compileall.compile_dir(next(iter(spec.submodule_search_locations)), quiet=1)
    folder = Path(tempfile.mkdtemp(prefix="wtflow-dask-bench-", dir=args.dir))
    cluster = Cluster(folder)
    try:
        w11 = workflow(folder / "w11.yml", "sleep 0.05", 32)
        w1 = workflow(folder / "w1.yml", "true", 2)
        (folder / "map.py").write_text(MAP)
        (folder / "stream_queue.py").write_text(QUEUE)
        (folder / "commands.txt").write_text("sleep 0.05\n" * NODES)
        loud = folder / "loud.yml"
        loud.write_text(f"name: loud\nnodes:\n  - {{name: loud, command: 'head -c {STREAM_BYTES} /dev/zero'}}\n")
        contenders = {
            "W11 wtflow": (lambda s: wtflow(w11, s, "--dask-scheduler", cluster.address), True),
            "W11 client.map": (
                lambda s: [PYTHON, str(folder / "map.py"), cluster.address, str(folder / "commands.txt")],
                True,
            ),
            "W11 wtflow, no database": (
                lambda s: [*wtflow(w11, s, "--dask-scheduler", cluster.address), "--db-url", ""],
                True,
            ),
            "W11 wtflow local": (lambda s: wtflow(w11, s), False),
            "W1 wtflow via Dask": (lambda s: wtflow(w1, s, "--dask-scheduler", cluster.address), True),
            "W1 wtflow local": (lambda s: wtflow(w1, s), False),
            "100 MiB wtflow via Dask": (lambda s: wtflow(loud, s, "--dask-scheduler", cluster.address), True),
            "100 MiB distributed.Queue": (
                lambda s: [PYTHON, str(folder / "stream_queue.py"), cluster.address, str(STREAM_BYTES)],
                True,
            ),
            "100 MiB wtflow local": (lambda s: wtflow(loud, s), False),
        }
        if args.only:
            wanted = {"W11": "W11 ", "W1": "W1 ", "streams": "100 MiB"}
            contenders = {
                name: value
                for name, value in contenders.items()
                if any(name.startswith(wanted[part]) for part in args.only)
            }
        results: dict[str, list[dict[str, float]]] = {name: [] for name in contenders}
        for rep in range(args.reps):
            for name, (argv, on_cluster) in contenders.items():
                scratch = Path(tempfile.mkdtemp(prefix="run-", dir=folder))
                results[name].append(measure(argv(scratch), cluster if on_cluster else None, scratch))
                shutil.rmtree(scratch, ignore_errors=True)
                print(f"rep {rep + 1} {name}: {results[name][-1]['wall']:.2f} s", file=sys.stderr, flush=True)
        print(f"{'contender':<26} {'median s':>9} {'runs':>30}  CPU: runner, scheduler, workers")
        medians = {}
        for name, runs in results.items():
            medians[name] = statistics.median(run["wall"] for run in runs)
            shown = " ".join(f"{run['wall']:.2f}" for run in runs)
            per_node = not name.startswith("100 MiB")  # ms a node; the streams' in seconds
            cpu = ", ".join(
                f"{statistics.median(run[part] for run in runs) * (1000 / NODES if per_node else 1):.2f}"
                for part in ("runner", "scheduler", "workers")
                if part in runs[0]
            )
            print(f"{name:<26} {medians[name]:>9.2f} {shown:>30}  {cpu} {'ms a node' if per_node else 's'}")
        ratio = 0.0
        if "W11 wtflow" in medians:
            ratio = medians["W11 wtflow"] / medians["W11 client.map"]
            print(f"W11: wtflow / client.map = {ratio:.2f} (target <= 1.5)")
        if "W1 wtflow local" in medians:
            print(f"W1 through Dask / W1 local = {medians['W1 wtflow via Dask'] / medians['W1 wtflow local']:.2f}")
        if args.profile:
            scratch = Path(tempfile.mkdtemp(prefix="profile-", dir=folder))
            print(profile(wtflow(w11, scratch, "--dask-scheduler", cluster.address), scratch))
        return 0 if ratio <= 1.5 else 1
    finally:
        cluster.close()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
