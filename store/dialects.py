"""Everything that differs between SQLite and PostgreSQL, side by side.

- **Clocks.** ``db_now()`` stamps rows with the database's clock, and the lease compares
  ``lease_clock()`` with ``lease_until(ttl)``: PostgreSQL's ``now()`` /
  ``clock_timestamp()`` (one clock for every host sharing the database), SQLite's
  ``strftime(… 'now')`` (the machine's clock, which every process sharing the file shares),
  written in the same fixed-width ISO text as ``schema.IsoTimestamp``.
- **Upserts.** ``insert_for(dialect)``: both dialects' ``insert`` have the same
  ``on_conflict_do_nothing`` / ``on_conflict_do_update`` API.
- **Engines and transactions.** ``SqliteDatabase`` and ``PostgresDatabase`` make the engine
  and say how a one-statement operation and a transaction run on it, and how migrations are
  serialized across processes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import asyncpg
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from store._aiosqlite import DBAPI as aiosqlite_dbapi
from store._gate import Gate
from store.schema import Timestamp

log = logging.getLogger(__name__)

MEMORY = ":memory:"

# Errors from below SQLAlchemy that can surface unwrapped (from a connection creator).
DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    sqlite3.Error,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
)

# -- clocks -------------------------------------------------------------------------------

# SQLite's clock in milliseconds, padded to the microsecond width of ``IsoTimestamp``.
_SQLITE_NOW_FORMAT = "'%Y-%m-%dT%H:%M:%f000+00:00'"


class db_now(FunctionElement[datetime]):
    """The database's time for ``created_at`` / ``updated_at``."""

    type = Timestamp
    inherit_cache = True


class lease_clock(FunctionElement[datetime]):
    """The database's time right now, for comparing lease expiries."""

    type = Timestamp
    inherit_cache = True


class lease_until(FunctionElement[datetime]):
    """The database's time plus ``ttl`` seconds (one float argument)."""

    type = Timestamp
    inherit_cache = True


