"""The database schema is managed by Alembic migrations that match the table models."""

from __future__ import annotations

import concurrent.futures
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import OperationalError

from wtflow.db import ddl, schema, writer
from wtflow.db.connect import open_engine
from wtflow.db.plain import open_database
from wtflow.db.tables import metadata
from wtflow.errors import BackendUnavailable


def test_head_constant_is_the_newest_migration() -> None:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(schema.MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == schema.HEAD


def check_migrations_match_models(url: str) -> None:
    engine = open_engine(url)
    try:
        with engine.begin() as connection:
            schema.migrate(connection)
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"version_table": schema.VERSION_TABLE})
            assert compare_metadata(context, metadata) == []
            assert schema.current_revision(connection) == schema.HEAD
    finally:
        engine.dispose()


def test_migrations_build_exactly_the_models_on_sqlite(tmp_path: Path) -> None:
    check_migrations_match_models(f"sqlite:///{tmp_path / 'db.sqlite'}")


@pytest.mark.postgres
def test_migrations_build_exactly_the_models_on_postgres(postgres_url: str) -> None:
    check_migrations_match_models(postgres_url)


def reflect(connection: Connection) -> dict[str, object]:
    """Every table's columns, keys and indexes as the database reports them."""
    inspector = inspect(connection)
    return {
        table: {
            "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)],
            "primary_key": inspector.get_pk_constraint(table),
            "foreign_keys": sorted(map(repr, inspector.get_foreign_keys(table))),
            "indexes": sorted(map(repr, inspector.get_indexes(table))),
        }
        for table in sorted(inspector.get_table_names())
    }


def create_with_sqlalchemy(url: str) -> None:
    engine = open_engine(url)
    try:
        schema.upgrade(engine)
    finally:
        engine.dispose()


def create_with_the_driver(url: str) -> None:
    database = open_database(url)
    assert database is not None
    try:
        assert ddl.prepare(database)
    finally:
        database.close()


@pytest.fixture(params=[create_with_sqlalchemy, create_with_the_driver])
def create(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """The two ways an empty database gets its schema: ``wtflow runs`` and the run's writer."""
    return cast("Callable[[str], None]", request.param)


def check_empty_database_gets_the_schema_the_migrations_build(url: str, create: Callable[[str], None]) -> None:
    engine = open_engine(url)
    try:
        with engine.begin() as connection:
            schema.migrate(connection)
            migrated = reflect(connection)
            for table in [schema.VERSION_TABLE, *reversed(metadata.sorted_tables)]:
                connection.execute(text(f"DROP TABLE {table if isinstance(table, str) else table.name}"))
        create(url)  # an empty database: the tables of wtflow.db.ddl, stamped
        with engine.connect() as connection:
            assert reflect(connection) == migrated
            context = MigrationContext.configure(connection, opts={"version_table": schema.VERSION_TABLE})
            assert context.get_current_revision() == schema.HEAD
    finally:
        engine.dispose()


def test_empty_sqlite_database_gets_the_schema_the_migrations_build(
    tmp_path: Path, create: Callable[[str], None]
) -> None:
    check_empty_database_gets_the_schema_the_migrations_build(f"sqlite:///{tmp_path / 'db.sqlite'}", create)


@pytest.mark.postgres
def test_empty_postgres_database_gets_the_schema_the_migrations_build(
    postgres_url: str, create: Callable[[str], None]
) -> None:
    check_empty_database_gets_the_schema_the_migrations_build(postgres_url, create)


def test_database_with_tables_but_no_revision_is_left_to_the_migrations(tmp_path: Path) -> None:
    # A database where only some of wtflow's tables exist is not "empty": Alembic decides.
    engine = open_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE wtflow_runs (id VARCHAR(64) PRIMARY KEY)"))
        with pytest.raises(OperationalError, match="already exists"):
            schema.upgrade(engine)
    finally:
        engine.dispose()


def test_the_writer_leaves_a_database_with_tables_but_no_revision_to_the_migrations(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    engine = open_engine(url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE wtflow_runs (id VARCHAR(64) PRIMARY KEY)"))
    engine.dispose()
    database = open_database(url)
    assert database is not None
    try:
        assert not ddl.prepare(database)
    finally:
        database.close()


def test_the_writer_opens_new_and_current_databases_without_importing_sqlalchemy(tmp_path: Path) -> None:
    # SQLAlchemy's import is 0.2 s of CPU on every run's critical path, most of them in CI with a new database.
    script = (
        "import sys; from wtflow.db import writer; "
        "[writer.connect(sys.argv[1]).close() for _ in range(2)]; "  # a new database, then the same one
        "print(sorted(m for m in sys.modules if m.startswith(('sqlalchemy', 'alembic'))))"
    )
    url = f"sqlite:///{tmp_path / 'new' / 'db.sqlite'}"
    result = subprocess.run([sys.executable, "-c", script, url], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
    assert (tmp_path / "new" / "db.sqlite").exists()


def test_the_writer_migrates_an_older_database_through_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    create_with_sqlalchemy(url)
    engine = open_engine(url)
    with engine.begin() as connection:
        connection.execute(text(f"UPDATE {schema.VERSION_TABLE} SET version_num = 'older'"))  # noqa: S608 - a constant
    engine.dispose()
    # Alembic was asked, and knows no such revision: a clear error instead of a traceback.
    with pytest.raises(BackendUnavailable, match=r"Can't locate revision identified by 'older'.*upgrade wtflow"):
        writer.connect(url)


def upgrade_in_parallel(url: str, count: int, create: Callable[[str], None]) -> None:
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        for future in [pool.submit(create, url) for _ in range(count)]:
            future.result()


def test_concurrent_upgrades_of_one_sqlite_file_all_succeed(tmp_path: Path, create: Callable[[str], None]) -> None:
    # Many rounds: the race of first opens of a new file ("database is locked" when switching
    # to WAL) showed up about once in 150 rounds of 8 before it was handled.
    for round_ in range(100):
        url = f"sqlite:///{tmp_path / f'db{round_}.sqlite'}"
        upgrade_in_parallel(url, 8, create)
        engine = open_engine(url)
        assert set(inspect(engine).get_table_names()) >= {"wtflow_runs", "wtflow_node_runs", "wtflow_artifacts"}
        engine.dispose()


@pytest.mark.postgres
def test_concurrent_upgrades_of_postgres_all_succeed(postgres_url: str, create: Callable[[str], None]) -> None:
    upgrade_in_parallel(postgres_url, 8, create)


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
