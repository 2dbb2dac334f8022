"""Runs of same-named workflows of several projects in one database: the directory of each run's workflow file.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the column to runs (nullable: earlier runs, and workflows built in Python, have none)."""
    op.add_column("wtflow_runs", sa.Column("workflow_dir", sa.Text(), nullable=True))


def downgrade() -> None:
    """Drop the column."""
    with op.batch_alter_table("wtflow_runs") as batch:
        batch.drop_column("workflow_dir")
