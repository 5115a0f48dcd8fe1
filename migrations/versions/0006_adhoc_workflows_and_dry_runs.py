"""Ad-hoc workflow versions (the peers' submit-and-trigger API) and dry-run executions.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 03:10:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    # A constant default: PostgreSQL adds these columns without rewriting the tables.
    op.add_column("workflows", sa.Column("adhoc", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column("executions", sa.Column("dry_run", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_column("executions", "dry_run")
    op.drop_column("workflows", "adhoc")
