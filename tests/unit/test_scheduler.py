"""The engine's scheduling and failure policies, driven by the scripted fake executor."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

import wtflow.artifacts
import wtflow.output
from tests.conftest import EventLog
from wtflow import Command, Config, Engine, Node, NodeStatus, Retry, RunConfig, RunStatus, StorageConfig, Workflow
from wtflow.artifacts import MemoryStore
from wtflow.events import (
    BaseObserver,
    Event,
    NodeFinished,
    NodeOutput,
    NodeRetrying,
    NodeStarted,
    RunFinished,
    RunStarted,
)
from wtflow.executors.base import BaseExecutor, Job, Outcome, OutputSink
from wtflow.executors.fake import FakeExecutor, Step
from wtflow.model import STDOUT
from wtflow.output import MAX_PENDING_LINE

SAFETY = 10  # seconds: only to turn a scheduling bug into a failure instead of a hang


def cmd(name: str, **kwargs: object) -> Node:
    return Node(name=name, executable=Command("true"), **kwargs)  # type: ignore[arg-type]


def make_engine(
    tmp_path: Path,
    root: Node,
    fake: FakeExecutor,
    log: EventLog,
    *,
    ignore_failure: bool = False,
    max_parallel: int | None = None,
) -> Engine:
    config = Config(
        storage=StorageConfig(artifacts_dir=tmp_path),
        run=RunConfig(ignore_failure=ignore_failure, max_parallel=max_parallel, kill_grace=1),
    )
    return Engine(Workflow(name="wf", root=root), config, observers=[log], executor=fake)


def run(engine: Engine, while_running: Callable[[], Awaitable[None]] | None = None) -> int:
    async def main() -> int:
        async with asyncio.timeout(SAFETY):
            task = asyncio.create_task(engine.run_async())
            if while_running is not None:
                await while_running()
            return await task

    return asyncio.run(main())


def statuses(engine: Engine) -> dict[str, NodeStatus]:
    assert engine.result is not None
    return {name: node.status for name, node in engine.result.nodes.items()}


def test_node_runs_before_its_children_and_siblings_in_order(tmp_path: Path, event_log: EventLog) -> None:
    root = cmd("root", children=[cmd("a", children=[cmd("a1"), cmd("a2")]), cmd("b")])
    fake = FakeExecutor()
    assert run(make_engine(tmp_path, root, fake, event_log)) == 0
    assert fake.started == ["root", "a", "a1", "a2", "b"]


def test_sequential_sibling_waits_for_the_whole_subtree_before_it(tmp_path: Path, event_log: EventLog) -> None:
    root = Node("root", children=[Node("a", parallel=True, children=[cmd("a1"), cmd("a2")]), cmd("b")])
    fake = FakeExecutor()
    run(make_engine(tmp_path, root, fake, event_log))
    assert fake.started.index("b") > max(fake.finished.index("a1"), fake.finished.index("a2"))


def test_parallel_children_all_run_at_once(tmp_path: Path, event_log: EventLog) -> None:
    gate = asyncio.Event()
    root = Node("root", parallel=True, children=[cmd(n) for n in "abc"])
    fake = FakeExecutor({n: Step(gate=gate) for n in "abc"})

    async def open_gate_when_all_started() -> None:
        for name in "abc":
            await fake.started_event(name).wait()
        gate.set()

    assert run(make_engine(tmp_path, root, fake, event_log), open_gate_when_all_started) == 0
    assert fake.max_running == 3


def test_node_starts_as_soon_as_its_needs_finish_not_in_waves(tmp_path: Path, event_log: EventLog) -> None:
    slow_gate = asyncio.Event()
    root = Node("root", parallel=True, children=[cmd("fast"), cmd("slow"), cmd("after_fast", needs=["fast"])])
    fake = FakeExecutor({"slow": Step(gate=slow_gate)})

    async def release_slow_after_dependent_started() -> None:
        await fake.started_event("after_fast").wait()
        assert "slow" not in fake.finished
        slow_gate.set()

    assert run(make_engine(tmp_path, root, fake, event_log), release_slow_after_dependent_started) == 0


def test_max_parallel_is_never_exceeded(tmp_path: Path, event_log: EventLog) -> None:
    gate = asyncio.Event()
    root = Node("root", parallel=True, children=[cmd(f"n{i}") for i in range(20)])
    fake = FakeExecutor({f"n{i}": Step(gate=gate) for i in range(20)})

    async def open_gate_when_cap_reached() -> None:
        await fake.wait_until(lambda: fake.running == 3)
        gate.set()

    assert run(make_engine(tmp_path, root, fake, event_log, max_parallel=3), open_gate_when_cap_reached) == 0
    assert fake.max_running == 3
    assert len(fake.finished) == 20


def test_workflow_max_parallel_applies_when_config_leaves_it_unset(tmp_path: Path, event_log: EventLog) -> None:
    gate = asyncio.Event()
    root = Node("root", parallel=True, children=[cmd(f"n{i}") for i in range(10)])
    fake = FakeExecutor({f"n{i}": Step(gate=gate) for i in range(10)})
    config = Config(storage=StorageConfig(artifacts_dir=tmp_path))
    engine = Engine(Workflow("wf", root, max_parallel=2), config, observers=[event_log], executor=fake)

    async def open_gate_when_cap_reached() -> None:
        await fake.wait_until(lambda: fake.running == 2)
        gate.set()

    assert run(engine, open_gate_when_cap_reached) == 0
    assert fake.max_running == 2


def test_first_failure_cancels_running_nodes_and_skips_the_rest(tmp_path: Path, event_log: EventLog) -> None:
    root = Node(
        "root",
        children=[Node("par", parallel=True, children=[cmd("bad"), cmd("busy")]), cmd("later")],
    )
    busy_started = asyncio.Event()
    fake = FakeExecutor({"bad": Step(exit_code=2, gate=busy_started), "busy": Step(block=True)})
    engine = make_engine(tmp_path, root, fake, event_log)

    async def fail_once_busy_runs() -> None:
        await fake.started_event("busy").wait()
        busy_started.set()

    assert run(engine, fail_once_busy_runs) == 1
    assert statuses(engine) == {
        "root": NodeStatus.FAILED,
        "par": NodeStatus.FAILED,
        "bad": NodeStatus.FAILED,
        "busy": NodeStatus.CANCELLED,
        "later": NodeStatus.SKIPPED,
    }
    assert fake.cancelled == ["busy"]
    assert engine.result is not None
    assert engine.result["bad"].exit_code == 2
    assert engine.result.status is RunStatus.FAILED


def test_ignore_failure_keeps_going_and_still_returns_1(tmp_path: Path, event_log: EventLog) -> None:
    root = Node("root", children=[cmd("bad", children=[cmd("child")]), cmd("next")])
    fake = FakeExecutor({"bad": Step(exit_code=1)})
    engine = make_engine(tmp_path, root, fake, event_log, ignore_failure=True)
    assert run(engine) == 1
    assert fake.started == ["bad", "child", "next"]
    assert statuses(engine)["child"] is NodeStatus.SUCCEEDED


def test_continue_on_error_node_fails_without_failing_the_run(tmp_path: Path, event_log: EventLog) -> None:
    root = Node("root", children=[cmd("flaky", continue_on_error=True), cmd("next")])
    fake = FakeExecutor({"flaky": Step(exit_code=3)})
    engine = make_engine(tmp_path, root, fake, event_log)
    assert run(engine) == 0
    assert statuses(engine)["flaky"] is NodeStatus.FAILED
    assert statuses(engine)["next"] is NodeStatus.SUCCEEDED
    assert statuses(engine)["root"] is NodeStatus.SUCCEEDED


def test_timeout_marks_node_timed_out_and_fails_the_run(tmp_path: Path, event_log: EventLog) -> None:
    fake = FakeExecutor({"slow": Step(timed_out=True)})
    engine = make_engine(tmp_path, Node("root", children=[cmd("slow"), cmd("next")]), fake, event_log)
    assert run(engine) == 1
    assert statuses(engine)["slow"] is NodeStatus.TIMED_OUT
    assert statuses(engine)["next"] is NodeStatus.SKIPPED


def test_cancelling_the_run_cancels_nodes_and_closes_the_run(tmp_path: Path, event_log: EventLog) -> None:
    fake = FakeExecutor({"busy": Step(block=True)})
    engine = make_engine(tmp_path, Node("root", children=[cmd("busy"), cmd("next")]), fake, event_log)

    async def main() -> None:
        task = asyncio.create_task(engine.run_async())
        await fake.started_event("busy").wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert statuses(engine) == {"root": NodeStatus.CANCELLED, "busy": NodeStatus.CANCELLED, "next": NodeStatus.SKIPPED}
    finished = event_log.of(RunFinished)
    assert len(finished) == 1
    assert finished[0].status is RunStatus.CANCELLED  # type: ignore[union-attr]


def test_failed_attempts_are_retried_and_their_output_kept(tmp_path: Path, event_log: EventLog) -> None:
    node = Node("flaky", executable=Command("true"), retries=Retry(max=2))
    fake = FakeExecutor({"flaky": Step(fail_times=2, stdout=b"try\n")})
    engine = make_engine(tmp_path, node, fake, event_log)
    assert run(engine) == 0
    assert [e.attempt for e in event_log.of(NodeRetrying)] == [1, 2]  # type: ignore[union-attr]
    assert engine.result is not None
    node_dir = engine.result["flaky"].artifacts["stdout"].path.parent  # type: ignore[union-attr]
    assert sorted(p.name for p in node_dir.iterdir()) == [
        "stderr.attempt-1.log",
        "stderr.attempt-2.log",
        "stderr.log",
        "stdout.attempt-1.log",
        "stdout.attempt-2.log",
        "stdout.log",
    ]


def test_a_node_that_keeps_failing_is_tried_once_plus_its_retries_then_fails(
    tmp_path: Path, event_log: EventLog
) -> None:
    node = Node("flaky", executable=Command("true"), retries=Retry(max=2))
    fake = FakeExecutor({"flaky": Step(fail_times=10)})
    engine = make_engine(tmp_path, node, fake, event_log)
    assert run(engine) == 1
    assert fake.steps["flaky"].calls == 3
    assert [e.attempt for e in event_log.of(NodeRetrying)] == [1, 2]  # type: ignore[union-attr]
    assert engine.result is not None
    assert (engine.result["flaky"].status, engine.result["flaky"].attempts) == (NodeStatus.FAILED, 3)


def test_a_retry_after_a_timeout_says_the_attempt_timed_out(tmp_path: Path, event_log: EventLog) -> None:
    node = Node("slow", executable=Command("true"), retries=Retry(max=1))
    fake = FakeExecutor({"slow": Step(timed_out=True)})
    assert run(make_engine(tmp_path, node, fake, event_log)) == 1
    (retrying,) = event_log.of(NodeRetrying)
    assert (retrying.attempt, retrying.error) == (1, "timed out")  # type: ignore[union-attr]


def test_needs_waits_for_the_needed_nodes_whole_subtree(tmp_path: Path, event_log: EventLog) -> None:
    needed = Node("a", executable=Command("true"), children=[cmd("a1"), cmd("a2")])
    root = Node("root", parallel=True, children=[needed, cmd("b", needs=["a"])])
    assert run(make_engine(tmp_path, root, FakeExecutor(), event_log)) == 0
    order = [(type(e).__name__, e.node) for e in event_log.events if isinstance(e, NodeStarted | NodeFinished)]
    started_b = order.index(("NodeStarted", "b"))
    assert order.index(("NodeFinished", "a1")) < started_b
    assert order.index(("NodeFinished", "a2")) < started_b


def test_a_run_kept_in_memory_keeps_each_attempts_output(event_log: EventLog) -> None:
    """The scheduler's tests need no disk: a memory store, and no record keepers."""
    node = Node("flaky", executable=Command("true"), retries=Retry(max=1))
    store = MemoryStore()
    fake = FakeExecutor({"flaky": Step(fail_times=1, stdout=b"try\n")})
    engine = Engine(Workflow("wf", node), Config(), observers=[event_log], executor=fake, store=store, records=[])
    assert run(engine) == 0
    assert store.data[("flaky", "stdout.attempt-1")] == b"try\n"
    assert store.data[("flaky", "stdout")] == b"try\n"
    assert engine.result is not None
    assert engine.result["flaky"].artifacts["stdout"].path == store.path("flaky", "stdout")


