"""Bringing a database's schema up to date with Alembic, safely when many processes start at once.

Every process that opens a database runs this. PostgreSQL serialises them with an advisory
lock; SQLite with the write lock that ``BEGIN IMMEDIATE`` takes. A database already at the
newest revision costs one query and does not import Alembic at all.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, Engine, inspect, text

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
    """Apply every migration the database lacks (blocking: call from a worker thread)."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        if current_revision(connection) == HEAD:
            return
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
