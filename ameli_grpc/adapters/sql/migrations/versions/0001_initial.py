"""Initial schema: accounts, trusted devices, provisional codes, RFI table, audit.

Revision ID: 0001
Revises:
Create Date: 2024-11-26

Hand-written and portable: the same operations run on SQLite and PostgreSQL.
Constraint names follow ``sql_schema.NAMING_CONVENTION`` (as final names,
``op.f``) so that later batch migrations can find them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc_time(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("account_id", sa.String(32), nullable=False),
        sa.Column("nir", sa.CHAR(13), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("email_validated", sa.Boolean(), nullable=False),
        sa.Column("mobile_phone", sa.String(32), nullable=True),
        _utc_time("created_time"),
        _utc_time("updated_time"),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("nir", name=op.f("uq_accounts_nir")),
    )
    op.create_table(
        "trusted_devices",
        sa.Column("token_hash", sa.String(128), nullable=False),
        sa.Column("account_id", sa.String(32), nullable=False),
        _utc_time("created_time"),
        _utc_time("expire_time"),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_trusted_devices")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.account_id"],
            name=op.f("fk_trusted_devices_account_id_accounts"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(op.f("ix_trusted_devices_account_id"), "trusted_devices", ["account_id"])
    op.create_table(
        "provisional_codes",
        sa.Column("nir", sa.CHAR(13), nullable=False),
        sa.Column("code_hash", sa.String(255), nullable=False),
        _utc_time("expire_time"),
        sa.PrimaryKeyConstraint("nir", name=op.f("pk_provisional_codes")),
    )
    op.create_table(
        "rfi_affiliations",
        sa.Column("nir", sa.CHAR(13), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _utc_time("updated_time"),
        sa.PrimaryKeyConstraint("nir", name=op.f("pk_rfi_affiliations")),
        sa.CheckConstraint(
            "status IN ('affiliated', 'pending', 'not_covered')",
            name=op.f("ck_rfi_affiliations_status_known"),
        ),
    )
    op.create_table(
        "audit_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
            autoincrement=True,
        ),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("nir_ref", sa.String(128), nullable=False),
        sa.Column("account_id", sa.String(32), nullable=True),
        sa.Column("actor", sa.String(255), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("client_ip", sa.String(64), nullable=True),
        _utc_time("occurred_time"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index(op.f("ix_audit_events_nir_ref"), "audit_events", ["nir_ref"])


def downgrade() -> None:
    op.drop_index(op.f("ix_audit_events_nir_ref"), table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_table("rfi_affiliations")
    op.drop_table("provisional_codes")
    op.drop_index(op.f("ix_trusted_devices_account_id"), table_name="trusted_devices")
    op.drop_table("trusted_devices")
    op.drop_table("accounts")
