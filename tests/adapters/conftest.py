"""Fixtures of the SQL adapter tests: one migrated database per backend.

``database`` is parametrized over SQLite (a new file per test) and
PostgreSQL (the session's database of ``tests/conftest.py``, emptied before
each test).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ameli_grpc.adapters.sql.database import Database
from ameli_grpc.adapters.sql.repositories import (
    SqlAccountRepository,
    SqlAuditLog,
    SqlIdentityRegistry,
    SqlProvisionalCodeRepository,
    SqlTrustedDeviceRepository,
)
from tests.support.databases import clear_tables, migrated_sqlite_database

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture
async def sqlite_url(tmp_path: Path) -> AsyncIterator[str]:
    async with migrated_sqlite_database(tmp_path) as url:
        yield url


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> str:
    fixture = "postgres_url" if request.param == "postgres" else "sqlite_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=10, max_overflow=15, timeout=5.0)
    await clear_tables(database)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
def accounts(database: Database) -> SqlAccountRepository:
    return SqlAccountRepository(database)


@pytest.fixture
def devices(database: Database) -> SqlTrustedDeviceRepository:
    return SqlTrustedDeviceRepository(database)


@pytest.fixture
def provisional_codes(database: Database) -> SqlProvisionalCodeRepository:
    return SqlProvisionalCodeRepository(database)


@pytest.fixture
def audit(database: Database) -> SqlAuditLog:
    return SqlAuditLog(database)


@pytest.fixture
def registry(database: Database) -> SqlIdentityRegistry:
    return SqlIdentityRegistry(database)


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """A TCP port that accepts connections and never answers (a stalled database)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.fixture
def unreachable_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL nothing can be read from, of the kind named by the indirect parameter."""
    kind = request.param
    if kind == "sqlite":
        (tmp_path / "not-a-directory").write_text("")
        return f"sqlite+aiosqlite:///{tmp_path / 'not-a-directory' / 'ameli.db'}"
    if kind == "postgres-closed-port":
        return "postgresql+asyncpg://postgres@127.0.0.1:1/postgres"
    port: int = request.getfixturevalue("silent_server")
    return f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres"
