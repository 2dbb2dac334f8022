"""Conditions, matrices, outputs and max_fail as the scheduler applies them, driven by the scripted fake executor."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import EventLog
from tests.unit.test_scheduler import cmd, run, statuses
from wtflow import Command, Config, Engine, Node, NodeStatus, RunConfig, RunStatus, StorageConfig, Workflow
from wtflow.errors import WorkflowError
from wtflow.events import NodeFinished
from wtflow.executors.base import Job, Outcome, OutputSink
from wtflow.executors.fake import FakeExecutor, Step
from wtflow.matrix import Matrix

SUCCEEDED, FAILED, SKIPPED, CANCELLED = (
    NodeStatus.SUCCEEDED,
    NodeStatus.FAILED,
    NodeStatus.SKIPPED,
    NodeStatus.CANCELLED,
)


def engine(
    tmp_path: Path,
    root: Node,
    fake: FakeExecutor,
    log: EventLog,
    *,
    max_fail: int | None = None,
    ignore_failure: bool = False,
    max_fail_in_file: int | None = None,
    variables: dict[str, str] | None = None,
) -> Engine:
    config = Config(
        storage=StorageConfig(artifacts_dir=tmp_path),
        run=RunConfig(kill_grace=1, max_fail=max_fail, ignore_failure=ignore_failure, vars=variables or {}),
    )
    workflow = Workflow(name="wf", root=root, max_fail=max_fail_in_file, vars={"greeting": "hi"})
    return Engine(workflow, config, observers=[log], executor=fake)


# -- conditions -----------------------------------------------------------------------------


def test_a_node_after_a_failed_one_is_skipped_without_a_condition(tmp_path: Path, event_log: EventLog) -> None:
    root = Node("root", children=[cmd("a"), cmd("b")])
    fake = FakeExecutor({"a": Step(exit_code=1)})
    e = engine(tmp_path, root, fake, event_log)
    assert run(e) == 1
    assert fake.started == ["a"]
    assert statuses(e)["b"] is SKIPPED


def test_always_runs_a_node_after_a_failure(tmp_path: Path, event_log: EventLog) -> None:
    root = Node("root", children=[cmd("build"), cmd("test"), cmd("cleanup", condition="always()")])
    fake = FakeExecutor({"build": Step(exit_code=1)})
    e = engine(tmp_path, root, fake, event_log)
    assert run(e) == 1
    assert fake.started == ["build", "cleanup"]
    assert statuses(e) == {"root": FAILED, "build": FAILED, "test": SKIPPED, "cleanup": SUCCEEDED}


def test_failure_runs_a_node_only_when_something_it_waits_for_failed(tmp_path: Path, event_log: EventLog) -> None:
    root = Node("root", children=[cmd("build"), cmd("report", condition="${{ failure() }}")])
    fake = FakeExecutor()
    e = engine(tmp_path, root, fake, event_log)
    assert run(e) == 0
    assert statuses(e)["report"] is SKIPPED
    fake = FakeExecutor({"build": Step(exit_code=1)})
    e = engine(tmp_path, root, fake, event_log)
    assert run(e) == 1
    assert statuses(e)["report"] is SUCCEEDED


def test_failure_sees_a_failure_through_nodes_skipped_for_it(tmp_path: Path, event_log: EventLog) -> None:
    root = Node("root", children=[cmd("build"), cmd("test"), cmd("notify", condition="failure()")])
    fake = FakeExecutor({"build": Step(exit_code=1)})
    e = engine(tmp_path, root, fake, event_log)
    run(e)
    assert statuses(e)["notify"] is SUCCEEDED


def test_a_false_condition_skips_the_node_and_the_run_succeeds(tmp_path: Path, event_log: EventLog) -> None:
    root = Node("root", children=[cmd("a", condition="vars.greeting == 'bye'"), cmd("b")])
    fake = FakeExecutor()
    e = engine(tmp_path, root, fake, event_log)
    assert run(e) == 0
    assert statuses(e)["a"] is SKIPPED
    assert fake.started == []  # b waits for a, which was skipped: it is skipped too


def test_nodes_waiting_for_a_skipped_node_run_when_their_condition_says_so(tmp_path: Path, event_log: EventLog) -> None:
    root = Node(
        "root", parallel=True, children=[cmd("a", condition="false"), cmd("b", needs=["a"], condition="always()")]
    )
    fake = FakeExecutor()
    e = engine(tmp_path, root, fake, event_log)
    assert run(e) == 0
    assert fake.started == ["b"]


def test_variables_from_the_configuration_override_the_files(tmp_path: Path, event_log: EventLog) -> None:
    root = Node("root", children=[cmd("a", condition="vars.greeting == 'bye'")])
    fake = FakeExecutor()
    run(engine(tmp_path, root, fake, event_log, variables={"greeting": "bye"}))
    assert fake.started == ["a"]


def test_a_skipped_group_skips_everything_below_it(tmp_path: Path, event_log: EventLog) -> None:
    root = Node("root", children=[Node("g", condition="false", children=[cmd("a", condition="always()")])])
    fake = FakeExecutor()
    e = engine(tmp_path, root, fake, event_log)
    assert run(e) == 0
    assert statuses(e) == {"root": SKIPPED, "g": SKIPPED, "a": SKIPPED}


def test_a_condition_that_cannot_be_evaluated_fails_the_node(tmp_path: Path, event_log: EventLog) -> None:
    root = Node("root", children=[cmd("a", condition="fromJSON('not json')")])
    e = engine(tmp_path, root, FakeExecutor(), event_log)
    assert run(e) == 1
    assert e.result is not None
    assert statuses(e)["a"] is FAILED
    assert "if:" in (e.result["a"].error or "")


def test_cancelled_and_always_nodes_still_run_after_fail_fast(tmp_path: Path, event_log: EventLog) -> None:
    root = Node(
        "root",
        parallel=True,
        children=[
            cmd("slow"),
            cmd("bad"),
            cmd("after", needs=["slow", "bad"], condition="cancelled()"),
            cmd("plain", needs=["slow", "bad"]),
        ],
    )
    gate = asyncio.Event()
    fake = FakeExecutor({"slow": Step(gate=gate), "bad": Step(exit_code=1)})
    e = engine(tmp_path, root, fake, event_log)
    assert run(e) == 1
    assert fake.cancelled == ["slow"]
    assert statuses(e) == {"root": FAILED, "slow": CANCELLED, "bad": FAILED, "after": SUCCEEDED, "plain": SKIPPED}


def test_an_interrupted_run_still_runs_always_nodes_within_the_kill_grace(tmp_path: Path, event_log: EventLog) -> None:
    root = Node("root", children=[cmd("long"), cmd("cleanup", condition="always()")])
    fake = FakeExecutor({"long": Step(block=True)})
    e = engine(tmp_path, root, fake, event_log)

    async def interrupt() -> None:
        await fake.started_event("long").wait()
        e.interrupt(2)

    code = run(e, interrupt)
    assert code == 130
    assert e.result is not None
    assert e.result.status is RunStatus.CANCELLED
    assert statuses(e)["cleanup"] is SUCCEEDED
    assert fake.jobs["cleanup"].timeout == 1  # the kill grace


# -- max_fail -------------------------------------------------------------------------------


def test_max_fail_does_not_run_what_waits_for_a_failed_node(tmp_path: Path, event_log: EventLog) -> None:
    root = Node("root", children=[cmd(name) for name in "abcd"])
    fake = FakeExecutor({name: Step(exit_code=1) for name in "abcd"})
    e = engine(tmp_path, root, fake, event_log, max_fail=2)
    assert run(e) == 1
    assert fake.started == ["a"]
    assert statuses(e)["b"] is SKIPPED


def test_max_fail_lets_independent_nodes_go_on(tmp_path: Path, event_log: EventLog) -> None:
    root = Node("root", parallel=True, children=[cmd(name) for name in ("a", "b", "c", "d")])
    gates = {name: asyncio.Event() for name in "abcd"}
    fake = FakeExecutor({name: Step(exit_code=1 if name != "d" else 0, gate=gates[name]) for name in "abcd"})
    e = engine(tmp_path, root, fake, event_log, max_fail=1)

    async def one_by_one() -> None:
        await fake.wait_until(lambda: len(fake.started) == 4)
        gates["a"].set()
        await fake.wait_until(lambda: "a" in fake.finished)
        gates["b"].set()  # the second failure: more than max_fail=1, the run stops

    assert run(e, one_by_one) == 1
    assert statuses(e)["a"] is FAILED
    assert statuses(e)["b"] is FAILED
    assert statuses(e)["c"] is CANCELLED
    assert statuses(e)["d"] is CANCELLED


def test_the_configurations_max_fail_overrides_the_workflows(tmp_path: Path, event_log: EventLog) -> None:
    e = engine(tmp_path, cmd("a"), FakeExecutor(), event_log, max_fail=0, max_fail_in_file=5)
    assert e.max_fail == 0
    e = engine(tmp_path, cmd("a"), FakeExecutor(), event_log, max_fail_in_file=5)
    assert e.max_fail == 5


# -- matrices -------------------------------------------------------------------------------


def matrix_node(**matrix: object) -> Node:
    values = matrix.pop("values")
    return Node("test", executable=Command("pytest"), matrix=Matrix(values, **matrix))  # type: ignore[arg-type]


def test_a_matrix_node_becomes_a_group_of_one_node_per_combination() -> None:
    workflow = Workflow("wf", Node("root", children=[matrix_node(values={"py": ["3.11", "3.12"], "os": ["linux"]})]))
    group = workflow.nodes["test"]
    assert [child.name for child in group.children] == ["test (3.11, linux)", "test (3.12, linux)"]
    assert group.parallel
    assert group.executable is None
    assert workflow.nodes["test (3.12, linux)"].matrix_values == {"py": "3.12", "os": "linux"}


def test_include_extends_matching_combinations_and_adds_the_rest() -> None:
    matrix = Matrix(
        {"py": ["3.11", "3.12"]},
        include=[{"py": "3.12", "experimental": True}, {"py": "3.13"}],
        exclude=[{"py": "3.11"}],
    )
    assert matrix.combinations() == [{"py": "3.12", "experimental": True}, {"py": "3.13"}]


def test_more_than_256_combinations_is_an_error_naming_the_count() -> None:
    with pytest.raises(WorkflowError, match="makes 300 combinations"):
        Matrix({"a": list(range(30)), "b": list(range(10))})


def test_a_matrix_expansion_is_named_needed_and_targeted_by_its_full_name(tmp_path: Path, event_log: EventLog) -> None:
    root = Node(
        "root",
        parallel=True,
        children=[matrix_node(values={"py": ["3.11", "3.12"]}), cmd("after", needs=["test (3.12)"])],
    )
    fake = FakeExecutor({"test (3.11)": Step(block=True)})

    async def after_runs() -> None:
        await fake.started_event("after").wait()
        e.interrupt(15)

    e = engine(tmp_path, root, fake, event_log)
    run(e, after_runs)
    assert "after" in fake.started  # it did not wait for the 3.11 expansion


def test_needs_of_a_matrix_wait_for_every_expansion(tmp_path: Path, event_log: EventLog) -> None:
    root = Node("root", parallel=True, children=[matrix_node(values={"py": ["a", "b"]}), cmd("after", needs=["test"])])
    fake = FakeExecutor()
    run(engine(tmp_path, root, fake, event_log))
    assert fake.started[-1] == "after"
    assert len(fake.started) == 3


def test_fail_fast_cancels_the_other_expansions(tmp_path: Path, event_log: EventLog) -> None:
    root = Node("root", children=[matrix_node(values={"py": ["a", "b"]})])
    fake = FakeExecutor({"test (a)": Step(exit_code=1), "test (b)": Step(block=True)})
    e = engine(tmp_path, root, fake, event_log, max_fail=10)
    assert run(e) == 1
    assert statuses(e)["test (b)"] is CANCELLED


def test_without_fail_fast_the_other_expansions_go_on(tmp_path: Path, event_log: EventLog) -> None:
    root = Node("root", children=[matrix_node(values={"py": ["a", "b"]}, fail_fast=False), cmd("after")])
    gate = asyncio.Event()
    fake = FakeExecutor({"test (a)": Step(exit_code=1), "test (b)": Step(gate=gate)})

    async def release_b() -> None:
        await fake.wait_until(lambda: "test (a)" in fake.finished)
        gate.set()

    e = engine(tmp_path, root, fake, event_log)
    assert run(e, release_b) == 1
    assert statuses(e)["test (b)"] is SUCCEEDED
    assert statuses(e)["test"] is FAILED
    assert statuses(e)["after"] is SKIPPED


def test_max_parallel_bounds_the_expansions_running_at_once(tmp_path: Path, event_log: EventLog) -> None:
    root = Node("root", children=[matrix_node(values={"n": list(range(6))}, max_parallel=2)])
    fake = FakeExecutor()
    assert run(engine(tmp_path, root, fake, event_log)) == 0
    assert fake.max_running == 2


def test_a_matrix_value_reaches_the_command(tmp_path: Path, event_log: EventLog) -> None:
    node = Node("t", executable=Command("echo ${{ matrix.py }}"), matrix=Matrix({"py": ["3.12"]}))
    fake = FakeExecutor()
    run(engine(tmp_path, Node("root", children=[node]), fake, event_log))
    executable = fake.jobs["t (3.12)"].executable
    assert isinstance(executable, Command)
    assert executable.cmd == "echo 3.12"


# -- outputs --------------------------------------------------------------------------------


def write_outputs(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("version=1.2.3\nnotes<<EOF\nline 1\nline 2\nEOF\n")


class WritesOutputs(FakeExecutor):
    """Writes ``version=1.2.3`` to the outputs file of ``producer``; records every command it is given."""

    async def execute(self, job: Job, sink: OutputSink) -> Outcome:
        if job.node == "producer":
            await asyncio.to_thread(write_outputs, Path(job.env["WTFLOW_OUTPUT"]))
        return await super().execute(job, sink)


def test_a_later_node_reads_an_output_through_needs(tmp_path: Path, event_log: EventLog) -> None:
    root = Node(
        "root",
        parallel=True,
        children=[
            cmd("producer"),
            Node(
                "consumer",
                executable=Command(["echo", "${{ needs.producer.outputs.version }}", "${{ needs.producer.result }}"]),
                needs=["producer"],
            ),
        ],
    )
    fake = WritesOutputs()
    e = engine(tmp_path, root, fake, event_log)
    assert run(e) == 0
    executable = fake.jobs["consumer"].executable
    assert isinstance(executable, Command)
    assert executable.cmd == ("echo", "1.2.3", "success")


def test_outputs_are_told_with_the_node_finishing(tmp_path: Path, event_log: EventLog) -> None:
    fake = WritesOutputs()
    run(engine(tmp_path, Node("root", children=[cmd("producer")]), fake, event_log))
    finished = [event for event in event_log.events if isinstance(event, NodeFinished) and event.node == "producer"]
    assert finished[0].outputs == {"version": "1.2.3", "notes": "line 1\nline 2"}


def test_naming_an_output_of_a_node_not_waited_for_is_an_error() -> None:
    with pytest.raises(WorkflowError, match="does not wait for 'a'") as caught:
        Workflow(
            "wf",
            Node(
                "root",
                parallel=True,
                children=[cmd("a"), Node("b", executable=Command("echo ${{ needs.a.outputs.x }}"))],
            ),
        )
    assert caught.value.node == "b"
    assert caught.value.field == ("command",)


def test_an_output_of_a_node_waited_for_through_the_tree_is_allowed() -> None:
    Workflow("wf", Node("root", children=[cmd("a"), Node("b", executable=Command("echo ${{ needs.a.outputs.x }}"))]))


def test_timeout_from_an_expression_is_a_duration(tmp_path: Path, event_log: EventLog) -> None:
    node = Node("t", executable=Command("sleep 1", timeout="${{ matrix.limit }}"), matrix=Matrix({"limit": ["2m"]}))
    fake = FakeExecutor()
    run(engine(tmp_path, Node("root", children=[node]), fake, event_log))
    assert fake.jobs["t (2m)"].timeout == 120


def test_a_timeout_expression_that_is_no_duration_fails_the_node(tmp_path: Path, event_log: EventLog) -> None:
    node = Node("t", executable=Command("true", timeout="${{ vars.greeting }}"))
    e = engine(tmp_path, Node("root", children=[node]), FakeExecutor(), event_log)
    assert run(e) == 1
    assert e.result is not None
    assert "timeout" in (e.result["t"].error or "")
