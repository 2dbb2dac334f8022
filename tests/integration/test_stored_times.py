"""Times in the database: stored as UTC, always read back timezone-aware in UTC, including rows older wtflows wrote."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import StatementError

from wtflow.db.connect import open_engine
from wtflow.db.crashes import CRASHED_ERROR, mark_crashed
from wtflow.db.history import get_run, list_runs, open_history
from wtflow.db.tables import runs

MOMENT = datetime(2026, 12, 6, 8, 30, 15, 123456, tzinfo=UTC)
ELSEWHERE = timezone(timedelta(hours=-5))


def run_row(run_id: str, started_at: datetime, **columns: object) -> dict[str, object]:
    return {
        "id": run_id,
        "workflow": "wf",
        "status": "succeeded",
        "started_at": started_at,
        "host": "h",
        "pid": 1,
        **columns,
    }


def test_a_time_in_any_zone_reads_back_as_the_same_moment_in_utc(database_url: str) -> None:
    engine = open_history(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(insert(runs), [run_row("r1", MOMENT.astimezone(ELSEWHERE), finished_at=None)])
        (run,) = list_runs(engine)
    finally:
        engine.dispose()
    assert run.started_at == MOMENT
    assert run.started_at.tzinfo is UTC
    assert run.finished_at is None


def test_a_time_without_its_zone_is_refused(tmp_path: Path) -> None:
    engine = open_history(f"sqlite:///{tmp_path / 'runs.db'}")
    try:
        with pytest.raises(StatementError, match="without its zone"), engine.begin() as connection:
            connection.execute(insert(runs), [run_row("r1", MOMENT.replace(tzinfo=None))])
    finally:
        engine.dispose()


def test_sqlite_keeps_the_utc_fields_as_text_as_earlier_wtflows_wrote_and_read_them(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    engine = open_history(f"sqlite:///{path}")
    try:
        with engine.begin() as connection:
            connection.execute(insert(runs), [run_row("r1", MOMENT.astimezone(ELSEWHERE))])
    finally:
        engine.dispose()
    with sqlite3.connect(path) as raw:
        stored = raw.execute("SELECT started_at FROM wtflow_runs").fetchone()[0]
    raw.close()
    assert stored == "2026-12-06 08:30:15.123456"


def test_rows_an_earlier_wtflow_wrote_to_sqlite_read_back_in_utc(tmp_path: Path) -> None:
    # The earlier writer stored each time's UTC fields as text with the driver alone.
    path = tmp_path / "runs.db"
    open_history(f"sqlite:///{path}").dispose()
    with sqlite3.connect(path) as raw:
        raw.execute(
            "INSERT INTO wtflow_runs (id, workflow, status, started_at, finished_at, host, pid, heartbeat_at) "
            "VALUES ('old', 'wf', 'running', '2026-12-06 08:30:15.123456', NULL, 'elsewhere', 1, "
            "'2026-12-06 08:30:15.123456')"
        )
        raw.execute(
            "INSERT INTO wtflow_node_runs (run_id, name, position, path, status, attempts, started_at) "
            "VALUES ('old', 'a', 0, 'a', 'running', 1, '2026-12-06 08:30:16.000000')"
        )
    raw.close()
    engine = open_engine(f"sqlite:///{path}")  # not open_history: it would judge the heartbeat by today's clock
    try:
        run = get_run(engine, "old")
        # Its heartbeat is read as the UTC time it is: stale an hour later, not before.
        assert mark_crashed(engine, now=MOMENT + timedelta(minutes=4)) == 0
        assert mark_crashed(engine, now=MOMENT + timedelta(hours=1)) == 1
        with engine.connect() as connection:
            crashed = connection.execute(select(runs.c.status, runs.c.finished_at, runs.c.error)).one()
    finally:
        engine.dispose()
    assert (run.started_at, run.heartbeat_at) == (MOMENT, MOMENT)
    assert run.nodes[0].started_at == datetime(2026, 12, 6, 8, 30, 16, tzinfo=UTC)
    assert tuple(crashed) == ("crashed", MOMENT + timedelta(hours=1), CRASHED_ERROR)
