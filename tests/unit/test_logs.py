"""JSON logs of node output: written a chunk at a time, read back exactly as structlog writes them."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog

from wtflow import Command, Node, Workflow, log
from wtflow.events import (
    Event,
    NodeFinished,
    NodeOutput,
    NodeRetrying,
    NodeStarted,
    NodeStatus,
    RunFinished,
    RunStarted,
    RunStatus,
)
from wtflow.log import LogFormat, OutputLines
from wtflow.observers.console import SummaryTable
from wtflow.observers.logs import LogObserver

LINES = ["plain", 'say "hi"', "back\\slash", "tab\there", "caf\u00e9 \u2603", "", "\x00wtflow-line\x00"]


@pytest.fixture
def stream(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    monkeypatch.setattr(log, "_json_stream", None)  # put back afterwards, like structlog's defaults
    yield io.StringIO()
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def records(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def without_time(record: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in record.items() if k != "timestamp"}


def test_output_lines_read_back_as_the_events_structlog_writes_one_by_one(stream: io.StringIO) -> None:
    log.configure(LogFormat.JSON, stream=stream)
    structlog.contextvars.bind_contextvars(run_id="r1")
    for line in LINES:
        structlog.get_logger("wtflow").info("output", node="n", stream="stdout", line=line)
    one_by_one = records(stream)
    stream.truncate(0)
    stream.seek(0)

    lines = OutputLines.for_configured()
    assert lines is not None
    assert lines.write("n", "stdout", LINES)

    assert [without_time(r) for r in records(stream)] == [without_time(r) for r in one_by_one]
    assert [r["line"] for r in records(stream)] == LINES


def test_output_lines_are_not_written_below_the_configured_level(stream: io.StringIO) -> None:
    log.configure(LogFormat.JSON, level="warning", stream=stream)
    lines = OutputLines.for_configured()
    assert lines is not None
    assert lines.write("n", "stdout", ["quiet"])
    assert stream.getvalue() == ""


def test_output_lines_decline_when_another_field_holds_the_placeholder(stream: io.StringIO) -> None:
    log.configure(LogFormat.JSON, stream=stream)
    structlog.contextvars.bind_contextvars(odd="\x00wtflow-line\x00")
    lines = OutputLines.for_configured()
    assert lines is not None
    assert not lines.write("n", "stdout", ["x"])
    assert stream.getvalue() == ""


def test_output_lines_exist_only_for_json_logs(stream: io.StringIO) -> None:
    log.configure(LogFormat.CONSOLE, stream=stream)
    assert OutputLines.for_configured() is None


def test_log_observer_logs_a_chunk_line_by_line_in_order(stream: io.StringIO) -> None:
    log.configure(LogFormat.JSON, stream=stream)
    observer = LogObserver(output=True)
    observer.notify(NodeOutput("r1", "n", "stderr", b"one\ntwo\r\nthree\n"))
    observer.notify(NodeOutput("r1", "n", "stderr", b"four\n"))
    assert [(r["node"], r["stream"], r["line"]) for r in records(stream)] == [
        ("n", "stderr", "one"),
        ("n", "stderr", "two"),
        ("n", "stderr", "three"),
        ("n", "stderr", "four"),
    ]


def test_log_observer_without_wtflows_json_logs_logs_through_structlog(stream: io.StringIO) -> None:
    # A library user's own structlog configuration: each line goes through it.
    log.configure(LogFormat.CONSOLE, stream=io.StringIO())
    with structlog.testing.capture_logs() as captured:
        LogObserver(output=True).notify(NodeOutput("r1", "n", "stdout", b"a\nb\n"))
    assert [(c["event"], c["line"]) for c in captured] == [("output", "a"), ("output", "b")]


@pytest.mark.parametrize(
    "data",
    [
        {"event": "node_finished", "node": "n", "exit_code": None, "duration": 0.25, "ok": True, "list": [1, "a"]},
        {"line": 'say "hi"\tback\\slash \x00 \x1f'},
        {"big": 10**30, "nested": {"empty": {}, "none": [None]}},
    ],
)
def test_a_log_line_means_what_json_dumps_would_write(data: dict[str, object]) -> None:
    assert json.loads(log.dumps(data, default=repr)) == json.loads(json.dumps(data, default=repr))


def test_a_log_line_with_text_beyond_ascii_stays_ascii_as_json_dumps_writes_it() -> None:
    data = {"line": "caf\u00e9 \u2603"}
    assert log.dumps(data, default=repr) == json.dumps(data, default=repr)


def test_a_value_msgspec_does_not_know_is_written_by_json_dumps_with_its_default() -> None:
    data = {"path": Path("/tmp/x"), "n": 1}
    assert log.dumps(data, default=repr) == json.dumps(data, default=repr)


def _lifecycle(tmp_path: Path) -> list[Event]:
    workflow = Workflow("wf", Node("root", children=[Node("a", executable=Command("true"))]))
    start = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    end = start + timedelta(seconds=1.5)
    return [
        RunStarted("r1", workflow, tmp_path / "r1", start, "host", 1),
        NodeStarted("r1", "a", "root/a", start, 1),
        NodeRetrying("r1", "a", 1, 3, 0.5),
        NodeFinished("r1", "a", "root/a", NodeStatus.FAILED, 3, start, end, 2, "exit code 3 caf\u00e9", ()),
        NodeFinished("r1", "root", "root", NodeStatus.SUCCEEDED, None, start, end, 1, None, ()),
        RunFinished("r1", "wf", RunStatus.FAILED, 1, start, end, "a failed"),
    ]


def _logged(events: list[Event], stream: io.StringIO, observer: LogObserver) -> list[dict[str, object]]:
    for event in events:
        observer.notify(event)
    return records(stream)


def test_json_lifecycle_lines_carry_the_run_node_level_and_utc_time(stream: io.StringIO, tmp_path: Path) -> None:
    log.configure(LogFormat.JSON, stream=stream)
    logged = _logged(_lifecycle(tmp_path), stream, LogObserver())
    assert [r["event"] for r in logged] == [
        "run_started",
        "node_started",
        "node_retrying",
        "node_finished",
        "node_finished",
        "run_finished",
    ]
    failed = logged[3]
    assert (failed["node"], failed["status"], failed["exit_code"], failed["attempt"]) == ("a", "failed", 3, 2)
    assert (failed["level"], failed["error"], failed["duration"]) == ("error", "exit code 3 caf\u00e9", 1.5)
    assert logged[2]["level"] == "warning"
    assert all(r["run_id"] == "r1" for r in logged)
    assert all(datetime.fromisoformat(str(r["timestamp"])).utcoffset() == timedelta(0) for r in logged)


def test_lifecycle_lines_go_through_structlog_once_it_is_configured_otherwise(stream: io.StringIO) -> None:
    log.configure(LogFormat.JSON, stream=stream)
    with structlog.testing.capture_logs() as captured:
        LogObserver().notify(NodeStarted("r1", "a", "root/a", datetime.now(UTC), 1))
    assert [(c["event"], c["node"]) for c in captured] == [("node_started", "a")]
    assert stream.getvalue() == ""


def test_a_retry_logs_why_the_attempt_failed(stream: io.StringIO) -> None:
    log.configure(LogFormat.JSON, stream=stream)
    LogObserver().notify(NodeRetrying("r1", "a", 1, None, 0.5, "timed out after 2s"))
    (line,) = records(stream)
    assert line == line | {"event": "node_retrying", "level": "warning", "error": "timed out after 2s", "attempt": 1}


def test_console_lifecycle_lines_are_short_and_name_the_run_once(tmp_path: Path) -> None:
    stream = io.StringIO()
    log.configure(LogFormat.CONSOLE, stream=stream)
    for event in _lifecycle(tmp_path):
        LogObserver().notify(event)
    lines = [line.split("] ", 1)[1] for line in stream.getvalue().splitlines()]
    assert lines[0].startswith("run_started ")
    assert "run_id=r1" in lines[0]
    assert lines[1:] == [
        "a started",
        "a failed; retrying in 0.50s",
        "a failed in 1.50s (attempt 2), exit 3 error='exit code 3 café'",
        "root succeeded in 1.50s",
        "wf failed in 1.50s, exit 1",
    ]
    assert all(len(line) < 100 for line in lines[1:])


def test_the_summary_table_lists_failed_nodes_first_with_status_duration_and_exit_code(tmp_path: Path) -> None:
    stream = io.StringIO()
    table = SummaryTable(stream)
    workflow = Workflow(
        "wf", Node("root", children=[Node("ok", executable=Command("true")), Node("bad", executable=Command("false"))])
    )
    start = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    table.notify(RunStarted("r1", workflow, tmp_path, start, "host", 1))
    table.notify(NodeFinished("r1", "ok", "root/ok", NodeStatus.SUCCEEDED, 0, start, start + timedelta(seconds=2), 1))
    table.notify(NodeFinished("r1", "bad", "root/bad", NodeStatus.FAILED, 1, start, start + timedelta(seconds=0.5), 2))
    table.notify(NodeFinished("r1", "root", "root", NodeStatus.FAILED, None, start, start + timedelta(seconds=2), 1))
    table.notify(RunFinished("r1", "wf", RunStatus.FAILED, 1, start, start + timedelta(seconds=2)))
    assert stream.getvalue() == (
        "NODE  STATUS              DURATION  EXIT\n"
        "bad   failed (attempt 2)  0.50s     1\n"
        "ok    succeeded           2.00s     0\n"
    )