def test_events_come_in_lifecycle_order(tmp_path: Path, event_log: EventLog) -> None:
    fake = FakeExecutor({"a": Step(stdout=b"hello\n")})
    run(make_engine(tmp_path, Node("root", children=[cmd("a")]), fake, event_log))
    kinds = [type(e).__name__ for e in event_log.events]
    assert kinds == [
        "RunStarted",
        "NodeStarted",  # root (a group)
        "NodeStarted",  # a
        "NodeOutput",
        "NodeFinished",  # a
        "NodeFinished",  # root
        "RunFinished",
    ]
    assert isinstance(event_log.events[0], RunStarted)
    output = event_log.of(NodeOutput)[0]
    assert (output.node, output.stream, output.data) == ("a", "stdout", b"hello\n")  # type: ignore[union-attr]


def test_output_is_forwarded_in_whole_lines(tmp_path: Path, event_log: EventLog) -> None:
    fake = FakeExecutor({"a": Step(stdout=b"one\ntw", stderr=b"partial")})
    run(make_engine(tmp_path, cmd("a"), fake, event_log))
    chunks = [(e.stream, e.data) for e in event_log.of(NodeOutput)]  # type: ignore[union-attr]
    assert chunks == [("stdout", b"one\n"), ("stdout", b"tw"), ("stderr", b"partial")]


