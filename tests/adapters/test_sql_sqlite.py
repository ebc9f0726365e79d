"""SQLite: each unit of work is one trip to the database's own threads and back."""

from __future__ import annotations

import contextvars
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection

from ameli_grpc.adapters.sql.database import Database
from tests.support.databases import execute, rows

_CALL = contextvars.ContextVar("call", default="none")


async def test_a_unit_of_work_runs_on_an_sqlite_thread_in_the_callers_context(
    tmp_path: Path,
) -> None:
    """Off the event loop (its thread is named for ``top -H``), and with the caller's
    context variables (tracing's current span is one)."""
    database = Database(f"sqlite:///{tmp_path / 'ameli.db'}")
    seen: list[tuple[str, str, str]] = []

    def work(connection: Connection) -> int:
        comm = Path(f"/proc/self/task/{threading.get_native_id()}/comm")
        kernel_name = comm.read_text().strip() if comm.exists() else "sqlite"
        seen.append((threading.current_thread().name, _CALL.get(), kernel_name))
        return int(connection.execute(text("SELECT 41 + 1")).scalar_one())

    _CALL.set("this call")
    try:
        assert await database.transaction(work) == 42
    finally:
        await database.dispose()
    ((thread, call, kernel_name),) = seen
    assert thread.startswith("sqlite")
    assert kernel_name == "sqlite"  # as top -H shows it
    assert thread != threading.current_thread().name
    assert call == "this call"


async def test_both_sqlite_schemes_name_the_same_database(tmp_path: Path) -> None:
    """``sqlite+aiosqlite://`` (the default setting's scheme) and ``sqlite://`` alike."""
    path = tmp_path / "ameli.db"
    written = Database(f"sqlite+aiosqlite:///{path}")
    read = Database(f"sqlite:///{path}")
    try:
        await execute(written, "CREATE TABLE t (v INTEGER)", "INSERT INTO t VALUES (7)")
        assert [tuple(row) for row in await rows(read, text("SELECT v FROM t"))] == [(7,)]
    finally:
        await written.dispose()
        await read.dispose()


async def test_an_in_memory_database_is_one_database_for_every_unit_of_work() -> None:
    """Its one connection lives on one thread: a table made by one unit is seen by the next."""
    database = Database("sqlite://")
    try:
        await execute(database, "CREATE TABLE t (v INTEGER)")
        for value in range(20):
            await execute(database, text("INSERT INTO t VALUES (:v)").bindparams(v=value))
        assert (await rows(database, text("SELECT count(*) FROM t")))[0][0] == 20
    finally:
        await database.dispose()


async def test_a_failed_unit_of_work_is_rolled_back_and_the_database_serves_on(
    tmp_path: Path,
) -> None:
    """An error inside the unit rolls its transaction back; its connection goes back to the
    pool, and units after it (also after a dispose) run as before."""
    database = Database(f"sqlite:///{tmp_path / 'ameli.db'}", pool_size=1)

    def insert_then_fail(connection: Connection) -> None:
        connection.execute(text("INSERT INTO t VALUES (1)"))
        raise LookupError("after the statement")

    try:
        await execute(database, "CREATE TABLE t (v INTEGER)")
        with pytest.raises(LookupError):
            await database.transaction(insert_then_fail)
        assert (await rows(database, text("SELECT count(*) FROM t")))[0][0] == 0
        await database.dispose()
        await execute(database, "INSERT INTO t VALUES (2)")
        assert (await rows(database, text("SELECT v FROM t")))[0][0] == 2
    finally:
        await database.dispose()
