"""Opening a database from a URL as users write it, with settings that make concurrent runs safe."""

from __future__ import annotations

import importlib.util
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from wtflow.db.plain import (
    POSTGRES_CONNECT_ARGS,
    SQLITE_BUSY_TIMEOUT_MS,
    configure_sqlite,
    make_sqlite_directory,
)
from wtflow.errors import BackendUnavailable, ConfigError


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


def _sqlite_settings(engine: Engine) -> None:
    # WAL lets readers run beside the one writer; BEGIN IMMEDIATE takes the write lock up front,
    # so a transaction never fails half-way upgrading a read lock ("database is locked").
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        configure_sqlite(dbapi_connection)

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def open_engine(url: str) -> Engine:
    """A SQLAlchemy engine for ``url`` (blocking: call from a worker thread)."""
    parsed = normalise_url(url)
    if parsed.drivername.startswith("sqlite"):
        make_sqlite_directory(parsed.database)
        engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        _sqlite_settings(engine)
        return engine
    return create_engine(parsed, pool_pre_ping=True, connect_args=POSTGRES_CONNECT_ARGS)
