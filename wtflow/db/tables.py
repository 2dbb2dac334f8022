"""The tables of run history. Names start with ``wtflow_`` so they can share a team database.

Plain SQLAlchemy Core tables: the database writer is a process of its own, and the ORM would
add 0.05 s to the import it does before a run can start.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, ForeignKeyConstraint, Integer, MetaData, String, Table, Text

metadata = MetaData()

runs = Table(
    "wtflow_runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("workflow", Text, nullable=False, index=True),
    Column("status", String(16), nullable=False, index=True),
    Column("exit_code", Integer),
    Column("started_at", DateTime(timezone=True), nullable=False, index=True),
    Column("finished_at", DateTime(timezone=True)),
    Column("host", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("heartbeat_at", DateTime(timezone=True)),
    Column("error", Text),
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
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("error", Text),
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
