"""Opening a database from a URL as users write it, with settings that make concurrent runs safe."""

from __future__ import annotations

import importlib.util
import sqlite3
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from wtflow.errors import BackendUnavailable, ConfigError

SQLITE_BUSY_TIMEOUT_MS = 60_000
# libpq settings: give up connecting after 10 s; on a connection whose network died (packets
# dropped, no reset), fail a statement within about a minute instead of the system's TCP
# timeout of a quarter of an hour, so the writer's own retries and warning take over.
POSTGRES_CONNECT_ARGS = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 60_000,  # ms that sent data may stay unacknowledged
}


def normalise_url(url: str) -> URL:
    """The SQLAlchemy URL for ``url``: ``postgresql://`` and ``postgres://`` use psycopg 3."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"database URL {url!r} is not valid; use e.g. sqlite:///path/to/wtflow.db or postgresql://user@host/db"
        ) from None
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername == "postgresql+psycopg" and importlib.util.find_spec("psycopg") is None:
        raise BackendUnavailable("PostgreSQL needs the psycopg driver: pip install 'wtflow[postgres]'")
    if not parsed.drivername.startswith(("sqlite", "postgresql")):
        shown = parsed.render_as_string(hide_password=True)
        raise ConfigError(f"database URL {shown}: only sqlite:// and postgresql:// are supported")
    return parsed


def reason(exc: BaseException) -> str:
    """The first line of what the driver said: enough to tell an outage from a mistake."""
    return (str(exc).strip().splitlines() or ["unknown error"])[0]


def display_url(url: str) -> str:
    """``url`` with any password hidden, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user_info, _, host = parts.netloc.rpartition("@")
    return parts._replace(netloc=f"{user_info.partition(':')[0]}:***@{host}").geturl()


def unavailable(url: str, exc: BaseException) -> BackendUnavailable:
    """The error that says the database at ``url`` cannot be used, and what its driver said."""
    return BackendUnavailable(f"database {display_url(url)} is unavailable: {reason(exc)}")


def _enable_wal(cursor: Any) -> None:
    """Switch to WAL, retrying while the file is locked.

    SQLite answers "database is locked" here without waiting for its busy timeout while
    another connection opens the same new file.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
        else:
            return
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def _configure_sqlite(connection: Any) -> None:
    """Apply wtflow's settings to a new SQLite connection.

    WAL lets readers run beside the one writer. Transactions are begun by hand with ``BEGIN
    IMMEDIATE`` (SQLAlchemy's recipe for pysqlite), which takes the write lock up front, so a
    transaction never fails half-way upgrading a read lock ("database is locked"), and
    creating or migrating the schema is serialised across processes.
    """
    connection.isolation_level = None
    cursor = connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        _enable_wal(cursor)
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _sqlite_settings(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        _configure_sqlite(dbapi_connection)

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _make_sqlite_directory(database: str | None) -> None:
    """Create the directory a SQLite database file goes in."""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def open_engine(url: str) -> Engine:
    """A SQLAlchemy engine for ``url``, not connected yet (blocking: call from a worker thread)."""
    parsed = normalise_url(url)
    if parsed.drivername.startswith("sqlite"):
        _make_sqlite_directory(parsed.database)
        engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        _sqlite_settings(engine)
        return engine
    return create_engine(parsed, pool_pre_ping=True, connect_args=POSTGRES_CONNECT_ARGS)
