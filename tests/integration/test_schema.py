"""The database schema is managed by Alembic migrations that match the table models."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from wtflow.db import schema
from wtflow.db.connect import open_engine
from wtflow.db.tables import Base


def test_head_constant_is_the_newest_migration() -> None:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(schema.MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == schema.HEAD


def check_migrations_match_models(url: str) -> None:
    engine = open_engine(url)
    try:
        schema.upgrade(engine)
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"version_table": schema.VERSION_TABLE})
            assert compare_metadata(context, Base.metadata) == []
            assert schema.current_revision(connection) == schema.HEAD
    finally:
        engine.dispose()


def test_migrations_build_exactly_the_models_on_sqlite(tmp_path: Path) -> None:
    check_migrations_match_models(f"sqlite:///{tmp_path / 'db.sqlite'}")


@pytest.mark.postgres
def test_migrations_build_exactly_the_models_on_postgres(postgres_url: str) -> None:
    check_migrations_match_models(postgres_url)


def upgrade_in_parallel(url: str, count: int) -> None:
    def one() -> None:
        engine = open_engine(url)
        try:
            schema.upgrade(engine)
        finally:
            engine.dispose()

    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        for future in [pool.submit(one) for _ in range(count)]:
            future.result()


def test_concurrent_upgrades_of_one_sqlite_file_all_succeed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade_in_parallel(url, 8)
    engine = open_engine(url)
    assert set(inspect(engine).get_table_names()) >= {"wtflow_runs", "wtflow_node_runs", "wtflow_artifacts"}
    engine.dispose()


@pytest.mark.postgres
def test_concurrent_upgrades_of_postgres_all_succeed(postgres_url: str) -> None:
    upgrade_in_parallel(postgres_url, 8)
