"""Alembic environment of ameli-grpc: async, configured in code (no alembic.ini).

``ameli_grpc.adapters.sql.migrate`` runs it on a connection it opened
(``config.attributes["connection"]``); given only a URL
(``config.attributes["database_url"]``) it opens one itself.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from ameli_grpc.adapters.sql.database import Database
from ameli_grpc.adapters.sql.schema import metadata


def run_migrations(connection: Connection) -> None:
    # SQLite cannot ALTER most things: batch mode copies the table instead.
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations(database_url: str) -> None:
    database = Database(database_url)
    try:
        await database.transaction(run_migrations)
    finally:
        await database.dispose()


def run_migrations_offline(database_url: str) -> None:
    """Print the SQL instead of running it (``alembic upgrade --sql``)."""
    context.configure(
        url=database_url,
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=database_url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    database_url = config.attributes.get("database_url") or config.get_main_option(
        "sqlalchemy.url", ""
    )
    if context.is_offline_mode():
        run_migrations_offline(database_url)
    elif connection is not None:
        run_migrations(connection)
    else:
        asyncio.run(run_async_migrations(database_url))


main()
