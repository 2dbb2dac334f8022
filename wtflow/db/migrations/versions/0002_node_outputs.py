"""Node outputs: the key=value pairs a node wrote for later nodes.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the table of node outputs."""
    op.create_table(
        "wtflow_node_outputs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("node", sa.Text(), primary_key=True),
        sa.Column("key", sa.Text(), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id", "node"], ["wtflow_node_runs.run_id", "wtflow_node_runs.name"], ondelete="CASCADE"
        ),
    )


def downgrade() -> None:
    """Drop the table."""
    op.drop_table("wtflow_node_outputs")
