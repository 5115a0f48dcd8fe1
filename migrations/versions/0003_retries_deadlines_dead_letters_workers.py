"""Retries wait in PostgreSQL, deadlines, scheduled starts, dead letters, worker heartbeats.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 00:30:03.838278

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


NODE_STATUSES = "'PENDING', 'QUEUED', 'RUNNING', 'COMPLETED', 'FAILED', 'SKIPPED', 'UPSTREAM_FAILED', 'CANCELLED'"


def upgrade() -> None:
    """Upgrade schema."""
    op.drop_constraint(op.f("ck_node_executions_status"), "node_executions", type_="check")
    op.create_check_constraint(
        op.f("ck_node_executions_status"), "node_executions", f"status IN ({NODE_STATUSES}, 'UP_FOR_RETRY')"
    )
    op.create_table(
        "workers",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("hostname", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("tracks_current", sa.Boolean(), nullable=False),
        sa.Column("current_node_execution_id", sa.Uuid(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_workers")),
    )
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("execution_id", sa.Uuid(), nullable=False),
        sa.Column("workflow_id", sa.Uuid(), nullable=False),
        sa.Column("node_execution_id", sa.Uuid(), nullable=False),
        sa.Column("node_id", sa.String(length=100), nullable=False),
        sa.Column("handler", sa.String(length=100), nullable=False),
        sa.Column("error_class", sa.String(length=200), nullable=False),
        sa.Column("category", sa.String(length=40), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("traceback", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["executions.id"],
            name=op.f("fk_dead_letters_execution_id_executions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["node_execution_id"],
            ["node_executions.id"],
            name=op.f("fk_dead_letters_node_execution_id_node_executions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["workflow_id"], ["workflows.id"], name=op.f("fk_dead_letters_workflow_id_workflows")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
    )
    op.create_index(op.f("ix_dead_letters_created_at"), "dead_letters", ["created_at"], unique=False)
    op.create_index(op.f("ix_dead_letters_execution_id"), "dead_letters", ["execution_id"], unique=False)
    op.create_index(
        op.f("ix_dead_letters_workflow_id_created_at"), "dead_letters", ["workflow_id", "created_at"], unique=False
    )
    op.add_column("executions", sa.Column("max_retries", sa.Integer(), nullable=False, server_default="0"))
    op.alter_column("executions", "max_retries", server_default=None)
    op.add_column("executions", sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("executions", sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("executions", sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        op.f("ix_executions_deadline_at"),
        "executions",
        ["deadline_at"],
        unique=False,
        postgresql_where=sa.text("status = 'RUNNING' AND deadline_at IS NOT NULL"),
    )
    op.create_index(
        op.f("ix_executions_finished_at"),
        "executions",
        ["finished_at"],
        unique=False,
        postgresql_where=sa.text("finished_at IS NOT NULL"),
    )
    op.create_index(
        op.f("ix_executions_retry_at"),
        "executions",
        ["retry_at"],
        unique=False,
        postgresql_where=sa.text("status = 'RETRYING'"),
    )
    op.create_index(
        op.f("ix_executions_scheduled_at"),
        "executions",
        ["scheduled_at"],
        unique=False,
        postgresql_where=sa.text("status = 'PENDING'"),
    )
    op.add_column("node_executions", sa.Column("not_before", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        op.f("ix_node_executions_not_before"),
        "node_executions",
        ["not_before"],
        unique=False,
        postgresql_where=sa.text("status = 'UP_FOR_RETRY'"),
    )
    op.create_index(
        op.f("ix_node_executions_queued_at"),
        "node_executions",
        ["queued_at"],
        unique=False,
        postgresql_where=sa.text("status = 'QUEUED'"),
    )
    op.create_index(
        op.f("ix_node_executions_started_at"),
        "node_executions",
        ["started_at"],
        unique=False,
        postgresql_where=sa.text("status = 'RUNNING'"),
    )
    op.add_column("workflows", sa.Column("timeout_seconds", sa.Integer(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    op.execute("UPDATE node_executions SET status = 'FAILED' WHERE status = 'UP_FOR_RETRY'")
    op.drop_constraint(op.f("ck_node_executions_status"), "node_executions", type_="check")
    op.create_check_constraint(op.f("ck_node_executions_status"), "node_executions", f"status IN ({NODE_STATUSES})")
    op.drop_column("workflows", "timeout_seconds")
    op.drop_index(
        op.f("ix_node_executions_started_at"),
        table_name="node_executions",
        postgresql_where=sa.text("status = 'RUNNING'"),
    )
    op.drop_index(
        op.f("ix_node_executions_queued_at"),
        table_name="node_executions",
        postgresql_where=sa.text("status = 'QUEUED'"),
    )
    op.drop_index(
        op.f("ix_node_executions_not_before"),
        table_name="node_executions",
        postgresql_where=sa.text("status = 'UP_FOR_RETRY'"),
    )
    op.drop_column("node_executions", "not_before")
    op.drop_index(
        op.f("ix_executions_scheduled_at"), table_name="executions", postgresql_where=sa.text("status = 'PENDING'")
    )
    op.drop_index(
        op.f("ix_executions_retry_at"), table_name="executions", postgresql_where=sa.text("status = 'RETRYING'")
    )
    op.drop_index(
        op.f("ix_executions_finished_at"), table_name="executions", postgresql_where=sa.text("finished_at IS NOT NULL")
    )
    op.drop_index(
        op.f("ix_executions_deadline_at"),
        table_name="executions",
        postgresql_where=sa.text("status = 'RUNNING' AND deadline_at IS NOT NULL"),
    )
    op.drop_column("executions", "deadline_at")
    op.drop_column("executions", "scheduled_at")
    op.drop_column("executions", "retry_at")
    op.drop_column("executions", "max_retries")
    op.drop_index(op.f("ix_dead_letters_workflow_id_created_at"), table_name="dead_letters")
    op.drop_index(op.f("ix_dead_letters_execution_id"), table_name="dead_letters")
    op.drop_index(op.f("ix_dead_letters_created_at"), table_name="dead_letters")
    op.drop_table("dead_letters")
    op.drop_table("workers")
