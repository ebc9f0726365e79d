"""The SQL engine, its sessions, and the one place where driver errors are translated.

The same code runs on SQLite (aiosqlite, one replica) and PostgreSQL (asyncpg,
many replicas). No I/O happens before the first session is opened. The errors
of an unreachable database become ``DependencyUnavailable`` here, and only here
(``map_outages`` with ``is_unavailable_error``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext import asyncio as sa_asyncio
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ameli_grpc.adapters.outages import map_outages

# PostgreSQL SQLSTATE classes that mean "the server cannot serve us now", not "the query is wrong":
# connection exception, invalid authorization, invalid catalog (database), insufficient
# resources, operator intervention (statement timeout, shutdown), system error.
_UNAVAILABLE_SQLSTATE_CLASSES = frozenset({"08", "28", "3D", "53", "57", "58"})


def is_unavailable_error(error: BaseException) -> bool:
    """True for the errors of an unreachable, overloaded or timed-out database.

    Integrity and programming errors are bugs and stay what they are.
    """
    if isinstance(error, sa_exc.TimeoutError | sa_exc.OperationalError | sa_exc.InterfaceError):
        # Pool exhausted; lost or refused connection; SQLite "database is locked".
        return True
    if isinstance(error, sa_exc.DBAPIError):
        sqlstate = getattr(error.orig, "sqlstate", None) or ""
        return error.connection_invalidated or sqlstate[:2] in _UNAVAILABLE_SQLSTATE_CLASSES
    # Raised as they are by the drivers while connecting: refused, unreachable, DNS, timeouts.
    return isinstance(error, OSError | TimeoutError)


def _sqlite_on_connect(busy_timeout_ms: int, in_memory: bool) -> Callable[[Any, Any], None]:
    """Per-connection SQLite settings: enforced foreign keys, waiting on locks, WAL."""

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms:d}")
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
        finally:
            cursor.close()

    return on_connect


# PostgreSQL: a pooled connection left unused for longer than this is pinged before it is
# used again (a restart, a proxy or a firewall may have dropped it meanwhile). One used
# more recently is not: a ping at every checkout (SQLAlchemy's pool_pre_ping) was a round
# trip per statement, as much CPU as the statement itself. A connection dropped while in
# use fails its statement (UNAVAILABLE, fail closed), and SQLAlchemy then replaces every
# connection opened before the failure, so the calls after it get new ones.
PING_AFTER_IDLE_SECONDS = 10.0


def _ping_when_idle(engine: AsyncEngine, idle_seconds: float) -> None:
    """Ping a connection at checkout when it has been idle for ``idle_seconds``; a failed
    ping discards it and the pool checks out another (``DisconnectionError``)."""
    dialect = engine.sync_engine.dialect

    def checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    def checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or time.monotonic() - idle_since <= idle_seconds:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:  # whatever the driver raises on a dead connection
            raise sa_exc.DisconnectionError("idle connection lost") from error

    event.listen(engine.sync_engine, "checkin", checked_in)
    event.listen(engine.sync_engine, "checkout", checked_out)


SUPPORTED_DRIVERS = frozenset({"sqlite+aiosqlite", "postgresql+asyncpg"})


def _engine_options(url: URL, pool_size: int, max_overflow: int, timeout: float) -> dict[str, Any]:
    if url.drivername not in SUPPORTED_DRIVERS:
        supported = " or ".join(sorted(f"{name}://" for name in SUPPORTED_DRIVERS))
        raise ValueError(f"unsupported database URL scheme {url.drivername}://: use {supported}")
    if url.get_backend_name() == "sqlite":
        if url.database in (None, "", ":memory:"):
            return {}  # the dialect's pool: one connection holds the whole database
        # Sized as on PostgreSQL: with the dialect's default (5) a burst of logins opens
        # and closes overflow connections, each a new thread and a new SQLite handle.
        return {"pool_size": pool_size, "max_overflow": max_overflow, "pool_timeout": timeout}
    return {
        "pool_size": pool_size,
        "max_overflow": max_overflow,
        "pool_timeout": timeout,
        "connect_args": {
            "timeout": timeout,
            # The server cancels a slow statement first (SQLSTATE 57014, connection kept);
            # the client-side limit only fires when the network itself stalls.
            "command_timeout": timeout + 1.0,
            "server_settings": {"statement_timeout": str(int(timeout * 1000))},
        },
    }


class Database:
    """An async engine and its session factory, for one database URL."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        max_overflow: int = 10,
        timeout: float = 5.0,
    ) -> None:
        self.url = make_url(url)
        # Looked up on the module at each call: tracing's instrumentation replaces it there.
        self.engine: AsyncEngine = sa_asyncio.create_async_engine(
            self.url, **_engine_options(self.url, pool_size, max_overflow, timeout)
        )
        # The same engine and pool, in autocommit: ``statement``'s (PostgreSQL only).
        self._autocommit: AsyncEngine | None = None
        if self.dialect_name == "sqlite":
            in_memory = self.url.database in (None, "", ":memory:")
            listener = _sqlite_on_connect(int(timeout * 1000), in_memory)
            event.listen(self.engine.sync_engine, "connect", listener)
        else:
            _ping_when_idle(self.engine, PING_AFTER_IDLE_SECONDS)
            self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")

    @property
    def dialect_name(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.url.get_backend_name()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction, committed on exit, rolled back on error.

        Core statements on a connection, not an ORM session: the repositories
        map rows to the domain's dataclasses themselves, and the ORM's unit of
        work would only add CPU to every call. Any error of an unreachable
        database, raised inside or on exit, comes out as ``DependencyUnavailable``.
        """
        with map_outages("database", is_unavailable_error):
            async with self.engine.begin() as connection:
                yield connection

    @asynccontextmanager
    async def statement(self) -> AsyncIterator[AsyncConnection]:
        """A connection for ONE statement, which commits by itself.

        On PostgreSQL in autocommit: no BEGIN and no COMMIT around the statement
        (two round trips, about 250 µs of CPU, fewer), and one statement is atomic
        on its own. Two statements here would not be one transaction: use
        ``session``. On SQLite, a transaction as ``session`` (autocommit there costs
        more trips to the driver's thread than it saves).
        """
        if self._autocommit is None:
            async with self.session() as connection:
                yield connection
            return
        with map_outages("database", is_unavailable_error):
            async with self._autocommit.connect() as connection:
                yield connection

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A bare connection (no transaction begun), with the same error translation."""
        with map_outages("database", is_unavailable_error):
            async with self.engine.connect() as connection:
                yield connection

    async def ping(self) -> None:
        """Raise ``DependencyUnavailable`` if the database cannot run a query (health)."""
        async with self.session() as session:
            await session.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        """Close every pooled connection (graceful shutdown)."""
        await self.engine.dispose()