def _ttl(element: lease_until, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(db_now, "postgresql")
def _pg_now(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    return "now()"


@compiles(lease_clock, "postgresql")
def _pg_lease_clock(element: lease_clock, compiler: SQLCompiler, **kw: Any) -> str:
    return "clock_timestamp()"


@compiles(lease_until, "postgresql")
def _pg_lease_until(element: lease_until, compiler: SQLCompiler, **kw: Any) -> str:
    return f"clock_timestamp() + make_interval(secs => {_ttl(element, compiler, **kw)})"


@compiles(db_now, "sqlite")
@compiles(lease_clock, "sqlite")
def _sqlite_now(element: FunctionElement[datetime], compiler: SQLCompiler, **kw: Any) -> str:
    return f"strftime({_SQLITE_NOW_FORMAT}, 'now')"


@compiles(lease_until, "sqlite")
def _sqlite_lease_until(element: lease_until, compiler: SQLCompiler, **kw: Any) -> str:
    ttl = _ttl(element, compiler, **kw)
    return f"strftime({_SQLITE_NOW_FORMAT}, 'now', printf('%+.3f seconds', {ttl}))"


# -- upserts ------------------------------------------------------------------------------

Insert = Callable[[sa.Table], Any]  # sqlite.insert / postgresql.insert


def insert_for(dialect_name: str) -> Insert:
    """The dialect's ``insert``, which has ``on_conflict_do_nothing`` / ``…_do_update``."""
    inserts: dict[str, Insert] = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}
    return inserts[dialect_name]


# -- engines ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pool:
    """Connections per process (``DATABASE_POOL_SIZE``, ``DATABASE_MAX_OVERFLOW``).

    The store keeps ``size`` connections open for its one-statement operations, which queue
    in turn for them, and pools one more for its transactions; ``max_overflow`` more may
    open for peaks of other users of the engine (other libraries' tables, such as OAuth
    installations) and close when returned.
    """

    size: int = 5
    max_overflow: int = 5


@dataclass(frozen=True, slots=True)
class Gates:
    """What an operation of this process waits for before it takes a connection (None: none)."""

    write: Gate | None
    read: Gate | None


@dataclass(frozen=True, slots=True)
class Engines:
    """One pool, two ways to use it.

    ``single`` runs one statement as its own transaction (no BEGIN/COMMIT round trips): all
    but a few store operations are one statement. ``transactional`` runs ``BEGIN … COMMIT``
    around several statements; it is also the engine handed to other libraries.
    """

    single: AsyncEngine
    transactional: AsyncEngine
    root: AsyncEngine  # the one of the two that owns the pool

    async def dispose(self) -> None:
        await self.root.dispose()


class Database(Protocol):
    """Where the data lives and how to talk to it; one implementation per dialect."""

    @property
    def dialect(self) -> str: ...

    @property
    def where(self) -> str:
        """The database for logs and errors, without credentials."""

    def gates(self, pool: Pool) -> Gates: ...

    def pinned(self, pool: Pool) -> int:
        """How many connections one-statement operations keep checked out (``_pinned``)."""

    @property
    def ping_after_idle(self) -> float | None:
        """Seconds after which an unused pinned connection is pinged before use (None: never)."""

    def create_engines(self, pool: Pool) -> Engines: ...

    async def prepare(self, engines: Engines) -> None:
        """Once per process, before migrating."""

    def lock_for_migration(self, connection: sa.Connection) -> None:
        """Inside the migration transaction: wait until no other process is migrating."""


@dataclass(frozen=True, slots=True)
class SqliteDatabase:
    """A SQLite file (or ``:memory:``) through aiosqlite: WAL, a busy timeout, ``synchronous
    = NORMAL``, foreign keys on, and every transaction ``BEGIN IMMEDIATE``.

    aiosqlite runs each connection on its own thread, so waiting for the file's lock never
    blocks the event loop. ``BEGIN IMMEDIATE`` takes the write lock up front, so a process
    waits for another (busy timeout) instead of failing with "database is locked" when a
    read-then-write transaction cannot upgrade. One-statement operations skip BEGIN: SQLite
    takes the lock for the statement itself, with the same busy wait. They run on pinned
    connections (``store._pinned``): one for writes, the others for reads.
    """

    path: str
    busy_timeout: float = 5.0

    @property
    def dialect(self) -> str:
        return "sqlite"

    @property
    def where(self) -> str:
        return self.path

    @property
    def in_memory(self) -> bool:
        return self.path == MEMORY

    def gates(self, pool: Pool) -> Gates:
        # Writers of one process queue on a lock rather than in SQLite's busy handler, which
        # sleeps in steps of up to 100 ms; readers share the other pinned connections.
        write = Gate(1)
        if self.in_memory:  # one connection (StaticPool): no concurrent transactions
            return Gates(write=write, read=write)
        return Gates(write=write, read=Gate(self.pinned(pool) - 1))

    def pinned(self, pool: Pool) -> int:
        return 1 if self.in_memory else max(2, pool.size)  # one writer, the rest readers

    @property
    def ping_after_idle(self) -> float | None:
        return None  # a file and a thread: nothing to drop the connection

    def create_engines(self, pool: Pool) -> Engines:
        url = sa.URL.create("sqlite+aiosqlite", database=self.path)
        # The driver's own transaction handling is off (isolation_level=None): BEGIN is ours.
        connect_args = {"timeout": self.busy_timeout, "isolation_level": None}
        if self.in_memory:
            engine = create_async_engine(
                url, module=aiosqlite_dbapi, connect_args=connect_args, poolclass=sa.StaticPool
            )
        else:
            engine = create_async_engine(
                url,
                module=aiosqlite_dbapi,
                connect_args=connect_args,
                # The pinned connections never go back: one more for transactions.
                pool_size=self.pinned(pool) + 1,
                max_overflow=pool.max_overflow,
            )
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        # Only the transactional engine has a Connection event: with none, SQLAlchemy skips
        # its event dispatch on every statement, which is most of its per-statement cost.
        transactional = engine.execution_options(tutorbot_transactional=True)
        event.listen(transactional.sync_engine, "begin", _sqlite_begin_immediate)
        return Engines(single=engine, transactional=transactional, root=engine)

    async def prepare(self, engines: Engines) -> None:
        if not self.in_memory:
            parent = Path(self.path).parent
            await asyncio.to_thread(parent.mkdir, parents=True, exist_ok=True)
        await self._use_wal(engines.single)

    async def _use_wal(self, engine: AsyncEngine) -> None:
        # Switching a new file to WAL needs an exclusive lock, and SQLite answers SQLITE_BUSY
        # at once, without the busy handler, when another process is doing the same: retry.
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                async with engine.connect() as conn:
                    mode = (await conn.exec_driver_sql("PRAGMA journal_mode = WAL")).scalar()
                break
            except sa.exc.OperationalError as exc:
                code = getattr(exc.orig, "sqlite_errorcode", None)
                if code is None or code & 0xFF != sqlite3.SQLITE_BUSY:
                    raise
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(0.02)
        if mode not in ("wal", "memory"):
            log.warning("sqlite %s: journal mode is %s, not WAL", self.path, mode)

    def lock_for_migration(self, connection: sa.Connection) -> None:
        # The migration transaction began with BEGIN IMMEDIATE: it holds the write lock.
        pass


def _sqlite_on_connect(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _sqlite_begin_immediate(connection: sa.Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


# Serializes migrations of every process on the server; "tutorbot" as a 64-bit integer.
_MIGRATION_LOCK_KEY = int.from_bytes(b"tutorbot", "big")
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True, slots=True)
class PostgresDatabase:
    """PostgreSQL through asyncpg, for several processes (or hosts) sharing the data.

    ``dsn`` is handed to asyncpg as it is (``?sslmode=…``, ``?search_path=…`` and the rest
    of libpq's URL keep their meaning); ``schema`` (tests) is created if missing and put
    first on the search path. One-statement operations run in autocommit on pinned
    connections; one unused for ``ping_after_idle`` seconds is pinged before use, so one the
    server or a proxy dropped meanwhile is replaced instead of failing a turn. A ping on
    every use (``pool_pre_ping``) would cost a round trip per statement, ~2 ms of CPU a turn.
    """

    dsn: str
    schema: str | None = None
    server_settings: Mapping[str, str] | None = None
    ping_after_idle: float | None = 10.0  # seconds; see store._pinned

    def __post_init__(self) -> None:
        if self.schema is not None and not _SCHEMA_NAME.match(self.schema):
            raise ValueError(f"invalid PostgreSQL schema name: {self.schema!r}")

    @property
    def dialect(self) -> str:
        return "postgresql"

    @property
    def where(self) -> str:
        parts = urlsplit(self.dsn)
        where = f"{parts.hostname or 'localhost'}{parts.path}"
        return f"{where} schema {self.schema}" if self.schema else where

    def gates(self, pool: Pool) -> Gates:
        # Operations queue here, first come first served, for one of the pinned connections
        # (SQLAlchemy's pool queue is not fair: a newcomer can take a connection just
        # returned, ahead of those waiting, and under a burst some waited most of a second).
        slots = Gate(self.pinned(pool))
        return Gates(write=slots, read=slots)

    def pinned(self, pool: Pool) -> int:
        return pool.size

    def create_engines(self, pool: Pool) -> Engines:
        settings = dict(self.server_settings or {})
        if self.schema:
            settings["search_path"] = f'"{self.schema}"'
        # asyncpg parses the DSN itself, exactly as before SQLAlchemy (SQLAlchemy's own URL
        # handling would pass libpq options such as sslmode to asyncpg as unknown arguments).
        connect = functools.partial(asyncpg.connect, self.dsn, server_settings=settings or None)
        engine = create_async_engine(
            "postgresql+asyncpg://",
            async_creator=connect,
            # The pinned connections never go back: one more for transactions.
            pool_size=self.pinned(pool) + 1,
            max_overflow=pool.max_overflow,
            # Pooled connections (transactions, other libraries) are rarely used: ping each.
            pool_pre_ping=True,
            isolation_level="AUTOCOMMIT",
        )
        return Engines(
            single=engine,
            transactional=engine.execution_options(isolation_level="READ COMMITTED"),
            root=engine,
        )

    async def prepare(self, engines: Engines) -> None:
        pass

    def lock_for_migration(self, connection: sa.Connection) -> None:
        # Two processes starting at once: the second waits here, then finds nothing to do.
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK_KEY)))
        if self.schema:
            connection.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
