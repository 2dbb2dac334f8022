"""A new database's schema as SQL text, and creating it with the driver alone.

A fresh clone in CI has no database, so creating one is the first step of most CI runs: it
must not cost SQLAlchemy's import (0.2 s of CPU). The statements are what SQLAlchemy's
``CreateTable`` gives for the models in :mod:`wtflow.db.tables`; tests check that they build
exactly the schema the migrations build, on SQLite and on PostgreSQL. A database that has some
of wtflow's tables but not the newest revision is left to the migrations
(:mod:`wtflow.db.schema`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wtflow.db.plain import HEAD, VERSION_TABLE, Dialect

if TYPE_CHECKING:
    from wtflow.db.plain import Database

TABLES = frozenset({"wtflow_runs", "wtflow_node_runs", "wtflow_artifacts"})
# PostgreSQL serialises processes creating or migrating the schema with this advisory lock.
LOCK_KEY = 0x777466  # "wtf"
_TIMESTAMP = {"sqlite": "DATETIME", "postgresql": "TIMESTAMP WITH TIME ZONE"}
_STATEMENTS = (
    """CREATE TABLE wtflow_runs (
        id VARCHAR(64) NOT NULL,
        workflow TEXT NOT NULL,
        status VARCHAR(16) NOT NULL,
        exit_code INTEGER,
        started_at {timestamp} NOT NULL,
        finished_at {timestamp},
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        heartbeat_at {timestamp},
        error TEXT,
        PRIMARY KEY (id)
    )""",
    "CREATE INDEX ix_wtflow_runs_started_at ON wtflow_runs (started_at)",
    "CREATE INDEX ix_wtflow_runs_status ON wtflow_runs (status)",
    "CREATE INDEX ix_wtflow_runs_workflow ON wtflow_runs (workflow)",
    """CREATE TABLE wtflow_node_runs (
        run_id VARCHAR(64) NOT NULL,
        name TEXT NOT NULL,
        position INTEGER NOT NULL,
        path TEXT NOT NULL,
        status VARCHAR(16) NOT NULL,
        exit_code INTEGER,
        attempts INTEGER NOT NULL,
        started_at {timestamp},
        finished_at {timestamp},
        error TEXT,
        PRIMARY KEY (run_id, name),
        FOREIGN KEY(run_id) REFERENCES wtflow_runs (id) ON DELETE CASCADE
    )""",
    """CREATE TABLE wtflow_artifacts (
        run_id VARCHAR(64) NOT NULL,
        node TEXT NOT NULL,
        name TEXT NOT NULL,
        path TEXT NOT NULL,
        size BIGINT NOT NULL,
        PRIMARY KEY (run_id, node, name),
        FOREIGN KEY(run_id, node) REFERENCES wtflow_node_runs (run_id, name) ON DELETE CASCADE
    )""",
    # The table Alembic itself would create (alembic.ddl.impl.DefaultImpl.version_table_impl).
    f"""CREATE TABLE {VERSION_TABLE} (
        version_num VARCHAR(32) NOT NULL,
        CONSTRAINT {VERSION_TABLE}_pkc PRIMARY KEY (version_num)
    )""",
)
STAMP = f"INSERT INTO {VERSION_TABLE} (version_num) VALUES ('{HEAD}')"  # noqa: S608 - constants


def statements(dialect: Dialect) -> list[str]:
    """The statements that create the newest schema in an empty database, stamp included."""
    return [statement.format(timestamp=_TIMESTAMP[dialect]) for statement in _STATEMENTS] + [STAMP]


def prepare(database: Database) -> bool:
    """Create the schema if the database is empty; whether it is at the newest revision now.

    ``False`` means the database needs migrating. Concurrent first runs are safe: PostgreSQL
    takes :data:`LOCK_KEY`, SQLite the write lock of ``BEGIN IMMEDIATE``.
    """
    with database.transaction() as cursor:
        if database.dialect == "postgresql":
            cursor.execute("SELECT pg_advisory_xact_lock(:key)", {"key": LOCK_KEY})
            listed = cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        else:
            listed = cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        tables = {str(row[0]) for row in listed}
        if VERSION_TABLE in tables:
            rows = cursor.execute(f"SELECT version_num FROM {VERSION_TABLE}")  # noqa: S608 - a constant
            return bool(rows) and rows[0][0] == HEAD
        if tables & TABLES:
            return False
        for statement in statements(database.dialect):
            cursor.execute(statement)
    return True
