"""Creating or migrating a database's schema: one way, under one lock, for the writer and history readers alike.

The schema is :data:`wtflow.db.tables.metadata`. An empty database gets it from
``metadata.create_all`` and is stamped with the newest revision, as Alembic's cookbook
recommends ("building an up to date database from scratch"; the stamp is the row Alembic's
``stamp`` writes, in the table it would create); an older one is brought up to date
by the Alembic migrations in ``migrations/``. Processes that start at once are serialised by a
PostgreSQL advisory lock, or by the write lock SQLite's ``BEGIN IMMEDIATE`` takes (see
:mod:`wtflow.db.connect`). A database already at :data:`HEAD` costs one query and does not
import Alembic.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    insert,
    inspect,
    select,
    text,
)

from wtflow.db.tables import VERSION_TABLE, metadata
from wtflow.errors import BackendUnavailable

MIGRATIONS = Path(__file__).with_name("migrations")
# The newest revision in migrations/versions (a test checks they agree): known without Alembic.
HEAD = "0005"
# PostgreSQL serialises processes creating or migrating the schema with this advisory lock.
LOCK_KEY = 0x777466  # "wtf"
# The table Alembic keeps its revision in, as Alembic itself creates it: a new database is
# stamped with a plain insert, so a run's writer never imports Alembic.
_version = Table(
    VERSION_TABLE,
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name=f"{VERSION_TABLE}_pkc"),
)
_TAKE_LOCK = text("SELECT pg_advisory_xact_lock(:key)").bindparams(key=LOCK_KEY)


def current_revision(connection: Connection) -> str | None:
    """The database's schema revision, ``None`` for a database wtflow has not set up."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    return connection.scalar(select(_version.c.version_num))


def upgrade(engine: Engine) -> None:
    """Bring the database to :data:`HEAD`, creating its tables if it has none (blocking: call from a worker thread).

    The driver's errors come as SQLAlchemy's ``DBAPIError``; a revision this wtflow does not
    know (a newer wtflow's) as :class:`BackendUnavailable`.
    """
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(_TAKE_LOCK)
        tables = set(inspect(connection).get_table_names())
        if VERSION_TABLE in tables:
            if connection.scalar(select(_version.c.version_num)) == HEAD:
                return
        elif not tables & set(metadata.tables):
            metadata.create_all(connection)
            _version.create(connection)
            connection.execute(insert(_version).values(version_num=HEAD))
            return
        _alembic("upgrade", connection)


def _alembic(command_name: str, connection: Connection) -> None:
    """Run Alembic's ``stamp`` or ``upgrade`` to head inside the caller's transaction."""
    from alembic import command
    from alembic.config import Config
    from alembic.util import CommandError

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    try:
        getattr(command, command_name)(config, "head")
    except CommandError as exc:
        raise BackendUnavailable(
            f"the database's schema cannot be brought up to date ({exc}); if a newer wtflow wrote it, "
            "upgrade wtflow, or use another database (--db-url)"
        ) from None


def migrate(connection: Connection) -> None:
    """Apply every migration the database lacks, inside the caller's transaction (no lock: see :func:`upgrade`)."""
    _alembic("upgrade", connection)
