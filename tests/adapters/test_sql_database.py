"""The PostgreSQL pool: connections pinged only after being idle, dropped ones replaced."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import Connection

from ameli_grpc.adapters.sql import database as database_module
from ameli_grpc.adapters.sql.database import Database
from ameli_grpc.adapters.sql.schema import rfi_affiliations
from ameli_grpc.domain.errors import DependencyUnavailable
from tests.support.databases import execute, rows

pytestmark = pytest.mark.postgres


async def backend_pid(database: Database) -> int:
    pid: int = (await rows(database, text("SELECT pg_backend_pid()")))[0][0]
    return pid


async def terminate(postgres_url: str, pid: int) -> None:
    """The server drops that connection, as a restart or a proxy would."""
    other = Database(postgres_url, pool_size=1, max_overflow=0)
    try:
        await rows(other, text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        await other.dispose()


@pytest.fixture
def pings(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every ping the dialect sends, recorded (and sent)."""
    sent: list[object] = []
    real_ping: Any = PGDialect_asyncpg.do_ping

    def do_ping(self: PGDialect_asyncpg, dbapi_connection: object) -> bool:
        sent.append(dbapi_connection)
        return bool(real_ping(self, dbapi_connection))

    monkeypatch.setattr(PGDialect_asyncpg, "do_ping", do_ping)
    return sent


@pytest.fixture
async def one_connection(postgres_url: str) -> AsyncIterator[Database]:
    database = Database(postgres_url, pool_size=1, max_overflow=0)
    try:
        yield database
    finally:
        await database.dispose()


async def test_a_connection_in_use_is_not_pinged(
    one_connection: Database, pings: list[object]
) -> None:
    """Statements one after the other: no ping before each (it would double their cost)."""
    first = await backend_pid(one_connection)
    assert await backend_pid(one_connection) == first
    assert pings == []


async def test_an_idle_connection_dropped_meanwhile_is_replaced_before_use(
    postgres_url: str, pings: list[object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Idle for longer than the threshold: pinged at checkout, and replaced if it is gone."""
    monkeypatch.setattr(database_module, "PING_AFTER_IDLE_SECONDS", 0.0)
    database = Database(postgres_url, pool_size=1, max_overflow=0)
    try:
        first = await backend_pid(database)
        await terminate(postgres_url, first)
        assert await backend_pid(database) != first  # no failure: replaced at checkout
        assert len(pings) == 1
    finally:
        await database.dispose()


async def test_a_busy_connection_dropped_fails_one_call_then_is_replaced(
    one_connection: Database, postgres_url: str
) -> None:
    """Used recently, not pinged: its statement fails closed (UNAVAILABLE), the next works."""
    first = await backend_pid(one_connection)
    await terminate(postgres_url, first)
    with pytest.raises(DependencyUnavailable):
        await backend_pid(one_connection)
    assert await backend_pid(one_connection) != first


async def test_one_statement_commits_by_itself_without_a_transaction(
    one_connection: Database,
) -> None:
    """``statement`` on PostgreSQL: autocommit, so no BEGIN or COMMIT costs a round trip
    and the row stays even if the unit of work fails after its statement; in
    ``transaction`` it is rolled back with the rest."""
    nir = "1990599123456"
    insert = text(
        "INSERT INTO rfi_affiliations (nir, status, updated_time) VALUES (:nir, 'pending', now())"
    )
    seen = text("SELECT count(*) FROM rfi_affiliations WHERE nir = :nir")
    in_transaction: list[bool] = []

    def insert_then_fail(connection: Connection) -> None:
        connection.execute(insert, {"nir": nir})
        driver_connection: Any = connection.connection.driver_connection
        in_transaction.append(driver_connection.is_in_transaction())
        raise LookupError("after the statement")

    with pytest.raises(LookupError):
        await one_connection.statement(insert_then_fail)
    assert (await rows(one_connection, seen, {"nir": nir}))[0][0] == 1
    await execute(one_connection, rfi_affiliations.delete())
    with pytest.raises(LookupError):
        await one_connection.transaction(insert_then_fail)
    assert (await rows(one_connection, seen, {"nir": nir}))[0][0] == 0
    assert in_transaction == [False, True]
