"""Bringing a database's schema up to date with Alembic, safely when many processes start at once.

The database writer creates new databases itself (:mod:`wtflow.db.ddl`) and comes here only
for a database it finds older than :data:`HEAD`; ``wtflow runs`` comes here always. PostgreSQL
serialises the processes with an advisory lock; SQLite with the write lock that ``BEGIN
IMMEDIATE`` takes. A database already at the newest revision costs one query and does not
import Alembic. An empty database gets the tables of :mod:`wtflow.db.ddl` and is stamped with
the newest revision, as Alembic's cookbook recommends ("building an up to date database from
scratch"); a test checks that this gives exactly the schema the migrations build.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import DBAPIError

from wtflow.db.connect import open_engine
from wtflow.db.ddl import LOCK_KEY, TABLES, statements
from wtflow.db.plain import HEAD, VERSION_TABLE, Dialect, display_url, reason
from wtflow.errors import BackendUnavailable

MIGRATIONS = Path(__file__).with_name("migrations")


def current_revision(connection: Connection) -> str | None:
    """The database's schema revision, ``None`` for a database wtflow has not set up."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    return connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def open_upgraded(url: str) -> Engine:
    """An engine for ``url`` with the schema up to date; :class:`BackendUnavailable` if unreachable."""
    engine = open_engine(url)
    try:
        upgrade(engine)
    except DBAPIError as exc:
        engine.dispose()
        raise BackendUnavailable(f"database {display_url(url)} is unavailable: {reason(exc.orig or exc)}") from None
    except BaseException:  # e.g. a revision this wtflow does not know
        engine.dispose()
        raise
    return engine


def upgrade(engine: Engine) -> None:
    """Bring the database to the newest revision (blocking: call from a worker thread)."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        tables = set(inspect(connection).get_table_names())
        if VERSION_TABLE in tables:
            if connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar() == HEAD:
                return
        elif not tables & TABLES:
            create_from_scratch(connection)
            return
        migrate(connection)


def create_from_scratch(connection: Connection) -> None:
    """Create the tables of an empty database and stamp it with :data:`HEAD` (see :mod:`wtflow.db.ddl`)."""
    dialect: Dialect = "postgresql" if connection.dialect.name == "postgresql" else "sqlite"
    for statement in statements(dialect):
        connection.exec_driver_sql(statement)


def migrate(connection: Connection) -> None:
    """Apply every migration the database lacks, with Alembic, inside the caller's transaction.

    :class:`BackendUnavailable` for a revision this wtflow does not know: a newer wtflow's.
    """
    from alembic import command
    from alembic.config import Config
    from alembic.util import CommandError

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    try:
        command.upgrade(config, "head")
    except CommandError as exc:
        raise BackendUnavailable(
            f"the database's schema cannot be brought up to date ({exc}); if a newer wtflow wrote it, "
            "upgrade wtflow, or use another database (--db-url)"
        ) from None