def test_a_line_longer_than_the_limit_is_forwarded_without_its_newline(tmp_path: Path, event_log: EventLog) -> None:
    long_line = b"x" * (MAX_PENDING_LINE + 10)
    run(make_engine(tmp_path, cmd("a"), FakeExecutor({"a": Step(stdout=long_line)}), event_log))
    assert [e.data for e in event_log.of(NodeOutput)] == [long_line]  # type: ignore[union-attr]


def test_every_node_gets_one_started_and_one_finished_event(tmp_path: Path, event_log: EventLog) -> None:
    root = Node("root", parallel=True, children=[cmd(f"n{i}", children=[cmd(f"c{i}")]) for i in range(5)])
    run(make_engine(tmp_path, root, FakeExecutor(), event_log, max_parallel=2))
    started = [e.node for e in event_log.of(NodeStarted)]  # type: ignore[union-attr]
    finished = [e.node for e in event_log.of(NodeFinished)]  # type: ignore[union-attr]
    assert (
        sorted(started)
        == sorted(finished)
        == sorted(["root"] + [f"n{i}" for i in range(5)] + [f"c{i}" for i in range(5)])
    )


def test_jobs_carry_the_run_environment(tmp_path: Path, event_log: EventLog) -> None:
    node = Node("a", executable=Command("true", env={"NODE_VAR": "1"}))
    workflow = Workflow("wf", node, env={"WF_VAR": "2"})
    fake = FakeExecutor()
    engine = Engine(workflow, Config(storage=StorageConfig(tmp_path)), observers=[event_log], executor=fake)
    run(engine)
    env = fake.jobs["a"].env
    assert engine.result is not None
    assert (env["NODE_VAR"], env["WF_VAR"], env["WTFLOW_NODE"]) == ("1", "2", "a")
    assert env["WTFLOW_RUN_ID"] == engine.result.run_id
    assert env["WTFLOW_RUN_DIR"] == str(engine.result.run_dir)


