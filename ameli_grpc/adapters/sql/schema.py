"""The SQL tables: accounts, trusted devices, provisional codes and account setups, RFI, audit.

Declared once here for the repositories; the migrations under ``migrations/``
create the same schema by hand (a test checks that both agree). Every time is
stored as aware UTC, read back as aware UTC on PostgreSQL and SQLite alike.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    CHAR,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

# Named constraints, so that later (batch) migrations can find them by name on both backends.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """An aware datetime stored as UTC; naive datetimes are refused (they are bugs).

    SQLite has no time zones: the value is stored as naive UTC text and made
    aware again when read. PostgreSQL stores a ``timestamptz``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime given to a UTC column")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"unexpected {type(value).__name__} in a datetime column")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


metadata = MetaData(naming_convention=NAMING_CONVENTION)

accounts = Table(
    "accounts",
    metadata,
    Column("account_id", String(32), primary_key=True),
    Column("nir", CHAR(13), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("email", String(320), nullable=True),
    Column("email_validated", Boolean, nullable=False),
    Column("mobile_phone", String(32), nullable=True),
    Column("created_time", UtcDateTime, nullable=False),
    Column("updated_time", UtcDateTime, nullable=False),
)

trusted_devices = Table(
    "trusted_devices",
    metadata,
    Column("token_hash", String(128), primary_key=True),
    Column(
        "account_id",
        String(32),
        ForeignKey("accounts.account_id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("created_time", UtcDateTime, nullable=False),
    Column("expire_time", UtcDateTime, nullable=False),
    Column("last_use_time", UtcDateTime, nullable=True),
)

provisional_codes = Table(
    "provisional_codes",
    metadata,
    Column("nir", CHAR(13), primary_key=True),
    Column("code_hash", String(255), nullable=False),
    Column("expire_time", UtcDateTime, nullable=False),
)

account_setups = Table(
    "account_setups",
    metadata,
    Column("token_hash", CHAR(64), primary_key=True),
    Column("nir", CHAR(13), nullable=False, index=True),
    Column("created_time", UtcDateTime, nullable=False),
    Column("expire_time", UtcDateTime, nullable=False),
)

rfi_affiliations = Table(
    "rfi_affiliations",
    metadata,
    Column("nir", CHAR(13), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("updated_time", UtcDateTime, nullable=False),
    CheckConstraint("status IN ('affiliated', 'pending', 'not_covered')", name="status_known"),
)

audit_events = Table(
    "audit_events",
    metadata,
    # SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT.
    Column(
        "id",
        BigInteger().with_variant(Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("kind", String(64), nullable=False),
    Column("nir_ref", String(128), nullable=False, index=True),
    Column("account_id", String(32), nullable=True),
    Column("advisor_id", String(64), nullable=True),
    Column("detail", Text, nullable=True),
    Column("client_ip", String(64), nullable=True),
    Column("occurred_time", UtcDateTime, nullable=False, index=True),
    Column("caller", String(64), nullable=True),
    Column("reason", String(500), nullable=True),
    Column("user_agent", String(512), nullable=True),
    Column("request_id", String(128), nullable=True),
)
