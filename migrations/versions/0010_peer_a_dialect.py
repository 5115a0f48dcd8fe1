"""What peer-a's workflows need, and Stepwise's own may use: a node's `condition` (peer-a's
guard grammar), a workflow that fails fast, and a deadline in fractions of a second; and an
execution's own config overrides for some of its nodes (a trigger's `node_params`).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 09:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("workflow_nodes", sa.Column("condition", sa.Text(), nullable=True))
    op.add_column("workflows", sa.Column("fail_fast", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.alter_column("workflows", "timeout_seconds", type_=sa.Double(), existing_nullable=True)
    op.add_column("executions", sa.Column("node_params", postgresql.JSONB(), nullable=True))
    op.alter_column("workflows", "name", type_=sa.String(255), existing_nullable=False)  # peer-a's names


def downgrade() -> None:
    """Downgrade schema."""
    op.alter_column(
        "workflows",
        "timeout_seconds",
        type_=sa.Integer(),
        existing_nullable=True,
        postgresql_using="ceil(timeout_seconds)::integer",
    )
    op.alter_column("workflows", "name", type_=sa.String(200), existing_nullable=False)
    op.drop_column("executions", "node_params")
    op.drop_column("workflows", "fail_fast")
    op.drop_column("workflow_nodes", "condition")
