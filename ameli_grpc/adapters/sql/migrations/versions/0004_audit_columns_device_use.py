"""The audit's own columns (SPEC §8) and when a trusted device was last used.

``audit_events.actor`` becomes ``advisor_id``; ``reason``, ``user_agent`` and
``request_id`` get their columns instead of being folded into ``detail``; an
index on the time serves ``audit export`` and ``purge --audit-older-than``.
``trusted_devices.last_use_time`` is what the advisor sees (GetAccount).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as table:
        table.alter_column("actor", new_column_name="advisor_id", type_=sa.String(64))
        table.add_column(sa.Column("reason", sa.String(500), nullable=True))
        table.add_column(sa.Column("user_agent", sa.String(512), nullable=True))
        table.add_column(sa.Column("request_id", sa.String(128), nullable=True))
    op.create_index(op.f("ix_audit_events_occurred_time"), "audit_events", ["occurred_time"])
    with op.batch_alter_table("trusted_devices") as table:
        table.add_column(sa.Column("last_use_time", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trusted_devices") as table:
        table.drop_column("last_use_time")
    op.drop_index(op.f("ix_audit_events_occurred_time"), table_name="audit_events")
    with op.batch_alter_table("audit_events") as table:
        table.drop_column("request_id")
        table.drop_column("user_agent")
        table.drop_column("reason")
        table.alter_column("advisor_id", new_column_name="actor", type_=sa.String(255))
