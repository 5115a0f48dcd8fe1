"""Ad-hoc workflows left without an execution by earlier purges: deleted with their nodes.
From now on the scheduler's purge takes an ad-hoc workflow with its last execution.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 08:20:00.000000

"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Delete the orphans."""
    op.execute(
        "DELETE FROM workflows w WHERE w.adhoc AND NOT EXISTS (SELECT 1 FROM executions e WHERE e.workflow_id = w.id)"
    )


def downgrade() -> None:
    """Nothing to put back: they had nothing left to show."""
