"""Indexes for the lists that page newest first by (created_at, id) with no other filter:
executions and workflows (the filtered ones use the indexes that lead with their filter).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 10:00:00.000000

"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_index(op.f("ix_executions_created_at_id"), "executions", ["created_at", "id"])
    op.create_index(op.f("ix_workflows_created_at_id"), "workflows", ["created_at", "id"])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f("ix_workflows_created_at_id"), table_name="workflows")
    op.drop_index(op.f("ix_executions_created_at_id"), table_name="executions")
