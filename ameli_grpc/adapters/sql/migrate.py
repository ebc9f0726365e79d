"""Alembic, driven from code: no alembic.ini, the scripts ship inside the package.

``upgrade`` may be awaited from a running event loop (the server migrates on
start): Alembic runs synchronously, as one unit of work of ``Database.transaction``.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url

from ameli_grpc.adapters.sql.database import Database

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Bounds connecting and each statement: longer than a request's, as migrations can be slow.
MIGRATION_TIMEOUT = 60.0

# Any constant: replicas starting together take this lock in turn, so that one migrates
# and the others then find the schema at head.
_POSTGRES_MIGRATION_LOCK = 0x616D656C69


def alembic_config(database_url: str) -> Config:
    """An Alembic configuration for that database, built in code."""
    config = Config(attributes={"database_url": database_url})
    # ConfigParser interpolates "%": escape it (URL-encoded passwords, unusual paths).
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def ensure_sqlite_directory(database_url: str) -> None:
    """Create the directory of an SQLite database file if it is missing (``./var``)."""
    url = make_url(database_url)
    path = url.database or ""
    # In memory, or an SQLite URI ("file:..."), whose path is not a plain file name.
    if url.get_backend_name() != "sqlite" or path in ("", ":memory:") or path.startswith("file:"):
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)


async def upgrade(database_url: str) -> str:
    """Migrate the database to the latest revision (a no-op when it is already there);
    the revision it is at.

    Raises ``DependencyUnavailable`` if the database cannot be reached.
    """
    ensure_sqlite_directory(database_url)
    database = Database(database_url, pool_size=1, max_overflow=0, timeout=MIGRATION_TIMEOUT)
    config = alembic_config(database_url)
    try:
        return await database.transaction(lambda connection: _upgrade_to_head(connection, config))
    finally:
        await database.dispose()


def head_revision() -> str:
    """The revision this version's schema is at: the last of the shipped migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return str(ScriptDirectory.from_config(config).get_current_head())


async def current_revision(
    database_url: str, *, connect_timeout: float = MIGRATION_TIMEOUT
) -> str | None:
    """The revision the database is at (None: never migrated); nothing is changed."""
    database = Database(database_url, pool_size=1, max_overflow=0, timeout=connect_timeout)
    try:
        return await database.transaction(_revision_of)
    finally:
        await database.dispose()


def _revision_of(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _upgrade_to_head(connection: Connection, config: Config) -> str:
    if connection.dialect.name == "postgresql":
        # Held until the transaction ends; PostgreSQL DDL is transactional.
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": _POSTGRES_MIGRATION_LOCK}
        )
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
    return str(_revision_of(connection))
