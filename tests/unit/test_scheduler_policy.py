"""What the scheduler tells observers and executors, and how it ends nodes, driven by the scripted fake executor."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable
from datetime import UTC
from pathlib import Path

import pytest

from tests.conftest import EventLog
from tests.unit.test_scheduler import run, statuses
from wtflow import (
    Command,
    Config,
    Engine,
    FileArtifact,
    Node,
    NodeStatus,
    PyFunc,
    Retry,
    RunConfig,
    StorageConfig,
    Workflow,
)
from wtflow.artifacts import FileStore, OutputWriter
from wtflow.events import Event, NodeFinished, NodeOutput, NodeRetrying, NodeStarted, RunStarted
from wtflow.executors.base import Job, Outcome, OutputSink
from wtflow.executors.fake import FakeExecutor, Step
from wtflow.masking import Masker
from wtflow.reuse import Earlier

SAFETY = 10  # seconds: only to turn a scheduling bug into a failure instead of a hang
SECRET = "hunter2-secret"


def cmd(name: str, **kwargs: object) -> Node:
    return Node(name=name, executable=Command("true"), **kwargs)  # type: ignore[arg-type]


def echo(*_: object, **__: object) -> None:
    pass


def make_engine(
    tmp_path: Path,
    root: Node,
    executor: FakeExecutor,
    log: EventLog,
    *,
    ignore_failure: bool = False,
    max_parallel: int | None = None,
    store: FileStore | None = None,
) -> Engine:
    config = Config(
        storage=StorageConfig(artifacts_dir=tmp_path),
        run=RunConfig(ignore_failure=ignore_failure, max_parallel=max_parallel, kill_grace=7.5),
    )
    workflow = Workflow(name="wf", root=root)
    return Engine(workflow, config, observers=[log], executor=executor, store=store, masker=Masker([SECRET]))


def finished(log: EventLog, node: str) -> NodeFinished:
    (event,) = [e for e in log.of(NodeFinished) if e.node == node]  # type: ignore[union-attr]
    assert isinstance(event, NodeFinished)
    return event


class Scripted(FakeExecutor):
    """The fake, but some nodes end with a given :class:`Outcome` (an error message, say)."""

    def __init__(self, outcomes: dict[str, Outcome], steps: dict[str, Step] | None = None) -> None:
        super().__init__(steps)
        self.outcomes = outcomes

    async def execute(self, job: Job, sink: OutputSink) -> Outcome:
        outcome = await super().execute(job, sink)
        return self.outcomes.get(job.node, outcome)


# -- what the events say --------------------------------------------------------------------


def test_every_event_carries_the_run_id(tmp_path: Path, event_log: EventLog) -> None:
    fake = FakeExecutor({"flaky": Step(fail_times=1, stdout=b"out\n")})
    root = Node("root", children=[cmd("flaky", retries=Retry(max=1))])
    run(make_engine(tmp_path, root, fake, event_log))
    (started,) = event_log.of(RunStarted)
    kinds = {type(e).__name__ for e in event_log.events if e.run_id == started.run_id}  # type: ignore[union-attr]
    assert kinds >= {"NodeStarted", "NodeOutput", "NodeRetrying", "NodeFinished"}
    assert {e.run_id for e in event_log.events} == {started.run_id}  # type: ignore[union-attr]


def test_node_events_carry_the_node_path(tmp_path: Path, event_log: EventLog) -> None:
    run(
        make_engine(tmp_path, Node("root", children=[Node("group", children=[cmd("leaf")])]), FakeExecutor(), event_log)
    )
    started = {e.node: e.path for e in event_log.of(NodeStarted)}  # type: ignore[union-attr]
    ended = {e.node: e.path for e in event_log.of(NodeFinished)}  # type: ignore[union-attr]
    assert started == ended == {"root": "root", "group": "root/group", "leaf": "root/group/leaf"}


def test_event_times_are_timezone_aware_utc(tmp_path: Path, event_log: EventLog) -> None:
    run(make_engine(tmp_path, Node("root", children=[cmd("a")]), FakeExecutor(), event_log))
    times = [e.started_at for e in event_log.of(NodeStarted)]  # type: ignore[union-attr]
    times += [t for e in event_log.of(NodeFinished) for t in (e.started_at, e.finished_at)]  # type: ignore[union-attr]
    assert times
    assert all(t is not None and t.tzinfo is UTC for t in times)


def test_a_finished_node_reports_status_exit_code_start_attempts_and_output(
    tmp_path: Path, event_log: EventLog
) -> None:
    fake = FakeExecutor({"bad": Step(exit_code=4, fail_times=1, stdout=b"tried\n")})
    run(make_engine(tmp_path, cmd("bad", retries=Retry(max=1)), fake, event_log))
    event = finished(event_log, "bad")
    first_start = event_log.of(NodeStarted)[0]
    assert (event.status, event.exit_code, event.attempt, event.error) == (NodeStatus.FAILED, 4, 2, None)
    assert event.started_at is not None
    assert event.started_at <= first_start.started_at  # type: ignore[union-attr]  # the first attempt's start
    assert event.finished_at >= event.started_at
    assert {info.name: info.size for info in event.artifacts} == {"stdout": 6, "stderr": 0}


def test_a_node_error_is_reported_masked(tmp_path: Path, event_log: EventLog) -> None:
    fake = Scripted({"a": Outcome(exit_code=None, error=f"cannot start: token {SECRET} refused")})
    engine = make_engine(tmp_path, cmd("a"), fake, event_log)
    assert run(engine) == 1
    assert finished(event_log, "a").error == "cannot start: token *** refused"


def test_a_timed_out_node_says_so_in_its_error(tmp_path: Path, event_log: EventLog) -> None:
    engine = make_engine(tmp_path, cmd("slow"), FakeExecutor({"slow": Step(timed_out=True)}), event_log)
    run(engine)
    assert (finished(event_log, "slow").status, finished(event_log, "slow").error) == (
        NodeStatus.TIMED_OUT,
        "timed out",
    )
    assert engine.result is not None
    assert engine.result["slow"].error == "timed out"


def test_a_group_node_runs_one_attempt(tmp_path: Path, event_log: EventLog) -> None:
    engine = make_engine(tmp_path, Node("group", children=[cmd("a")]), FakeExecutor(), event_log)
    run(engine)
    assert engine.result is not None
    assert engine.result["group"].attempts == 1
    assert finished(event_log, "group").attempt == 1


def test_each_attempt_is_announced_with_its_number(tmp_path: Path, event_log: EventLog) -> None:
    fake = FakeExecutor({"flaky": Step(fail_times=2)})
    run(make_engine(tmp_path, cmd("flaky", retries=Retry(max=3)), fake, event_log))
    assert [(e.node, e.attempt) for e in event_log.of(NodeStarted)] == [("flaky", 1), ("flaky", 2), ("flaky", 3)]  # type: ignore[union-attr]


def test_a_retry_tells_why_the_attempt_failed_and_how_long_it_waits(tmp_path: Path, event_log: EventLog) -> None:
    fake = Scripted({}, {"flaky": Step(exit_code=5)})
    run(make_engine(tmp_path, cmd("flaky", retries=Retry(max=2, delay=0.001, backoff=10)), fake, event_log))
    retries = [(e.node, e.attempt, e.exit_code, e.delay, e.error) for e in event_log.of(NodeRetrying)]  # type: ignore[union-attr]
    assert retries == [("flaky", 1, 5, 0.001, None), ("flaky", 2, 5, pytest.approx(0.01), None)]


def test_a_retry_reports_the_attempt_error_masked(tmp_path: Path, event_log: EventLog) -> None:
    fake = Scripted({"a": Outcome(exit_code=None, error=f"refused {SECRET}")})
    run(make_engine(tmp_path, cmd("a", retries=Retry(max=1)), fake, event_log))
    assert [e.error for e in event_log.of(NodeRetrying)] == ["refused ***"]  # type: ignore[union-attr]


def test_output_events_name_node_and_stream(tmp_path: Path, event_log: EventLog) -> None:
    run(make_engine(tmp_path, cmd("a"), FakeExecutor({"a": Step(stderr=b"warn\n")}), event_log))
    assert [(e.node, e.stream, e.data) for e in event_log.of(NodeOutput)] == [("a", "stderr", b"warn\n")]  # type: ignore[union-attr]


# -- the failure policy ---------------------------------------------------------------------


def test_with_ignore_failure_a_group_with_a_failed_child_fails(tmp_path: Path, event_log: EventLog) -> None:
    root = Node("root", children=[Node("group", children=[cmd("bad")]), cmd("after")])
    engine = make_engine(tmp_path, root, FakeExecutor({"bad": Step(exit_code=1)}), event_log, ignore_failure=True)
    assert run(engine) == 1
    assert statuses(engine) == {
        "root": NodeStatus.FAILED,
        "group": NodeStatus.FAILED,
        "bad": NodeStatus.FAILED,
        "after": NodeStatus.SUCCEEDED,
    }


def test_a_group_whose_children_succeed_succeeds(tmp_path: Path, event_log: EventLog) -> None:
    engine = make_engine(tmp_path, Node("group", children=[cmd("a"), cmd("b")]), FakeExecutor(), event_log)
    assert run(engine) == 0
    assert finished(event_log, "group").status is NodeStatus.SUCCEEDED


def test_a_node_cancelled_by_a_failure_keeps_the_output_it_wrote(tmp_path: Path, event_log: EventLog) -> None:
    busy_started = asyncio.Event()
    root = Node("root", parallel=True, children=[cmd("bad"), cmd("busy")])
    fake = FakeExecutor({"bad": Step(exit_code=1, gate=busy_started), "busy": Step(block=True, stdout=b"half\n")})
    engine = make_engine(tmp_path, root, fake, event_log)

    async def fail_once_busy_runs() -> None:
        await fake.started_event("busy").wait()
        busy_started.set()

    assert run(engine, fail_once_busy_runs) == 1
    event = finished(event_log, "busy")
    assert event.status is NodeStatus.CANCELLED
    assert {info.name for info in event.artifacts} == {"stdout", "stderr"}
    assert engine.result is not None
    assert engine.result["busy"].artifacts["stdout"].data == b"half\n"


def test_a_node_whose_artifacts_cannot_be_stored_fails_with_the_reason(tmp_path: Path, event_log: EventLog) -> None:
    class FullDisk(FileStore):
        def output(self, node: str, attempt: int, forward: Callable[[str, bytes], None]) -> OutputWriter:
            raise OSError(errno.ENOSPC, "No space left on device")

    store = FullDisk(tmp_path)
    engine = make_engine(tmp_path, Node("root", children=[cmd("a"), cmd("b")]), FakeExecutor(), event_log, store=store)
    assert run(engine) == 1
    event = finished(event_log, "a")
    assert (event.status, event.exit_code) == (NodeStatus.FAILED, None)
    assert event.error == "cannot store artifacts: [Errno 28] No space left on device"
    assert statuses(engine)["b"] is NodeStatus.SKIPPED


def test_running_out_of_open_files_names_the_limit_and_what_to_do(tmp_path: Path, event_log: EventLog) -> None:
    class NoFilesLeft(FileStore):
        def output(self, node: str, attempt: int, forward: Callable[[str, bytes], None]) -> OutputWriter:
            raise OSError(errno.ENFILE, "Too many open files in system")

    engine = make_engine(tmp_path, cmd("a"), FakeExecutor(), event_log, store=NoFilesLeft(tmp_path))
    assert run(engine) == 1
    assert finished(event_log, "a").error == (
        "cannot store artifacts: too many open files in the system (the kernel's limit, fs.file-max): "
        "run fewer nodes at once with --max-parallel"
    )


def test_what_collecting_a_node_files_warns_about_reaches_the_engine_masked(
    tmp_path: Path, event_log: EventLog
) -> None:
    class Warns(FileStore):
        async def collect(self, node: Node, cwd: Path | None) -> list[str]:
            return [f"skipped a link to /home/{SECRET}"]

    engine = make_engine(tmp_path, cmd("a"), FakeExecutor(), event_log, store=Warns(tmp_path))
    assert run(engine) == 0
    assert "node 'a': skipped a link to /home/***" in engine.warnings


def test_a_node_whose_executor_crashes_is_closed_and_the_error_raised(tmp_path: Path, event_log: EventLog) -> None:
    class Crashing(FakeExecutor):
        async def execute(self, job: Job, sink: OutputSink) -> Outcome:
            raise RuntimeError("executor bug")

    engine = make_engine(tmp_path, Node("root", children=[cmd("a"), cmd("b")]), Crashing(), event_log)
    with pytest.raises(ExceptionGroup) as caught:
        run(engine)
    assert caught.group_contains(RuntimeError, match="executor bug")
    assert statuses(engine) == {"root": NodeStatus.CANCELLED, "a": NodeStatus.CANCELLED, "b": NodeStatus.SKIPPED}
    assert {e.node for e in event_log.of(NodeFinished)} == {"root", "a", "b"}  # type: ignore[union-attr]


def test_kill_cancels_running_nodes_and_starts_no_more(tmp_path: Path, event_log: EventLog) -> None:
    root = Node("root", children=[cmd("busy"), cmd("next")])
    fake = FakeExecutor({"busy": Step(block=True)})
    engine = make_engine(tmp_path, root, fake, event_log)

    async def kill_once_busy_runs() -> None:
        await fake.started_event("busy").wait()
        assert engine.scheduler is not None
        engine.scheduler.kill()

    run(engine, kill_once_busy_runs)
    assert fake.cancelled == ["busy"]
    assert statuses(engine) == {"root": NodeStatus.CANCELLED, "busy": NodeStatus.CANCELLED, "next": NodeStatus.SKIPPED}


# -- what an executor is given ----------------------------------------------------------------


def test_a_job_carries_the_run_id_directories_and_kill_grace(tmp_path: Path, event_log: EventLog) -> None:
    fake = FakeExecutor()
    executable = Command("true", cwd=tmp_path / "work")
    engine = make_engine(tmp_path, Node("a", executable=executable), fake, event_log)
    run(engine)
    job = fake.jobs["a"]
    assert engine.result is not None
    node_dir = engine.result.run_dir / "a"
    assert (job.run_id, job.node, job.executable) == (engine.result.run_id, "a", executable)
    assert (job.cwd, job.node_dir, job.kill_grace) == (tmp_path / "work", node_dir, 7.5)


def test_a_job_without_a_working_directory_runs_in_the_current_one(tmp_path: Path, event_log: EventLog) -> None:
    fake = FakeExecutor()
    run(make_engine(tmp_path, cmd("a"), fake, event_log))
    assert fake.jobs["a"].cwd is None


def test_a_job_declares_the_step_summary_and_outputs_files_of_its_node(tmp_path: Path, event_log: EventLog) -> None:
    fake = FakeExecutor()
    engine = make_engine(tmp_path, cmd("a"), fake, event_log)
    run(engine)
    assert engine.result is not None
    summary = str(engine.result.run_dir / "a" / "summary.md")
    assert fake.jobs["a"].env["WTFLOW_STEP_SUMMARY"] == summary
    assert fake.jobs["a"].declared_env == {
        "WTFLOW_RUN_ID": engine.result.run_id,
        "WTFLOW_NODE": "a",
        "WTFLOW_RUN_DIR": str(engine.result.run_dir),
        "WTFLOW_STEP_SUMMARY": summary,
        "WTFLOW_OUTPUT": str(engine.result.run_dir / "a" / "outputs"),
    }


def test_a_function_node_gets_the_artifacts_it_reads_bound_to_their_files(tmp_path: Path, event_log: EventLog) -> None:
    producer = cmd("producer")
    func = PyFunc(echo, args=(producer.stdout_artifact,), kwargs={"err": [producer.stderr_artifact]}, timeout=9)
    reader = Node("reader", executable=PyFunc(func.func, func.args, func.kwargs, timeout=9, env={"A": "1"}, cwd="w"))
    fake = FakeExecutor({"producer": Step(stdout=b"made\n", stderr=b"noise\n")})
    engine = make_engine(tmp_path, Node("root", children=[producer, reader]), fake, event_log)
    assert run(engine) == 0
    given = fake.jobs["reader"].executable
    assert isinstance(given, PyFunc)
    assert (given.func, given.timeout, given.env, given.cwd) == (echo, 9, {"A": "1"}, Path("w"))
    assert given.args[0].data == b"made\n"
    assert given.kwargs["err"][0].data == b"noise\n"


def test_a_function_node_learns_how_the_producer_of_what_it_reads_ended(tmp_path: Path, event_log: EventLog) -> None:
    producer = cmd("producer", continue_on_error=True)
    reader = Node("reader", executable=PyFunc(echo, args=(producer.stdout_artifact,)))
    fake = FakeExecutor({"producer": Step(exit_code=3)})
    run(make_engine(tmp_path, Node("root", children=[producer, reader]), fake, event_log))
    given = fake.jobs["reader"].executable
    assert isinstance(given, PyFunc)
    assert given.args[0].exit_code == 3


def test_declared_files_are_collected_from_the_working_directory(tmp_path: Path, event_log: EventLog) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "out.txt").write_text("report\n")
    node = Node("a", executable=Command("true", cwd=work), artifacts=[FileArtifact("report", "out.txt")])
    engine = make_engine(tmp_path / "artifacts", node, FakeExecutor(), event_log)
    assert run(engine) == 0
    assert engine.result is not None
    kept = engine.result["a"].artifacts["report"].path
    assert kept is not None
    assert (kept / "out.txt").read_text() == "report\n"


def test_node_tasks_are_named_for_their_node(tmp_path: Path, event_log: EventLog) -> None:
    """Task dumps (``asyncio`` debug mode, a hang's traceback) then say which node is which."""
    names: list[str] = []

    class Recording(FakeExecutor):
        async def execute(self, job: Job, sink: OutputSink) -> Outcome:
            task = asyncio.current_task()
            assert task is not None
            names.append(task.get_name())
            return await super().execute(job, sink)

    run(make_engine(tmp_path, cmd("a"), Recording(), event_log))
    assert names == ["wtflow node a"]


def reused_from(run_id: str) -> Earlier:
    return Earlier(NodeStatus.REUSED, run_id, stdout=None, stderr=None, result=None, replay=False)


def stops_then_reaches(tmp_path: Path, event_log: EventLog, late: Node, reused: str) -> tuple[Engine, FakeExecutor]:
    """A run where ``bad`` fails and stops the run; ``slow`` (``always()``) ends after it, then ``late`` is reached.

    The node ``reused`` takes an earlier run's result.
    """
    bad_ended = asyncio.Event()
    root = Node(
        "root",
        parallel=True,
        children=[cmd("bad"), cmd("slow", condition="${{ always() }}"), late],
    )
    fake = FakeExecutor({"bad": Step(exit_code=1), "slow": Step(gate=bad_ended)})

    class OpensTheGate(EventLog):
        def notify(self, event: Event) -> None:
            if isinstance(event, NodeFinished) and event.node == "bad":
                bad_ended.set()

    config = Config(storage=StorageConfig(artifacts_dir=tmp_path))
    workflow = Workflow(name="wf", root=root)
    reuse = {reused: reused_from("earlier-run")}
    return Engine(workflow, config, observers=[event_log, OpensTheGate()], executor=fake, reuse=reuse), fake


def test_a_reused_node_reached_after_the_run_stopped_is_still_taken(tmp_path: Path, event_log: EventLog) -> None:
    engine, _ = stops_then_reaches(tmp_path, event_log, cmd("late", needs=["slow"]), "late")
    assert run(engine) == 1
    assert statuses(engine)["late"] is NodeStatus.REUSED
    assert finished(event_log, "late").reused_from == "earlier-run"


def test_a_reused_node_that_runs_only_when_cancelled_is_taken_after_a_stop(tmp_path: Path, event_log: EventLog) -> None:
    late = cmd("late", needs=["slow"], condition="${{ cancelled() }}")
    engine, _ = stops_then_reaches(tmp_path, event_log, late, "late")
    assert run(engine) == 1
    assert statuses(engine)["late"] is NodeStatus.REUSED


def test_a_reused_node_in_a_group_the_stop_skipped_is_taken_and_nothing_else_there_runs(
    tmp_path: Path, event_log: EventLog
) -> None:
    cleanup = cmd("cleanup", condition="${{ always() }}")
    late = Node("late", needs=["slow"], children=[cmd("inner"), cmd("fresh"), cleanup], parallel=True)
    engine, fake = stops_then_reaches(tmp_path, event_log, late, "inner")
    assert run(engine) == 1
    found = statuses(engine)
    assert (found["late"], found["inner"], found["fresh"], found["cleanup"]) == (
        NodeStatus.SKIPPED,
        NodeStatus.REUSED,
        NodeStatus.SKIPPED,
        NodeStatus.SKIPPED,
    )
    assert sorted(fake.started) == ["bad", "slow"]
