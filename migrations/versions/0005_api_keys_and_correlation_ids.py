"""API keys (hashes only) and the correlation id of each audit row.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 01:27:12.836164

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=12), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("role IN ('reader', 'writer', 'admin')", name=op.f("ck_api_keys_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
        sa.UniqueConstraint("name", name=op.f("uq_api_keys_name")),
    )
    op.add_column("execution_logs", sa.Column("correlation_id", sa.String(length=200), nullable=True))
    # An audit row written without a correlation id (by the scheduler, say) takes its
    # execution's: one rule for every insert, and no lookup when the caller knows it.
    op.execute(
        """
        CREATE FUNCTION execution_logs_correlation() RETURNS trigger AS $$
        BEGIN
            IF NEW.correlation_id IS NULL THEN
                SELECT correlation_id INTO NEW.correlation_id FROM executions WHERE id = NEW.execution_id;
            END IF;
            RETURN NEW;
        END
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        "CREATE TRIGGER execution_logs_correlation BEFORE INSERT ON execution_logs "
        "FOR EACH ROW EXECUTE FUNCTION execution_logs_correlation()"
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.execute("DROP TRIGGER execution_logs_correlation ON execution_logs")
    op.execute("DROP FUNCTION execution_logs_correlation()")
    op.drop_column("execution_logs", "correlation_id")
    op.drop_table("api_keys")
