"""The two databases the store runs on, for tests: a SQLite file and a PostgreSQL schema.

PostgreSQL is expected at ``postgresql://root@127.0.0.1:5432/test`` (override with
``TEST_POSTGRES_URL``). Without a server the PostgreSQL half fails: it is not optional.
Every PostgreSQL database here is a fresh, uniquely named schema, dropped afterwards,
because other test runs share the server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg

from store import SqlStore

PG_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test")


@dataclass
class Backend:
    """One empty database; ``make()`` returns a new, unopened store on it (a second process)."""

    name: str
    url: str  # its DATABASE_URL
    make: Callable[[], SqlStore]
    query: Callable[[str], Awaitable[list[tuple[Any, ...]]]]  # raw SQL -> rows
    execute: Callable[[Sequence[str]], Awaitable[None]]  # raw statements, one transaction


def sqlite_backend(path: Path) -> Backend:
    async def query(sql: str) -> list[tuple[Any, ...]]:
        async with aiosqlite.connect(path) as db:
            return [tuple(row) for row in await db.execute_fetchall(sql)]

    async def execute(statements: Sequence[str]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        async with aiosqlite.connect(path, isolation_level=None) as db:
            await db.execute("BEGIN")
            for statement in statements:
                await db.execute(statement)
            await db.execute("COMMIT")

    return Backend("sqlite", f"sqlite:///{path}", lambda: SqlStore.sqlite(path), query, execute)


@asynccontextmanager
async def postgres_backend(prefix: str, *, create: bool = True) -> AsyncIterator[Backend]:
    """A fresh schema (created now, or by the store when ``create`` is false), then dropped."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_URL)
    try:
        if create:
            await admin.execute(f'CREATE SCHEMA "{schema}"')

        async def query(sql: str) -> list[tuple[Any, ...]]:
            conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
            try:
                return [tuple(row) for row in await conn.fetch(sql)]
            finally:
                await conn.close()

        async def execute(statements: Sequence[str]) -> None:
            conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
            try:
                async with conn.transaction():
                    for statement in statements:
                        await conn.execute(statement)
            finally:
                await conn.close()

        yield Backend(
            "postgres",
            f"{PG_URL}?search_path={schema}",
            lambda: SqlStore.postgres(PG_URL, schema=schema),
            query,
            execute,
        )
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()
