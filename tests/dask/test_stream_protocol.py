"""The runner's and the worker's halves of a node attempt, joined by their TCP stream, with Dask left out.

A stand-in client runs each submitted task in this process (on the worker's node host, as a
worker would), so these tests see what Dask cannot show on one machine: a worker that does not
see the run's directory, and output far larger than either side may hold.
"""

from __future__ import annotations

import asyncio
import json
import resource
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.dask import funcs
from wtflow import Command, Config, Engine, Node, PyFunc, StorageConfig, Workflow, __version__
from wtflow.config import DaskConfig
from wtflow.executors import dask_task, forkserver
from wtflow.executors.dask_executor import DaskExecutor
from wtflow.executors.dask_wire import DONE, FILE, HELLO, PROTOCOL, STDOUT, Assignment, frame
from wtflow.executors.dispatch import PlacingExecutor

WORKER = "tcp://stand-in-worker:1"


class _Future:
    """What the executor uses of a Dask future: awaiting its end, and releasing it."""

    def __init__(self, thread: threading.Thread, failure: list[BaseException]) -> None:
        self._thread = thread
        self._failure = failure

    def __await__(self) -> Any:
        return self._wait().__await__()

    async def _wait(self) -> str:
        await asyncio.to_thread(self._thread.join)
        if self._failure:
            raise self._failure[0]
        return WORKER

    def release(self) -> None:
        pass


class _Client:
    """Runs each submitted attempt the way a worker's task does: on the node host, from a thread of its own."""

    def map(self, function: Callable[..., Any], assignments: list[Assignment], **_: Any) -> list[_Future]:
        return [self.submit(function, assignment) for assignment in assignments]

    def submit(self, function: Callable[..., Any], assignment: Assignment) -> _Future:
        failure: list[BaseException] = []

        def task() -> None:
            try:
                dask_task._node_host().run(dask_task._serve(assignment, WORKER))
            except BaseException as exc:  # handed to the awaiting side
                failure.append(exc)

        thread = threading.Thread(target=task, daemon=True)
        thread.start()
        return _Future(thread, failure)


class _StandInCluster(DaskExecutor):
    def client(self) -> _Client:
        return _Client()

    async def preflight(self, workflow: Workflow, max_parallel: int) -> None:
        self._client = self.client()
        self._server = await asyncio.start_server(self._accepted, "127.0.0.1", 0)
        self._runner = ("127.0.0.1", self._server.sockets[0].getsockname()[1])

    async def aclose(self) -> None:
        self._client = None
        await super().aclose()


@pytest.fixture(autouse=True)
def node_host() -> Iterator[None]:
    """This process stands in for a worker: the node host its tests start is closed after each."""
    yield
    host, dask_task._host = dask_task._host, None
    if host is not None:
        host.close()


def _run(tmp_path: Path, root: Node) -> Engine:
    config = Config(storage=StorageConfig(tmp_path / "artifacts"), dask=DaskConfig(scheduler="tcp://unused:1"))
    executor = PlacingExecutor(cluster=_StandInCluster(config.dask))
    engine = Engine(Workflow("protocol", root), config, observers=[], executor=executor)
    engine.run()
    return engine


def test_outputs_summary_and_result_travel_back_when_the_worker_cannot_see_the_run_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dask_task, "PROBE", "no-such-file")  # as on a worker without the run's directory
    command = Node(
        "writes",
        Command("echo key=value >> $WTFLOW_OUTPUT; echo '# done' > $WTFLOW_STEP_SUMMARY; echo $WTFLOW_OUTPUT"),
    )
    function = Node("returns", PyFunc(funcs.shout, args=(command.stdout_artifact,)), needs=["writes"])
    engine = _run(tmp_path, Node("root", children=[command, function]))
    assert engine.result is not None
    assert engine.result.status == "succeeded"
    run_dir = engine.result.run_dir
    written_at = Path((run_dir / "writes" / "stdout.log").read_text().strip())
    assert not written_at.is_relative_to(run_dir)  # the node wrote into a directory of the worker's own
    assert not written_at.parent.exists()  # removed once shipped
    assert (run_dir / "writes" / "outputs").read_text() == "key=value\n"
    assert (run_dir / "writes" / "summary.md").read_text() == "# done\n"
    assert json.loads((run_dir / "returns" / "result.json").read_text()) == {"shouted": str(written_at).upper()}
    assert engine.scheduler is not None
    assert engine.scheduler.states["writes"].outputs == {"key": "value"}
    assert engine.scheduler.states["returns"].outputs == {"shouted": str(written_at).upper()}
    assert engine.result["writes"].worker == WORKER


