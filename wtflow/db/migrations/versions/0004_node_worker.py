"""Nodes run on a cluster: the worker each node's last attempt ran on.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the column to node runs (nullable: a node that ran on the runner's machine has none)."""
    op.add_column("wtflow_node_runs", sa.Column("worker", sa.Text(), nullable=True))


def downgrade() -> None:
    """Drop the column."""
    with op.batch_alter_table("wtflow_node_runs") as batch:
        batch.drop_column("worker")
