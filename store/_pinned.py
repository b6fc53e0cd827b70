"""Connections that stay checked out of the pool, for the store's one-statement operations.

Checking a connection out of SQLAlchemy's pool and back costs more CPU than the statement
itself on the turn path (a dozen statements a turn, bench/load.py), so the store keeps up
to ``size`` connections and runs one statement at a time on each. Its gates (locks,
semaphores) bound how many operations run at once, so one is always free when asked for.

A connection SQLAlchemy invalidated (a cancelled statement, a driver error it counts as a
disconnect) is closed and replaced on its next use. With ``ping_after_idle`` (PostgreSQL),
a connection unused that long is pinged first, and replaced when the server restarted or a
proxy dropped it meanwhile; SQLite connections (a file and a thread) never need it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.util import greenlet_spawn

_Slot = tuple[sa.Connection | None, float]  # a connection (opened when first needed), last use


class PinnedConnections:
    def __init__(self, engine: sa.Engine, size: int, *, ping_after_idle: float | None) -> None:
        self._engine = engine
        self._free: list[_Slot] = [(None, 0.0)] * size
        self._ping_after_idle = ping_after_idle
        self._closed = False

    async def run(
        self, statement: sa.Executable, params: Mapping[str, Any]
    ) -> Sequence[sa.Row[Any]]:
        """One statement on a free connection (the caller's gate guarantees there is one)."""
        connection, last_used = self._free.pop()
        try:
            connection = await self._usable(connection, last_used)
            return await greenlet_spawn(_fetch_and_end, connection, statement, params)
        finally:
            if self._closed and connection is not None:
                await asyncio.shield(greenlet_spawn(connection.close))
                connection = None
            self._free.append((connection, time.monotonic()))

    async def _usable(self, connection: sa.Connection | None, last_used: float) -> sa.Connection:
        if connection is not None and not (connection.invalidated or connection.closed):
            idle = time.monotonic() - last_used
            if self._ping_after_idle is None or idle < self._ping_after_idle:
                return connection
            if await greenlet_spawn(_alive, connection):
                return connection
        if connection is not None:
            await greenlet_spawn(connection.close)
        return await greenlet_spawn(self._engine.connect)

    async def close(self) -> None:
        self._closed = True
        while self._free:
            connection, _ = self._free.pop()
            if connection is not None:
                await greenlet_spawn(connection.close)


def fetch(
    connection: sa.Connection, statement: sa.Executable, params: Mapping[str, Any]
) -> Sequence[sa.Row[Any]]:
    """Run one statement (sync, inside SQLAlchemy's greenlet); its rows, if it has any."""
    result = connection.execute(statement, params)
    return result.all() if result.returns_rows else ()


def _fetch_and_end(
    connection: sa.Connection, statement: sa.Executable, params: Mapping[str, Any]
) -> Sequence[sa.Row[Any]]:
    try:
        return fetch(connection, statement, params)
    finally:
        # Ends SQLAlchemy's (empty) transaction; the statement committed on its own.
        connection.rollback()


def _alive(connection: sa.Connection) -> bool:
    """Ping the connection's server; invalidate the connection when it does not answer."""
    try:
        dbapi_connection = connection.connection.dbapi_connection
        if dbapi_connection is not None and connection.dialect.do_ping(dbapi_connection):
            return True
    except Exception:
        pass
    connection.invalidate()
    return False
