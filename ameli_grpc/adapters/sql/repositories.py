"""SQL implementations of the account, device, provisional code, audit and RFI ports.

Each call is one unit of work: a function of a connection run by
``Database.transaction`` (one transaction), or by ``Database.statement`` where
the call is one statement (on PostgreSQL it then commits by itself, without
BEGIN and COMMIT); both turn an unreachable database into
``DependencyUnavailable``. The statements of the login's path are built once,
with bound parameters: each call then only binds its values to an already
compiled statement. Rows come back as
the domain's frozen dataclasses; expired rows are returned as they are, the
domain decides what an expiry means.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, String, Table, bindparam, delete, insert, or_, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.sql import Executable, Select
from sqlalchemy.sql.dml import Delete, Insert

from ameli_grpc.adapters.sql.database import Database
from ameli_grpc.adapters.sql.schema import (
    UtcDateTime,
    account_setups,
    accounts,
    audit_events,
    provisional_codes,
    rfi_affiliations,
    trusted_devices,
)
from ameli_grpc.domain.clock import Clock, SystemClock
from ameli_grpc.domain.model import (
    Account,
    AccountSetup,
    Affiliation,
    AuditEvent,
    ProvisionalCode,
    TrustedDevice,
)


def upsert(
    dialect_name: str,
    table: Table,
    values: Mapping[str, Any],
    *,
    key: str,
    update_columns: tuple[str, ...],
) -> Insert:
    """``INSERT ... ON CONFLICT (key) DO UPDATE``: one atomic statement on both backends."""
    statement: postgresql.Insert | sqlite.Insert
    if dialect_name == "postgresql":
        statement = postgresql.insert(table).values(**values)
    elif dialect_name == "sqlite":
        statement = sqlite.insert(table).values(**values)
    else:
        raise ValueError(f"no upsert for the {dialect_name} dialect")
    return statement.on_conflict_do_update(
        index_elements=[key],
        set_={name: statement.excluded[name] for name in update_columns},
    )


def _execute(
    statement: Executable, values: Mapping[str, Any] | None = None
) -> Callable[[Connection], None]:
    """The unit of work of one statement whose result is not needed."""

    def work(connection: Connection) -> None:
        connection.execute(statement, values)

    return work


def deleted_rows(connection: Connection, statement: Delete) -> int:
    """The number of rows the statement deleted."""
    result = cast("CursorResult[Any]", connection.execute(statement))
    return result.rowcount


_ACCOUNT_COLUMNS = (
    accounts.c.account_id,
    accounts.c.nir,
    accounts.c.password_hash,
    accounts.c.email,
    accounts.c.email_validated,
    accounts.c.mobile_phone,
)
_ACCOUNT_BY_NIR = select(*_ACCOUNT_COLUMNS).where(accounts.c.nir == bindparam("nir"))
_ACCOUNT_BY_ID = select(*_ACCOUNT_COLUMNS).where(accounts.c.account_id == bindparam("account_id"))
_WANTED = select(bindparam("nir", type_=String).label("nir")).subquery("wanted")
_CREDENTIALS_OF_NIR = select(
    *(column.label(f"account_{column.name}") for column in _ACCOUNT_COLUMNS),
    provisional_codes.c.code_hash,
    provisional_codes.c.expire_time,
).select_from(
    _WANTED.outerjoin(accounts, accounts.c.nir == _WANTED.c.nir).outerjoin(
        provisional_codes, provisional_codes.c.nir == _WANTED.c.nir
    )
)
_ACCOUNT_UPDATED_ON_IMPORT = (
    "password_hash",
    "email",
    "email_validated",
    "mobile_phone",
    "updated_time",
)


class SqlAccountRepository:
    """The ``AccountRepository`` port on the ``accounts`` table."""

    def __init__(self, database: Database, clock: Clock | None = None) -> None:
        self._database = database
        self._clock = clock or SystemClock()

    async def get_by_nir(self, nir: str) -> Account | None:
        return await self._one(_ACCOUNT_BY_NIR, nir=nir)

    async def get(self, account_id: str) -> Account | None:
        return await self._one(_ACCOUNT_BY_ID, account_id=account_id)

    async def get_with_provisional_code(
        self, nir: str
    ) -> tuple[Account | None, ProvisionalCode | None]:
        """One statement: the NIR, outer-joined to its account and to its provisional code."""
        row = await self._database.statement(
            lambda connection: connection.execute(_CREDENTIALS_OF_NIR, {"nir": nir}).one()._asdict()
        )
        account = None
        if row["account_account_id"] is not None:
            account = Account(**{c.name: row[f"account_{c.name}"] for c in _ACCOUNT_COLUMNS})
        code = None
        if row["code_hash"] is not None:
            code = ProvisionalCode(nir, row["code_hash"], row["expire_time"])
        return account, code

    async def add(self, account: Account) -> None:
        """Insert, or replace the account of the same NIR, keeping that account's id."""
        now = self._clock.now()
        values = {
            "account_id": account.account_id,
            "nir": account.nir,
            "password_hash": account.password_hash,
            "email": account.email,
            "email_validated": account.email_validated,
            "mobile_phone": account.mobile_phone,
            "created_time": now,
            "updated_time": now,
        }
        statement = upsert(
            self._database.dialect_name,
            accounts,
            values,
            key="nir",
            update_columns=_ACCOUNT_UPDATED_ON_IMPORT,
        )
        await self._database.transaction(_execute(statement))

    async def update_password_hash(self, account_id: str, password_hash: str) -> None:
        statement = (
            update(accounts)
            .where(accounts.c.account_id == account_id)
            .values(password_hash=password_hash, updated_time=self._clock.now())
        )
        await self._database.transaction(_execute(statement))

    async def reset(
        self, account_id: str, provisional_code: ProvisionalCode | None, event: AuditEvent
    ) -> bool:
        """One transaction: the account and its devices deleted, the code stored, the row written.

        The devices are deleted explicitly: the foreign key's cascade is a
        safety net, not something to rely on (SQLite only enforces it per
        connection). If the account is already gone nothing else is written
        (its devices went with it); any error rolls the whole of it back.
        """
        dialect_name = self._database.dialect_name

        def reset(connection: Connection) -> bool:
            connection.execute(
                delete(trusted_devices).where(trusted_devices.c.account_id == account_id)
            )
            deleted = deleted_rows(
                connection, delete(accounts).where(accounts.c.account_id == account_id)
            )
            if deleted != 1:
                return False
            if provisional_code is not None:
                connection.execute(_store_provisional_code(dialect_name, provisional_code))
            connection.execute(_AUDIT_INSERT, _audit_values(event))
            return True

        return await self._database.transaction(reset)

    async def _one(self, statement: Select[Any], **values: str) -> Account | None:
        row = await self._database.statement(
            lambda connection: connection.execute(statement, values).first()
        )
        return None if row is None else Account(**row._asdict())


