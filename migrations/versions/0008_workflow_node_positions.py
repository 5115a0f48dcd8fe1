"""Each workflow's nodes unique by position, indexed: a page of an execution's nodes costs its size,
and a position is a cursor.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 07:40:00.000000

"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_unique_constraint(
        op.f("uq_workflow_nodes_workflow_id_position"), "workflow_nodes", ["workflow_id", "position"]
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_constraint(op.f("uq_workflow_nodes_workflow_id_position"), "workflow_nodes", type_="unique")
