"""Property-based tests: the loader never crashes, and the scheduler keeps its promises on random DAGs."""

from __future__ import annotations

import asyncio
import re
import string
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.conftest import EventLog
from wtflow import Command, Config, Engine, Node, NodeStatus, RunConfig, StorageConfig, Workflow, WorkflowError
from wtflow.artifacts import MemoryStore
from wtflow.db.messages import from_micros, to_micros
from wtflow.events import NodeFinished, NodeStarted
from wtflow.executors.fake import FakeExecutor, Step
from wtflow.loader import load_yaml
from wtflow.masking import Masker
from wtflow.model import STDOUT
from wtflow.output import MAX_PENDING_LINE
from wtflow.yamldoc import plain_data

KEYS = ["name", "root", "nodes", "command", "children", "needs", "parallel", "timeout", "retries", "env", "x"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False), st.text(string.printable, max_size=8)
)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)),
    max_leaves=25,
)


LOCATED = re.compile(r"^fuzz\.yml:\d+:\d+: \S")


def load_or_error(text: str) -> Workflow | str:
    try:
        return load_yaml(text, "fuzz.yml", Path("/tmp"))
    except WorkflowError as exc:
        return str(exc)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_loader_returns_a_workflow_or_a_located_error_for_any_document(document: object) -> None:
    outcome = load_or_error(yaml.safe_dump(document))
    assert isinstance(outcome, Workflow) or all(LOCATED.match(line) for line in outcome.splitlines()), outcome


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_loader_survives_arbitrary_text(text: str) -> None:
    outcome = load_or_error(text)
    assert isinstance(outcome, Workflow) or all(LOCATED.match(line) for line in outcome.splitlines()), outcome


@st.composite
def dags(draw: st.DrawFn) -> tuple[Workflow, set[str], int]:
    """A graph-form workflow: node i may need any earlier node; some nodes fail."""
    count = draw(st.integers(1, 14))
    nodes = []
    for index in range(count):
        needs = draw(st.sets(st.integers(0, index - 1), max_size=3)) if index else set()
        nodes.append(Node(f"n{index}", executable=Command("true"), needs=[f"n{i}" for i in sorted(needs)]))
    failing = draw(st.sets(st.sampled_from([n.name for n in nodes]), max_size=2))
    cap = draw(st.integers(1, 4))
    return Workflow("dag", Node("root", parallel=True, children=nodes)), failing, cap


def run_dag(
    workflow: Workflow, failing: set[str], cap: int, ignore: bool, tmp: Path
) -> tuple[Engine, EventLog, FakeExecutor]:
    fake = FakeExecutor({name: Step(exit_code=1) for name in failing})
    log = EventLog()
    config = Config(storage=StorageConfig(tmp), run=RunConfig(max_parallel=cap, ignore_failure=ignore))
    engine = Engine(workflow, config, observers=[log], executor=fake)
    asyncio.run(engine.run_async())
    return engine, log, fake


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dags(), st.booleans())
def test_random_dags_respect_needs_cap_and_failure_policy(
    tmp_path: Path, dag: tuple[Workflow, set[str], int], ignore: bool
) -> None:
    workflow, failing, cap = dag
    engine, log, fake = run_dag(workflow, failing, cap, ignore, tmp_path)
    assert fake.max_running <= cap
    started = [e.node for e in log.of(NodeStarted) if e.node != "root"]  # type: ignore[union-attr]
    assert len(started) == len(set(started))  # every node at most once
    # Events reach observers in the order they happened: each need finished before its dependent started.
    position = {
        (type(e).__name__, e.node): index  # type: ignore[union-attr]
        for index, e in enumerate(log.events)
        if isinstance(e, NodeStarted | NodeFinished)
    }
    for name in started:
        for need in workflow.nodes[name].needs:
            assert position[("NodeFinished", need)] < position[("NodeStarted", name)]
            assert need in fake.finished
    assert engine.result is not None
    statuses = {name: r.status for name, r in engine.result.nodes.items() if name != "root"}
    if ignore or not failing:
        assert set(fake.started) == set(statuses)  # everything ran
    if failing & set(fake.started):
        assert engine.result.exit_code == 1
    elif not failing:
        assert engine.result.exit_code == 0
        assert set(statuses.values()) == {NodeStatus.SUCCEEDED}
    if not ignore and failing & set(fake.started):
        assert NodeStatus.FAILED in statuses.values()
        # after the first failure nothing new starts: a node that did not run was skipped, or
        # cancelled if it had begun (its files were opening) when the run stopped
        for name, status in statuses.items():
            if name not in fake.started:
                expected = NodeStatus.CANCELLED if name in started else NodeStatus.SKIPPED
                assert status is expected, name


def _sink_output(chunks: list[bytes]) -> tuple[list[bytes], bytes]:
    """What a node's output writer forwards for ``chunks`` written to stdout, and what it stores."""
    emitted: list[bytes] = []
    store = MemoryStore()

    async def main() -> None:
        await store.open_run("run", ["a"], Masker())
        sink = store.output("a", 1, lambda _stream, lines: emitted.append(lines))
        for chunk in chunks:
            await sink.write(STDOUT, chunk)
        await sink.aclose()

    asyncio.run(main())
    return emitted, store.data[("a", STDOUT)]


pieces = st.one_of(st.binary(max_size=40), st.sampled_from([b"\n", b"x" * (MAX_PENDING_LINE - 3), b"a\nb"]))


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(st.lists(pieces, max_size=12))
def test_output_passes_on_every_byte_in_order_and_in_whole_lines_unless_a_line_is_too_long(
    chunks: list[bytes],
) -> None:
    assume(b"::add-mask::" not in b"".join(chunks))  # would mask what follows (tests/unit/test_masking.py)
    emitted, stored = _sink_output(chunks)
    assert b"".join(emitted) == b"".join(chunks) == stored
    for piece in emitted[:-1]:  # the last may be the final line without its newline
        assert piece
        assert piece.endswith(b"\n") or len(piece) - (piece.rfind(b"\n") + 1) > MAX_PENDING_LINE


@given(st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-7, minutes=-30))])))
def test_a_time_sent_to_the_database_writer_comes_back_to_the_microsecond(moment: datetime) -> None:
    back = from_micros(to_micros(moment))
    assert back == moment
    assert back.tzinfo is UTC


yaml_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.dates(),
    st.datetimes(timezones=st.just(UTC)),
)
yaml_values = st.recursive(
    yaml_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),  # keys that are not text go to the careful parser
    ),
    max_leaves=20,
)


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(yaml_values, st.sampled_from([False, True, None]))
def test_the_fast_yaml_reading_gives_what_pyyamls_safe_loader_gives(value: object, flow: bool | None) -> None:
    text = yaml.safe_dump(value, default_flow_style=flow, allow_unicode=True)
    assume("*" not in text and "!" not in text)  # those always go to the careful parser
    assert plain_data(text) == yaml.safe_load(text)


def test_a_key_that_is_not_text_leaves_the_fast_reading_to_the_careful_parser() -> None:
    assert plain_data("{1: x}") is None  # the careful parser says where the key is
    assert plain_data("{a: 1}") == {"a": 1}
