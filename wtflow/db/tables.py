"""The tables of run history: the one definition of the schema. Names start with ``wtflow_`` to share a team database.

A new database gets these tables from ``metadata.create_all``; the Alembic migrations build
the same schema on an older one (a test compares them with Alembic's autogenerate). Plain
SQLAlchemy Core tables: the writer process builds its statements from them and needs no ORM.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKeyConstraint,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)

# The table Alembic keeps the schema's revision in.
VERSION_TABLE = "wtflow_alembic_version"


class UTCDateTime(TypeDecorator[datetime]):
    """A moment, stored in UTC and always read back timezone-aware, in UTC.

    PostgreSQL keeps the zone (``TIMESTAMP WITH TIME ZONE``). SQLite has no time type:
    SQLAlchemy stores the fields as text (``2026-12-06 08:00:00.000000``) and reads them back
    without a zone, so the value is converted to UTC before its zone is dropped, and read back
    as UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """``value`` in UTC, without its zone on SQLite; a time without a zone is a mistake."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"a time without its zone cannot be stored: {value!r}")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """The stored time, timezone-aware in UTC."""
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

runs = Table(
    "wtflow_runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("workflow", Text, nullable=False, index=True),
    Column("status", String(16), nullable=False, index=True),
    Column("exit_code", Integer),
    Column("started_at", UTCDateTime, nullable=False, index=True),
    Column("finished_at", UTCDateTime),
    Column("host", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("heartbeat_at", UTCDateTime),
    Column("error", Text),
    # The directory of the workflow's file, resolved (none for a workflow built in Python): two
    # projects sharing a database may each have a workflow of the same name.
    Column("workflow_dir", Text),
)
"""One run of a workflow."""

node_runs = Table(
    "wtflow_node_runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("name", Text, primary_key=True),
    Column("position", Integer, nullable=False),
    Column("path", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("exit_code", Integer),
    Column("attempts", Integer, nullable=False, default=0),
    Column("started_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Column("error", Text),
    # A cached or reused node: where its result came from (a cache key, an earlier run's id),
    # and the seconds the node took when it actually ran, which this run saved.
    Column("reused_from", Text),
    Column("saved", Float),
    # The address of the cluster worker (Dask) its last attempt ran on; empty when it ran on the runner's machine.
    Column("worker", Text),
    ForeignKeyConstraint(["run_id"], ["wtflow_runs.id"], ondelete="CASCADE"),
)
"""One node's execution within a run (all its attempts)."""

artifacts = Table(
    "wtflow_artifacts",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("node", Text, primary_key=True),
    Column("name", Text, primary_key=True),
    Column("path", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    ForeignKeyConstraint(["run_id", "node"], ["wtflow_node_runs.run_id", "wtflow_node_runs.name"], ondelete="CASCADE"),
)
"""One stored artifact of a node's execution."""

node_outputs = Table(
    "wtflow_node_outputs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("node", Text, primary_key=True),
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
    ForeignKeyConstraint(["run_id", "node"], ["wtflow_node_runs.run_id", "wtflow_node_runs.name"], ondelete="CASCADE"),
)
"""One output (``key=value``) a node wrote for later nodes to read, masked as the run showed it."""