@pytest.mark.slow
def test_a_node_printing_far_more_than_memory_holds_streams_through(tmp_path: Path) -> None:
    """256 MiB through the stream: neither side holds it (both are this process here: its peak stays low)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    node = Node("loud", Command("head -c 268435456 /dev/zero | tr '\\0' 'x' | fold -w 1023"))
    engine = _run(tmp_path, node)
    assert engine.result is not None
    assert engine.result.status == "succeeded"
    assert (engine.result.run_dir / "loud" / "stdout.log").stat().st_size == 268435456 + 268435456 // 1023
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 64 * 1024, f"the peak grew by {grown_kib} KiB"


def test_closing_the_node_host_ends_the_fork_server_it_kept(tmp_path: Path) -> None:
    psutil = pytest.importorskip("psutil")

    def fork_servers() -> list[Any]:
        return [child for child in psutil.Process().children() if forkserver.SERVER in child.cmdline()]

    command = Node("writes", Command("echo a"))
    function = Node("returns", PyFunc(funcs.shout, args=(command.stdout_artifact,)), needs=["writes"])
    engine = _run(tmp_path, Node("root", children=[command, function]))
    assert engine.result is not None
    assert engine.result.status == "succeeded"
    host, dask_task._host = dask_task._host, None
    assert host is not None
    assert len(fork_servers()) == 1  # kept for the worker's later function nodes
    host.close()
    assert fork_servers() == []
    assert host.loop.is_closed()
    assert not [thread for thread in threading.enumerate() if thread.name == "wtflow-nodes"]


# --- what does not speak this protocol -----------------------------------------------------------


class _Garbling(_Client):
    """A stand-in worker that says hello (``hello``: as a worker of this wtflow does), then sends ``frames``."""

    def __init__(self, frames: bytes, hello: dict[str, Any] | None = None) -> None:
        self.frames = frames
        self.hello = {"worker": WORKER, "protocol": PROTOCOL, "wtflow": __version__} if hello is None else hello
        self.told: list[bytes] = []  # what the runner answered the hello with

    def submit(self, function: Callable[..., Any], assignment: Assignment) -> _Future:
        def task() -> None:
            with socket.create_connection(assignment.runner) as sock:
                sock.sendall(frame(HELLO, json.dumps({"token": assignment.token, **self.hello}).encode()))
                self.told.append(sock.recv(5))  # GO, or nothing: the connection closed
                sock.sendall(self.frames)
                while sock.recv(4096):  # until the runner is done with the connection
                    pass

        thread = threading.Thread(target=task, daemon=True)
        thread.start()
        return _Future(thread, [])


@pytest.mark.parametrize(
    "frames",
    [
        frame(DONE, b"{}"),
        frame(DONE, b"\xff not json"),
        frame(DONE, json.dumps({"exit_code": "zero", "timed_out": False, "error": None}).encode()),
        frame(FILE, b""),
        struct.pack("!BI", STDOUT, 1 << 30),  # announces a gigabyte
    ],
    ids=["done-without-fields", "done-not-json", "done-of-wrong-types", "empty-file", "huge-frame"],
)
def test_a_worker_sending_what_the_protocol_does_not_say_fails_its_node_not_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, frames: bytes
) -> None:
    monkeypatch.setattr(_StandInCluster, "client", lambda self: _Garbling(frames))
    engine = _run(tmp_path, Node("root", children=[Node("garbled", Command("true")), Node("other", Command("true"))]))
    assert engine.result is not None
    garbled = engine.result["garbled"]
    assert garbled.status == "failed"
    assert garbled.error is not None
    assert garbled.error.startswith(f"worker {WORKER} sent what this wtflow cannot read (")
    assert garbled.error.endswith("): does it run the same wtflow version?")


@pytest.mark.parametrize(
    ("hello", "theirs"),
    [
        ({"worker": WORKER}, "an older wtflow"),
        ({"worker": WORKER, "protocol": PROTOCOL + 1, "wtflow": "9.9.9"}, "wtflow 9.9.9"),
    ],
    ids=["without-a-protocol", "a-newer-protocol"],
)
def test_a_worker_of_another_protocol_is_refused_before_the_node_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hello: dict[str, Any], theirs: str
) -> None:
    client = _Garbling(b"", hello)
    monkeypatch.setattr(_StandInCluster, "client", lambda self: client)
    _fails_saying(
        _run(tmp_path, Node("n", Command("true"))),
        f"worker {WORKER} runs {theirs}, which speaks another worker protocol than this runner's wtflow "
        f"{__version__} (protocol {PROTOCOL}): install the same wtflow version on the runner and the workers",
    )
    assert client.told == [b""]  # never told to go


def test_a_worker_told_to_go_by_a_runner_of_another_protocol_does_not_start_the_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wtflow.executors import dask_executor

    other = json.dumps({"protocol": PROTOCOL + 1, "wtflow": "9.9.9"}).encode()
    monkeypatch.setattr(dask_executor, "go_payload", lambda ours: other)
    _fails_saying(
        _run(tmp_path, Node("n", Command("touch ran"))),
        f"the runner (wtflow 9.9.9) speaks another worker protocol than worker {WORKER}'s wtflow {__version__} "
        f"(protocol {PROTOCOL}): install the same wtflow version on the runner and the workers",
    )
    assert not (tmp_path / "ran").exists()


def _fails_saying(engine: Engine, error: str) -> None:
    """The run's one node ``n`` failed with ``error``."""
    assert engine.result is not None
    node = engine.result["n"]
    assert (node.status, node.error) == ("failed", error)


