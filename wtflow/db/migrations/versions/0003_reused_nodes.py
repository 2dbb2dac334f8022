"""Cached and reused nodes: where a node's result came from and the time it saved.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the two columns to node runs (nullable: a node that ran has neither)."""
    op.add_column("wtflow_node_runs", sa.Column("reused_from", sa.Text(), nullable=True))
    op.add_column("wtflow_node_runs", sa.Column("saved", sa.Float(), nullable=True))


def downgrade() -> None:
    """Drop the columns."""
    with op.batch_alter_table("wtflow_node_runs") as batch:
        batch.drop_column("saved")
        batch.drop_column("reused_from")