_DEVICE_COLUMNS = (
    trusted_devices.c.token_hash,
    trusted_devices.c.account_id,
    trusted_devices.c.created_time,
    trusted_devices.c.expire_time,
    trusted_devices.c.last_use_time,
)


_DEVICE_BY_HASH = select(*_DEVICE_COLUMNS).where(
    trusted_devices.c.token_hash == bindparam("token_hash")
)
_LAST_USE = trusted_devices.c.last_use_time
_NOW = bindparam("now", type_=UtcDateTime)
_TOUCH_DEVICE = (
    update(trusted_devices)
    .where(
        trusted_devices.c.token_hash == bindparam("device"),
        or_(_LAST_USE.is_(None), _LAST_USE < _NOW),
    )
    .values(last_use_time=_NOW)
)


class SqlTrustedDeviceRepository:
    """The ``TrustedDeviceRepository`` port on the ``trusted_devices`` table."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def add(self, device: TrustedDevice) -> bool:
        """Insert the device; False if its account is gone (an advisor's reset meanwhile).

        The account's foreign key decides, in the database, even against a
        reset committing at the same moment.
        """
        statement = insert(trusted_devices).values(
            token_hash=device.token_hash,
            account_id=device.account_id,
            created_time=device.created_time,
            expire_time=device.expire_time,
            last_use_time=device.last_use_time,
        )
        try:
            await self._database.statement(_execute(statement))
        except sa_exc.IntegrityError as error:
            if not _is_foreign_key_violation(error):
                raise
            return False
        return True

    async def find(self, token_hash: str) -> TrustedDevice | None:
        """The device of that token hash, expired or not."""
        row = await self._database.statement(
            lambda connection: connection.execute(
                _DEVICE_BY_HASH, {"token_hash": token_hash}
            ).first()
        )
        return None if row is None else TrustedDevice(**row._asdict())

    async def list_for_account(self, account_id: str, now: datetime) -> tuple[TrustedDevice, ...]:
        """The account's devices whose ``expire_time`` is after ``now``, oldest first."""
        statement = (
            select(*_DEVICE_COLUMNS)
            .where(trusted_devices.c.account_id == account_id, trusted_devices.c.expire_time > now)
            .order_by(trusted_devices.c.created_time, trusted_devices.c.token_hash)
        )
        rows = await self._database.statement(
            lambda connection: connection.execute(statement).all()
        )
        return tuple(TrustedDevice(**row._asdict()) for row in rows)

    async def touch(self, token_hash: str, now: datetime) -> None:
        """One UPDATE; a later use already recorded (a concurrent login) is not moved back."""
        await self._database.statement(_execute(_TOUCH_DEVICE, {"device": token_hash, "now": now}))

    async def rehash(self, token_hash: str, new_token_hash: str) -> None:
        """One UPDATE of the row's key; a concurrent rehash of the same device finds no row."""
        statement = (
            update(trusted_devices)
            .where(trusted_devices.c.token_hash == token_hash)
            .values(token_hash=new_token_hash)
        )
        await self._database.transaction(_execute(statement))

    async def delete_for_account(
        self, account_id: str, now: datetime, audit_row: Callable[[int], AuditEvent]
    ) -> int:
        """One transaction: the devices still trusted (counted), the rest, the audit row."""
        of_account = trusted_devices.c.account_id == account_id
        still_trusted = delete(trusted_devices).where(
            of_account, trusted_devices.c.expire_time > now
        )

        def revoke(connection: Connection) -> int:
            revoked = deleted_rows(connection, still_trusted)
            connection.execute(delete(trusted_devices).where(of_account))
            connection.execute(_AUDIT_INSERT, _audit_values(audit_row(revoked)))
            return revoked

        return await self._database.transaction(revoke)


class SqlProvisionalCodeRepository:
    """The ``ProvisionalCodeRepository`` port on ``provisional_codes`` and ``account_setups``."""

    def __init__(self, database: Database, clock: Clock | None = None) -> None:
        self._database = database
        self._clock = clock or SystemClock()

    async def put(self, code: ProvisionalCode) -> None:
        """Store the code of the NIR, replacing any earlier one."""
        statement = _store_provisional_code(self._database.dialect_name, code)
        await self._database.transaction(_execute(statement))

    async def consume(self, nir: str, code_hash: str) -> bool:
        """Delete that exact code; the database lets only one concurrent caller delete the row."""
        statement = delete(provisional_codes).where(
            provisional_codes.c.nir == nir, provisional_codes.c.code_hash == code_hash
        )
        deleted = await self._database.transaction(
            lambda connection: deleted_rows(connection, statement)
        )
        return deleted == 1

    async def redeem(self, nir: str, code_hash: str, setup: AccountSetup) -> bool:
        """Consume the code and record the setup token in one transaction (single use)."""
        statement = delete(provisional_codes).where(
            provisional_codes.c.nir == nir, provisional_codes.c.code_hash == code_hash
        )
        row = {
            "token_hash": setup.token_hash,
            "nir": setup.nir,
            "created_time": self._clock.now(),
            "expire_time": setup.expire_time,
        }

        def redeem(connection: Connection) -> bool:
            if deleted_rows(connection, statement) != 1:
                return False
            connection.execute(insert(account_setups).values(row))
            return True

        return await self._database.transaction(redeem)


class SqlAuditLog:
    """The ``AuditLog`` port: one ``audit_events`` row per event."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def record(self, event: AuditEvent) -> None:
        await self._database.statement(_execute(_AUDIT_INSERT, _audit_values(event)))


def _store_provisional_code(dialect_name: str, code: ProvisionalCode) -> Insert:
    """The NIR's provisional code, replacing any earlier one."""
    return upsert(
        dialect_name,
        provisional_codes,
        {"nir": code.nir, "code_hash": code.code_hash, "expire_time": code.expire_time},
        key="nir",
        update_columns=("code_hash", "expire_time"),
    )


_AUDIT_INSERT = insert(audit_events)


def _audit_values(event: AuditEvent) -> dict[str, Any]:
    """The ``audit_events`` row of one event, for ``_AUDIT_INSERT``."""
    return {
        "kind": event.kind,
        "nir_ref": event.nir_ref,
        "account_id": event.account_id,
        "advisor_id": event.advisor_id,
        "detail": event.detail,
        "client_ip": event.client_ip,
        "occurred_time": event.occurred_time,
        "caller": event.caller,
        "reason": event.reason,
        "user_agent": event.user_agent,
        "request_id": event.request_id,
    }


def _is_foreign_key_violation(error: sa_exc.IntegrityError) -> bool:
    """PostgreSQL's SQLSTATE 23503, or SQLite's "FOREIGN KEY constraint failed"."""
    sqlstate = getattr(error.orig, "sqlstate", None)
    return sqlstate == "23503" or "FOREIGN KEY" in str(error.orig)


class SqlIdentityRegistry:
    """The ``IdentityRegistry`` port on the ``rfi_affiliations`` reference table.

    A NIR absent from the table has no caisse in the RFI: ``NOT_COVERED``
    (guide, case 7).
    """

    def __init__(self, database: Database, clock: Clock | None = None) -> None:
        self._database = database
        self._clock = clock or SystemClock()

    async def affiliation(self, nir: str) -> Affiliation:
        statement = select(rfi_affiliations.c.status).where(rfi_affiliations.c.nir == nir)
        status = await self._database.statement(
            lambda connection: connection.execute(statement).scalar_one_or_none()
        )
        return Affiliation.NOT_COVERED if status is None else Affiliation(status)

    async def set_affiliation(self, nir: str, affiliation: Affiliation) -> None:
        """Record what the RFI says of a NIR (CSV import, demo data)."""
        statement = upsert(
            self._database.dialect_name,
            rfi_affiliations,
            {"nir": nir, "status": affiliation.value, "updated_time": self._clock.now()},
            key="nir",
            update_columns=("status", "updated_time"),
        )
        await self._database.transaction(_execute(statement))
