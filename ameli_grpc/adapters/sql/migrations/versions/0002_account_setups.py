"""Account setups: the tokens a provisional code turns into, for the account-creation flow.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "account_setups",
        sa.Column("token_hash", sa.CHAR(64), nullable=False),
        sa.Column("nir", sa.CHAR(13), nullable=False),
        sa.Column("created_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expire_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_account_setups")),
    )
    op.create_index(op.f("ix_account_setups_nir"), "account_setups", ["nir"])


def downgrade() -> None:
    op.drop_index(op.f("ix_account_setups_nir"), table_name="account_setups")
    op.drop_table("account_setups")
