"""The SQL engine, its units of work, and the one place where driver errors are translated.

The same code runs on SQLite (one replica) and PostgreSQL (asyncpg, many
replicas). A repository hands ``transaction`` or ``statement`` a plain function
of a connection (a *unit of work*); this module decides where it runs:

- on PostgreSQL, on the event loop through SQLAlchemy's async engine
  (``run_sync``: asyncpg's round trips are awaited, never blocking the loop);
- on SQLite, on a thread of the database's own (``sqlite`` in ``top -H``), with
  the standard library's driver, in one trip there and back: a unit of work is
  one hand-over to that thread, where an asyncio driver (aiosqlite) hands over
  each cursor, execute, fetch, close and commit in turn (4 to 6 trips a
  statement, about 450 µs of the event loop's CPU; one trip is about 50 µs).

No I/O happens before the first unit of work. The errors of an unreachable
database become ``DependencyUnavailable`` here, and only here (``map_outages``
with ``is_unavailable_error``).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import sqlalchemy
from sqlalchemy import event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.ext import asyncio as sa_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from ameli_grpc.adapters.outages import map_outages
from ameli_grpc.adapters.threads import name_this_thread

T = TypeVar("T")

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


# The URL schemes accepted, and the driver each one runs on. ``sqlite+aiosqlite://``, the
# scheme of the configuration's default, names the same file as ``sqlite://``: both run on
# the standard library's driver, on the database's threads.
_DRIVERS = {
    "sqlite": "sqlite+pysqlite",
    "sqlite+aiosqlite": "sqlite+pysqlite",
    "postgresql+asyncpg": "postgresql+asyncpg",
}
SUPPORTED_DRIVERS = frozenset(_DRIVERS)


def _driver_url(url: URL) -> URL:
    """The URL with the driver this module runs it on; ``ValueError`` for another scheme."""
    if url.drivername not in _DRIVERS:
        supported = " or ".join(f"{name}://" for name in sorted(_DRIVERS))
        raise ValueError(f"unsupported database URL scheme {url.drivername}://: use {supported}")
    return url.set(drivername=_DRIVERS[url.drivername])


def is_in_memory(url: URL) -> bool:
    """An SQLite database that lives in its connection (``sqlite://``, ``:memory:``)."""
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


class Database:
    """One database URL: its engine, and where its units of work run."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        max_overflow: int = 10,
        timeout: float = 5.0,
    ) -> None:
        self.url = make_url(url)
        driver_url = _driver_url(self.url)
        # PostgreSQL: the async engine, and the same pool in autocommit (``statement``'s).
        self._async_engine: AsyncEngine | None = None
        self._autocommit: AsyncEngine | None = None
        # SQLite: a sync engine and the threads its units of work run on.
        self._sqlite_engine: Engine | None = None
        self._sqlite_threads = 0
        self._executor: ThreadPoolExecutor | None = None
        # The engines are created through their modules' attributes, looked up at each
        # call: tracing's instrumentation replaces them there.
        if self.dialect_name == "sqlite":
            in_memory = is_in_memory(self.url)
            # One thread per pooled connection, so a unit of work never waits for one; an
            # in-memory database is one connection (the dialect's pool keeps it per thread).
            self._sqlite_threads = 1 if in_memory else max(1, pool_size)
            options: dict[str, Any] = {}
            if not in_memory:
                # Sized to its threads: a burst never opens and closes overflow handles.
                options = {"pool_size": self._sqlite_threads, "max_overflow": 0}
                options["pool_timeout"] = timeout
            self._sqlite_engine = sqlalchemy.create_engine(driver_url, **options)
            listener = _sqlite_on_connect(int(timeout * 1000), in_memory)
            event.listen(self._sqlite_engine, "connect", listener)
        else:
            self._async_engine = sa_asyncio.create_async_engine(
                driver_url,
                pool_size=pool_size,
                max_overflow=max_overflow,
                pool_timeout=timeout,
                connect_args={
                    "timeout": timeout,
                    # The server cancels a slow statement first (SQLSTATE 57014, connection
                    # kept); the client-side limit only fires when the network itself stalls.
                    "command_timeout": timeout + 1.0,
                    "server_settings": {"statement_timeout": str(int(timeout * 1000))},
                },
            )
            _ping_when_idle(self._async_engine, PING_AFTER_IDLE_SECONDS)
            self._autocommit = self._async_engine.execution_options(isolation_level="AUTOCOMMIT")

    @property
    def dialect_name(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.url.get_backend_name()

    async def transaction(self, work: Callable[[Connection], T]) -> T:
        """``work(connection)`` in one transaction: committed when it returns, rolled back
        if it raises; its result.

        ``work`` is a plain function: it runs Core statements on the connection
        (``connection.execute``) and maps the rows itself (no ORM session: its unit
        of work would only add CPU to every call). Any error of an unreachable
        database comes out as ``DependencyUnavailable``.
        """
        with map_outages("database", is_unavailable_error):
            if self._async_engine is None:
                return await self._on_sqlite_thread(work)
            async with self._async_engine.begin() as connection:
                return await connection.run_sync(work)

    async def statement(self, work: Callable[[Connection], T]) -> T:
        """``work(connection)`` running ONE statement, which commits by itself.

        On PostgreSQL in autocommit: no BEGIN and no COMMIT around the statement
        (two round trips, about 250 µs of CPU, fewer), and one statement is atomic
        on its own. Two statements here would not be one transaction: use
        ``transaction``. On SQLite, a transaction (its commit is local).
        """
        if self._autocommit is None:
            return await self.transaction(work)
        with map_outages("database", is_unavailable_error):
            async with self._autocommit.connect() as connection:
                return await connection.run_sync(work)

    async def _on_sqlite_thread(self, work: Callable[[Connection], T]) -> T:
        """One trip to an SQLite thread and back, in the caller's context (tracing's span)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                self._sqlite_threads,
                thread_name_prefix="sqlite",
                initializer=name_this_thread,
                initargs=(b"sqlite",),
            )
        call = contextvars.copy_context().run
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, call, self._sqlite_unit, work)

    def _sqlite_unit(self, work: Callable[[Connection], T]) -> T:
        assert self._sqlite_engine is not None
        with self._sqlite_engine.begin() as connection:
            return work(connection)

    async def ping(self) -> None:
        """Raise ``DependencyUnavailable`` if the database cannot run a query (health)."""
        await self.statement(lambda connection: connection.execute(text("SELECT 1")).scalar_one())

    async def dispose(self) -> None:
        """Close every pooled connection (graceful shutdown); a later unit of work opens
        new ones."""
        if self._async_engine is not None:
            await self._async_engine.dispose()
            return
        executor, self._executor = self._executor, None
        assert self._sqlite_engine is not None
        if executor is None:
            self._sqlite_engine.dispose()
            return
        # On the threads' side: no unit of work of theirs may hold a connection meanwhile.
        await asyncio.get_running_loop().run_in_executor(executor, self._sqlite_engine.dispose)
        executor.shutdown(wait=False)