class _ChunkWriter(BaseExecutor):
    """Writes ``count`` numbered lines, one chunk each, the way a process's output arrives."""

    def __init__(self, count: int) -> None:
        self.count = count

    async def execute(self, job: Job, sink: OutputSink) -> Outcome:
        for index in range(self.count):
            await sink.write(STDOUT, f"line {index}\n".encode())
        return Outcome(exit_code=0)


def test_a_node_whose_writes_turn_slow_goes_on_writing_from_a_thread_in_order(
    tmp_path: Path, event_log: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    writers: list[int] = []

    class RecordingFile(io.FileIO):
        def write(self, data: bytes) -> int:  # type: ignore[override]
            writers.append(threading.get_ident())
            return super().write(data)

    monkeypatch.setattr(wtflow.output, "SLOW_WRITE", -1.0)  # every write counts as slow
    monkeypatch.setattr(wtflow.artifacts, "open", lambda path, mode: RecordingFile(path, "w"), raising=False)
    config = Config(storage=StorageConfig(artifacts_dir=tmp_path))
    workflow = Workflow(name="wf", root=cmd("a"))
    assert run(Engine(workflow, config, observers=[event_log], executor=_ChunkWriter(50))) == 0

    stdout = next(tmp_path.glob("*/a/stdout.log")).read_text()
    assert stdout == "".join(f"line {index}\n" for index in range(50))
    assert writers[0] == threading.get_ident()  # the first write, from the loop, found the disk slow
    assert len(writers) == 50
    assert threading.get_ident() not in writers[1:]


class _Raising(BaseObserver):
    """An observer with a bug: it raises on every node start."""

    def notify(self, event: Event) -> None:
        if isinstance(event, NodeStarted):
            raise RuntimeError("observer bug")  # noqa: TRY004 - a bug, not a type check


def test_an_observer_that_raises_fails_the_run_once_the_others_heard_every_event(
    tmp_path: Path, event_log: EventLog
) -> None:
    config = Config(storage=StorageConfig(artifacts_dir=tmp_path))
    workflow = Workflow(name="wf", root=Node("root", children=[cmd("a"), cmd("b")]))
    engine = Engine(workflow, config, observers=[_Raising(), event_log], executor=FakeExecutor())
    with pytest.raises(RuntimeError, match="observer bug"):
        run(engine)
    assert [e.node for e in event_log.of(NodeFinished)] == ["a", "b", "root"]  # type: ignore[union-attr]
    finished = event_log.of(RunFinished)
    assert len(finished) == 1
    assert finished[0].status is RunStatus.FAILED  # type: ignore[union-attr]


def test_a_node_starts_before_observers_hear_that_its_dependency_finished(tmp_path: Path, event_log: EventLog) -> None:
    # Observers (log lines, events.jsonl, the database) then work while the next process runs.
    heard_when_b_started: list[str] = []

    class Recording(FakeExecutor):
        async def execute(self, job: Job, sink: OutputSink) -> Outcome:
            if job.node == "b":
                heard_when_b_started.extend(e.node for e in event_log.of(NodeFinished))  # type: ignore[union-attr]
            return await super().execute(job, sink)

    root = Node("root", children=[cmd("a"), cmd("b")])
    assert run(make_engine(tmp_path, root, Recording(), event_log)) == 0
    assert heard_when_b_started == []
    assert [e.node for e in event_log.of(NodeFinished)] == ["a", "b", "root"]  # type: ignore[union-attr]
