"""Branching (trigger rules, when, branch) and deferral (DEFERRED nodes for `delay`).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 01:20:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = (
    "'PENDING', 'QUEUED', 'RUNNING', 'COMPLETED', 'FAILED', 'SKIPPED', 'UPSTREAM_FAILED', 'CANCELLED', 'UP_FOR_RETRY'"
)


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("node_executions", sa.Column("wake_at", sa.DateTime(timezone=True), nullable=True))
    op.drop_constraint(op.f("ck_node_executions_status"), "node_executions", type_="check")
    op.create_check_constraint(
        op.f("ck_node_executions_status"), "node_executions", f"status IN ({BEFORE}, 'DEFERRED')"
    )
    op.drop_index(op.f("ix_node_executions_not_before"), table_name="node_executions")
    op.create_index(
        op.f("ix_node_executions_not_before"),
        "node_executions",
        ["not_before"],
        unique=False,
        postgresql_where=sa.text("status IN ('UP_FOR_RETRY', 'DEFERRED')"),
    )
    op.add_column(
        "workflow_nodes",
        sa.Column("trigger_rule", sa.String(length=40), server_default="all_success", nullable=False),
    )
    op.add_column("workflow_nodes", sa.Column("when_expression", sa.Text(), nullable=True))
    op.add_column("workflow_nodes", sa.Column("branch", sa.Boolean(), nullable=True))
    op.add_column("workflow_nodes", sa.Column("guard", sa.Text(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_column("workflow_nodes", "guard")
    op.drop_column("workflow_nodes", "branch")
    op.drop_column("workflow_nodes", "when_expression")
    op.drop_column("workflow_nodes", "trigger_rule")
    op.drop_index(op.f("ix_node_executions_not_before"), table_name="node_executions")
    op.create_index(
        op.f("ix_node_executions_not_before"),
        "node_executions",
        ["not_before"],
        unique=False,
        postgresql_where=sa.text("status = 'UP_FOR_RETRY'"),
    )
    op.execute("UPDATE node_executions SET status = 'CANCELLED' WHERE status = 'DEFERRED'")
    op.drop_constraint(op.f("ck_node_executions_status"), "node_executions", type_="check")
    op.create_check_constraint(op.f("ck_node_executions_status"), "node_executions", f"status IN ({BEFORE})")
    op.drop_column("node_executions", "wake_at")