def test_a_stray_hello_announcing_more_than_a_hello_holds_is_closed_unread(tmp_path: Path) -> None:
    async def stray() -> bytes:
        cluster = _StandInCluster(DaskConfig(scheduler="tcp://unused:1"))
        await cluster.preflight(Workflow("w", Node("n", Command("true"))), 1)
        try:
            reader, writer = await asyncio.open_connection(*cluster._runner)
            writer.write(struct.pack("!BI", HELLO, 1 << 30))
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 5)  # closed at once: no 10 s wait, no gigabyte
            writer.close()
            return answer
        finally:
            await cluster.aclose()

    assert asyncio.run(stray()) == b""


class _Recording(_Client):
    """Runs attempts as _Client does, noting the task keys and the attempts' tokens."""

    seen: ClassVar[list[tuple[str, str]]] = []

    def map(self, function: Callable[..., Any], assignments: list[Assignment], **options: Any) -> list[_Future]:
        self.seen.extend(zip(options["key"], [assignment.token for assignment in assignments], strict=True))
        return super().map(function, assignments, **options)


def test_a_task_key_shows_no_part_of_its_attempts_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys show on the cluster's dashboard; a token admits whoever holds it to the attempt's stream."""
    monkeypatch.setattr(_Recording, "seen", [])
    monkeypatch.setattr(_StandInCluster, "client", lambda self: _Recording())
    engine = _run(tmp_path, Node("n", Command("true")))
    assert engine.result is not None
    assert engine.result["n"].status == "succeeded"
    [(key, token)] = _Recording.seen
    assert key.startswith("wtflow-n-")
    assert not any(token[start : start + 6] in key for start in range(len(token) - 5))
