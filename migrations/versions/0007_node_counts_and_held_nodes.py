"""Node counts by status on each execution, and the nodes each worker holds.

An execution's `node_counts` replaces `nodes_unfinished` and `nodes_failed`: the
same countdown, plus what a status poll answers without reading every node. A
worker's `running` lists every node it holds (a batch, its thread pool), where
`current_node_execution_id` named one.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 07:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = (
    "PENDING",
    "QUEUED",
    "RUNNING",
    "UP_FOR_RETRY",
    "DEFERRED",
    "COMPLETED",
    "FAILED",
    "SKIPPED",
    "UPSTREAM_FAILED",
    "CANCELLED",
)


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column(
        "executions",
        sa.Column("node_counts", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
    )
    zeros = ", ".join(f"'{s}', 0" for s in STATUSES)
    op.execute(
        f"""
        UPDATE executions e SET node_counts = jsonb_build_object({zeros}) || COALESCE(
            (SELECT jsonb_object_agg(status, n) FROM
                (SELECT status, count(*) AS n FROM node_executions WHERE execution_id = e.id GROUP BY status) c),
            '{{}}'::jsonb)
        """
    )
    op.drop_column("executions", "nodes_unfinished")
    op.drop_column("executions", "nodes_failed")
    op.add_column(
        "workers",
        sa.Column("running", postgresql.ARRAY(sa.Uuid()), server_default=sa.text("'{}'::uuid[]"), nullable=False),
    )
    op.drop_column("workers", "current_node_execution_id")


def downgrade() -> None:
    """Downgrade schema."""
    op.add_column("workers", sa.Column("current_node_execution_id", sa.Uuid(), nullable=True))
    op.drop_column("workers", "running")
    op.add_column("executions", sa.Column("nodes_failed", sa.Integer(), server_default="0", nullable=False))
    op.add_column("executions", sa.Column("nodes_unfinished", sa.Integer(), server_default="0", nullable=False))
    op.execute(
        """
        UPDATE executions SET
            nodes_unfinished = COALESCE((node_counts->>'PENDING')::int, 0) + COALESCE((node_counts->>'QUEUED')::int, 0)
                + COALESCE((node_counts->>'RUNNING')::int, 0) + COALESCE((node_counts->>'UP_FOR_RETRY')::int, 0)
                + COALESCE((node_counts->>'DEFERRED')::int, 0),
            nodes_failed = COALESCE((node_counts->>'FAILED')::int, 0) + COALESCE((node_counts->>'CANCELLED')::int, 0)
        """
    )
    op.drop_column("executions", "node_counts")
