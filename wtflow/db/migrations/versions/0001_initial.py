"""Runs, node executions and artifacts.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the three tables of run history."""
    op.create_table(
        "wtflow_runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("workflow", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
    )
    op.create_index("ix_wtflow_runs_workflow", "wtflow_runs", ["workflow"])
    op.create_index("ix_wtflow_runs_status", "wtflow_runs", ["status"])
    op.create_index("ix_wtflow_runs_started_at", "wtflow_runs", ["started_at"])
    op.create_table(
        "wtflow_node_runs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.Text(), primary_key=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["wtflow_runs.id"], ondelete="CASCADE"),
    )
    op.create_table(
        "wtflow_artifacts",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("node", sa.Text(), primary_key=True),
        sa.Column("name", sa.Text(), primary_key=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id", "node"], ["wtflow_node_runs.run_id", "wtflow_node_runs.name"], ondelete="CASCADE"
        ),
    )


def downgrade() -> None:
    """Drop the tables."""
    op.drop_table("wtflow_artifacts")
    op.drop_table("wtflow_node_runs")
    op.drop_table("wtflow_runs")
