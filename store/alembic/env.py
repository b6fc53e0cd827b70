"""Alembic's environment: run the revisions on the connection the store hands over.

The store applies migrations itself (``store.migrate.upgrade``: at ``open()`` and by
``python -m bot migrate``), inside its own transaction and migration lock, and passes the
connection in ``config.attributes["connection"]``. Run from the ``alembic`` command line
(``alembic revision --autogenerate``, ``alembic check``), this connects to ``DATABASE_URL``
instead; apply migrations with ``python -m bot migrate``, which also handles databases
created before Alembic.
"""

from __future__ import annotations

import asyncio
import os

import sqlalchemy as sa
from alembic import context

from store.schema import metadata


def run_migrations(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite alters most things by copying the table: let autogenerate write that.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_from_environment() -> None:
    from store import open_store

    store = open_store(os.environ.get("DATABASE_URL", "sqlite:///tutorbot.db"))
    engines = store.database.create_engines(store.pool)
    try:
        async with engines.transactional.begin() as connection:
            await connection.run_sync(run_migrations)
    finally:
        await engines.dispose()


given = context.config.attributes.get("connection")
if given is not None:
    run_migrations(given)
elif context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; use python -m bot migrate")
else:
    asyncio.run(run_from_environment())
