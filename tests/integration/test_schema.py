"""The schema is the tables of wtflow.db.tables: created from them, migrated by Alembic to the same, under one lock."""

from __future__ import annotations

import concurrent.futures
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.exc import DBAPIError

from wtflow.db import schema
from wtflow.db.connect import open_engine
from wtflow.db.history import open_history
from wtflow.db.tables import VERSION_TABLE, metadata
from wtflow.errors import BackendUnavailable


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = open_engine(database_url)
    yield engine
    engine.dispose()


def drift(engine: Engine) -> list[object]:
    """What Alembic's autogenerate would change to make the database match the tables."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return list(compare_metadata(context, metadata))


def revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return schema.current_revision(connection)


def test_head_constant_is_the_newest_migration() -> None:
    config = Config()
    config.set_main_option("script_location", str(schema.MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == schema.HEAD


def test_the_migrations_build_the_tables_without_drift(engine: Engine) -> None:
    """Alembic's autogenerate finds nothing to change in a database the migrations built."""
    with engine.begin() as connection:
        schema.migrate(connection)
    assert drift(engine) == []
    assert revision(engine) == schema.HEAD


def test_a_new_database_gets_the_tables_stamped_at_head(engine: Engine) -> None:
    schema.upgrade(engine)
    assert drift(engine) == []
    assert revision(engine) == schema.HEAD


def test_a_new_databases_stamp_is_the_one_alembic_writes(engine: Engine, tmp_path: Path) -> None:
    """Stamped without Alembic, the database looks to Alembic as its own stamp would: the same table and row."""
    schema.upgrade(engine)
    theirs = create_engine(f"sqlite:///{tmp_path / 'alembic-stamped.db'}")
    try:
        with theirs.begin() as connection:
            metadata.create_all(connection)
            schema._alembic("stamp", connection)
        assert _version_table(engine) == _version_table(theirs)
    finally:
        theirs.dispose()


def test_a_database_at_alembics_base_is_migrated_to_head(engine: Engine) -> None:
    with engine.begin() as connection:  # what `alembic stamp base` leaves: the version table, empty
        connection.execute(text(f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL)"))
    schema.upgrade(engine)
    assert drift(engine) == []
    assert revision(engine) == schema.HEAD


def test_database_with_tables_but_no_revision_is_left_to_the_migrations(engine: Engine) -> None:
    # A database where only some of wtflow's tables exist is not "empty": Alembic decides.
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE wtflow_runs (id VARCHAR(64) PRIMARY KEY)"))
    # The first migration creates wtflow_runs: it fails, where create_all would have passed the table by.
    with pytest.raises(DBAPIError, match="already exists"):
        schema.upgrade(engine)
    # ... and its transaction is rolled back: no table created beside it, no revision stamped.
    assert inspect(engine).get_table_names() == ["wtflow_runs"]
    assert revision(engine) is None


def test_a_database_of_a_newer_wtflow_is_explained(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    open_history(url).dispose()
    engine = open_engine(url)
    with engine.begin() as connection:
        connection.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = 'newer'"))  # noqa: S608 - a constant
    engine.dispose()
    # Alembic was asked, and knows no such revision: a clear error instead of a traceback.
    with pytest.raises(BackendUnavailable, match=r"Can't locate revision identified by 'newer'.*upgrade wtflow"):
        open_history(url)


def test_a_database_at_head_is_opened_without_importing_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    open_history(url).dispose()
    script = (
        "import sys; from wtflow.db.history import open_history; "
        "open_history(sys.argv[1]).dispose(); "
        "print(sorted(m for m in sys.modules if m.startswith('alembic')))"
    )
    result = subprocess.run([sys.executable, "-c", script, url], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def upgrade_in_parallel(url: str, count: int) -> None:
    def upgrade() -> None:
        engine = open_engine(url)
        try:
            schema.upgrade(engine)
        finally:
            engine.dispose()

    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        for future in [pool.submit(upgrade) for _ in range(count)]:
            future.result()


def test_concurrent_upgrades_of_one_sqlite_file_all_succeed(tmp_path: Path) -> None:
    # Many rounds: the race of first opens of a new file ("database is locked" when switching
    # to WAL) shows up rarely.
    for round_ in range(100):
        url = f"sqlite:///{tmp_path / f'db{round_}.sqlite'}"
        upgrade_in_parallel(url, 8)
        engine = open_engine(url)
        assert revision(engine) == schema.HEAD
        assert set(inspect(engine).get_table_names()) == {VERSION_TABLE, *metadata.tables}
        engine.dispose()


@pytest.mark.postgres
def test_concurrent_upgrades_of_postgres_all_succeed(postgres_url: str) -> None:
    upgrade_in_parallel(postgres_url, 8)  # raises the first upgrade's error, if one failed
    engine = open_engine(postgres_url)
    try:
        assert revision(engine) == schema.HEAD
        assert set(inspect(engine).get_table_names()) == {VERSION_TABLE, *metadata.tables}
        assert drift(engine) == []
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_connections_notice_a_dead_network_within_a_minute(postgres_url: str) -> None:
    engine = open_engine(postgres_url)
    try:
        with engine.connect() as connection:
            raw = connection.connection.dbapi_connection
            assert raw is not None
            probe = socket.socket(fileno=os.dup(raw.pgconn.socket))
            try:
                assert probe.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
                assert probe.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
                assert probe.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 60_000
            finally:
                probe.close()
    finally:
        engine.dispose()


def _version_table(engine: Engine) -> tuple[object, ...]:
    inspector = inspect(engine)
    columns = [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(VERSION_TABLE)]
    key = inspector.get_pk_constraint(VERSION_TABLE)
    with engine.connect() as connection:
        rows = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).all()  # noqa: S608 - a constant
    return columns, key["constrained_columns"], [tuple(row) for row in rows]
