"""Bringing a database's schema up to date with Alembic, safely when many processes start at once.

Every process that opens a database runs this. PostgreSQL serialises them with an advisory
lock; SQLite with the write lock that ``BEGIN IMMEDIATE`` takes. A database already at the
newest revision costs one query and does not import Alembic at all. An empty database gets
the tables from the models and is stamped with the newest revision, as Alembic's cookbook
recommends ("building an up to date database from scratch"); a test checks that this gives
exactly the schema the migrations build.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Column, Connection, Engine, MetaData, PrimaryKeyConstraint, String, Table, inspect, text

VERSION_TABLE = "wtflow_alembic_version"
HEAD = "0001"  # the newest migration in migrations/versions; a test checks they agree
MIGRATIONS = Path(__file__).with_name("migrations")
_LOCK_KEY = 0x777466  # "wtf"


def current_revision(connection: Connection) -> str | None:
    """The database's schema revision, ``None`` for a database wtflow has not set up."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    return connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def upgrade(engine: Engine) -> None:
    """Bring the database to the newest revision (blocking: call from a worker thread)."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        tables = set(inspect(connection).get_table_names())
        if VERSION_TABLE in tables:
            if connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar() == HEAD:
                return
        elif not tables & {"wtflow_runs", "wtflow_node_runs", "wtflow_artifacts"}:
            create_from_scratch(connection)
            return
        migrate(connection)


def create_from_scratch(connection: Connection) -> None:
    """Create the tables of an empty database from the models and stamp it with :data:`HEAD`."""
    from wtflow.db.tables import metadata

    metadata.create_all(connection)
    # The table Alembic itself would create (alembic.ddl.impl.DefaultImpl.version_table_impl).
    version = Table(
        VERSION_TABLE,
        MetaData(),
        Column("version_num", String(32), nullable=False),
        PrimaryKeyConstraint("version_num", name=f"{VERSION_TABLE}_pkc"),
    )
    version.create(connection)
    connection.execute(version.insert().values(version_num=HEAD))


def migrate(connection: Connection) -> None:
    """Apply every migration the database lacks, with Alembic, inside the caller's transaction."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
