"""events.jsonl: every event but output, a line each; a disk that fills up is reported, not raised."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from wtflow import Command, Node, Workflow
from wtflow.events import NodeStarted, RunStarted
from wtflow.observers.eventsfile import EventsFileWriter

WORKFLOW = Workflow("wf", Node("a", executable=Command("true")))


def _tell(observer: EventsFileWriter, run_dir: Path) -> None:
    async def main() -> None:
        moment = datetime(2026, 12, 6, tzinfo=UTC)
        observer.notify(RunStarted("r1", WORKFLOW, run_dir, moment, "host", 1))
        observer.notify(NodeStarted("r1", "a", "a", moment, 1))
        await asyncio.sleep(0)  # the lines of a turn are written on the next
        await observer.aclose()

    asyncio.run(main())


def test_each_event_is_a_json_line(tmp_path: Path) -> None:
    observer = EventsFileWriter()
    _tell(observer, tmp_path)
    lines = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [line["event"] for line in lines] == ["run_started", "node_started"]
    assert observer.warnings() == []


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
def test_a_full_disk_is_a_warning_after_the_run_not_an_error_during_it(tmp_path: Path) -> None:
    (tmp_path / "events.jsonl").symlink_to("/dev/full")  # every write fails as on a full disk
    observer = EventsFileWriter()
    _tell(observer, tmp_path)
    assert observer.warnings() == [f"{tmp_path / 'events.jsonl'} is incomplete: No space left on device"]
