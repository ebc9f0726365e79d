"""Throw-away migrated databases for the tests: an SQLite file, or a PostgreSQL database.

Plain async context managers (no pytest here), so that adapter tests and
end-to-end tests build their databases the same way. Each yields the URL of a
database migrated to head.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Row, delete, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.sql import Executable

from ameli_grpc.adapters.sql.database import Database
from ameli_grpc.adapters.sql.migrate import upgrade
from ameli_grpc.adapters.sql.schema import metadata

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


def postgres_base_url() -> str:
    """The server to create test databases on: ``AMELI_TEST_POSTGRES_URL`` or the local one."""
    return os.environ.get("AMELI_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL


def fail_if_unreachable() -> bool:
    """True where a missing PostgreSQL must fail the run rather than skip (CI)."""
    return os.environ.get("CI", "").lower() == "true"


@asynccontextmanager
async def migrated_sqlite_database(directory: Path, name: str = "ameli.db") -> AsyncIterator[str]:
    """A new SQLite file in ``directory``, migrated; the caller owns the directory."""
    url = f"sqlite+aiosqlite:///{directory / name}"
    await upgrade(url)
    yield url


@asynccontextmanager
async def temporary_postgres_database(
    base_url: str | None = None, *, migrate: bool = True
) -> AsyncIterator[str]:
    """A new database ``ameli_test_<random hex>`` on the server of ``base_url``, dropped on exit.

    Created and dropped through an AUTOCOMMIT connection to ``base_url``'s
    database. Raises ``DependencyUnavailable`` if the server cannot be reached.
    """
    base = make_url(base_url or postgres_base_url())
    name = f"ameli_test_{secrets.token_hex(6)}"
    admin = Database(base.render_as_string(hide_password=False), pool_size=1, timeout=5.0)
    try:
        await _execute_autocommit(admin, f'CREATE DATABASE "{name}"')
        try:
            url = base.set(database=name).render_as_string(hide_password=False)
            if migrate:
                await upgrade(url)
            yield url
        finally:
            await _execute_autocommit(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.dispose()


async def clear_tables(database: Database) -> None:
    """Delete every row of the application's tables (children first), keeping the schema."""
    await execute(database, *(delete(table) for table in reversed(metadata.sorted_tables)))


async def rows(
    database: Database, statement: Executable, values: Mapping[str, Any] | None = None
) -> Sequence[Row[Any]]:
    """Every row the statement returns, read in a transaction of its own."""
    return await database.transaction(
        lambda connection: connection.execute(statement, values).all()
    )


async def execute(database: Database, *statements: Executable | str) -> None:
    """The statements (SQL text or Core), in one transaction."""

    def run(connection: Connection) -> None:
        for statement in statements:
            connection.execute(text(statement) if isinstance(statement, str) else statement)

    await database.transaction(run)


async def _execute_autocommit(database: Database, statement: str) -> None:
    # CREATE and DROP DATABASE cannot run inside a transaction: ``statement`` is autocommit.
    await database.statement(lambda connection: connection.execute(text(statement)))
