"""Shared fixtures: event capture, PostgreSQL schemas, and backend availability rules.

A test that needs PostgreSQL or Docker skips with its reason when the backend is missing,
unless ``WTFLOW_REQUIRE_POSTGRES=1`` / ``WTFLOW_REQUIRE_DOCKER=1`` is set (as ``.ci/run``
does), in which case it fails.
"""

from __future__ import annotations

import importlib
import os
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from wtflow.cli import main
from wtflow.events import BaseObserver, Event

POSTGRES_URL = os.environ.get("WTFLOW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


class EventLog(BaseObserver):
    """Keeps every event, for assertions."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def notify(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list[Event]:
        return [event for event in self.events if isinstance(event, kind)]


@pytest.fixture
def event_log() -> EventLog:
    return EventLog()


def missing_backend(reason: str, variable: str) -> None:
    """Skip, or fail when the backend is required."""
    if os.environ.get(variable) == "1":
        pytest.fail(f"{reason} ({variable}=1 makes this a failure)")
    pytest.skip(reason)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL whose default schema is a fresh, empty PostgreSQL schema, dropped afterwards."""
    import sqlalchemy

    try:
        importlib.import_module("psycopg")
    except ImportError as exc:
        missing_backend(f"PostgreSQL driver missing ({exc}): pip install 'wtflow[postgres]'", "WTFLOW_REQUIRE_POSTGRES")
    from wtflow.db.connect import normalise_url

    admin = sqlalchemy.create_engine(normalise_url(POSTGRES_URL))
    schema = f"wtflow_test_{secrets.token_hex(6)}"
    try:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    except sqlalchemy.exc.OperationalError as exc:
        admin.dispose()
        missing_backend(f"PostgreSQL unreachable at {POSTGRES_URL}: {str(exc.orig).strip()}", "WTFLOW_REQUIRE_POSTGRES")
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def wait_for(condition: Callable[[], bool], seconds: float = 60) -> None:
    """Poll ``condition`` until it holds; fail after ``seconds`` (a hang, not a slow machine)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.01)


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch directory the test runs in, with none of wtflow's own settings taken from the environment."""
    monkeypatch.chdir(tmp_path)
    for variable in (
        "WTFLOW_DB_URL",
        "WTFLOW_ARTIFACTS_DIR",
        "WTFLOW_MAX_PARALLEL",
        "WTFLOW_IGNORE_FAILURE",
        "GITHUB_ACTIONS",
        "GITHUB_OUTPUT",
        "GITHUB_STEP_SUMMARY",
    ):
        monkeypatch.delenv(variable, raising=False)
    return tmp_path


def cli(*args: str, env: dict[str, str] | None = None) -> Result:
    """``wtflow ARGS...`` through Click's runner, in this process."""
    return CliRunner().invoke(main, list(args), env=env)


@pytest.fixture
def automaton_builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many values each search automaton the masker builds holds, in order."""
    from wtflow import masking

    built: list[int] = []
    real = masking._automaton

    def counting(values: Sequence[bytes], *, fresh: bool = False) -> Any:
        built.append(len(values))
        return real(values, fresh=fresh)

    monkeypatch.setattr(masking, "_automaton", counting)
    return built


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files whose content the cache reads, in order (the one function through which it reads)."""
    from wtflow import cache

    seen: list[str] = []
    real = cache._read_digest

    def spy(path: str, *, quick: bool = False) -> tuple[bytes, os.stat_result]:
        found = real(path, quick=quick)  # a quick call may refuse (MustRead): then nothing was read
        seen.append(path)
        return found

    monkeypatch.setattr(cache, "_read_digest", spy)
    return seen


@pytest.fixture
def trusted_stats(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stat cache trusts a file's stat however recently it changed.

    A test cannot move a file's ctime back, so a file it writes stays "racily clean" (changed
    less than two seconds ago, never trusted) for two seconds; with this, setting its mtime
    back is enough to make it an old, settled file.
    """
    from wtflow import cache

    monkeypatch.setattr(cache, "RACY_NS", -1)
