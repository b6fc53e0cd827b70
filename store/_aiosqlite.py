"""SQLAlchemy's aiosqlite adapter, with one thread hop per statement instead of four or five.

aiosqlite runs each call on its connection's thread; SQLAlchemy's adapter makes one call to
open a cursor, one to execute, one to fetch, one to close the cursor, and one to roll back
when a connection goes back to the pool even when no transaction is open. Each call wakes
that thread and then the event loop: on the turn path, a dozen statements a turn, that was a
large share of the CPU the store added over raw aiosqlite (bench/load.py). Here a statement
is one call (execute, fetch everything, close, note whether a transaction is open), and
commit / rollback are skipped when SQLite says no transaction is open. Everything else is
SQLAlchemy's adapter, passed to ``create_async_engine(module=DBAPI)``.
"""

from __future__ import annotations

import collections
import sqlite3
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

_Outcome = tuple[Any, list[Any], int, int | None, bool]


def _run(connection: sqlite3.Connection, operation: str, parameters: Any, many: bool) -> _Outcome:
    """On aiosqlite's thread: the whole statement, and whether a transaction is open."""
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return description, rows, cursor.rowcount, cursor.lastrowid, connection.in_transaction
    finally:
        cursor.close()


class _Cursor(AsyncAdapt_aiosqlite_cursor):
    __slots__ = ("_description", "_lastrowid", "_rowcount")

    _adapt_connection: _Connection

    def __init__(self, adapt_connection: Any) -> None:  # no call: nothing to open
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int:
        return self._lastrowid  # type: ignore[return-value]

    @property
    def arraysize(self) -> int:
        return 1  # rows are fetched all at once; fetchmany() hands them out from memory

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        pass

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        self._call(operation, parameters, many=False)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        self._call(operation, seq_of_parameters, many=True)

    def _call(self, operation: Any, parameters: Any, *, many: bool) -> None:
        adapt = self._adapt_connection
        # Unknown until the call returns (it may fail, or be cancelled while the statement
        # still runs): commit / rollback then ask SQLite.
        adapt._in_transaction = None
        try:
            outcome = await_(
                self._connection._execute(_run, self._connection._conn, operation, parameters, many)
            )
        except Exception as error:
            adapt._handle_exception(error)
        self._description, rows, self._rowcount, self._lastrowid, in_transaction = outcome
        self._rows = collections.deque(rows)
        adapt._in_transaction = in_transaction

    def close(self) -> None:
        self._rows.clear()

    async def _async_soft_close(self) -> None:
        pass  # the statement's cursor was closed on aiosqlite's thread already


class _Connection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ("_in_transaction",)

    _cursor_cls = _Cursor

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        # After the last statement: is a transaction open? None when we cannot know.
        self._in_transaction: bool | None = None

    def rollback(self) -> None:
        if self._in_transaction is not False:
            super().rollback()
            self._in_transaction = False

    def commit(self) -> None:
        if self._in_transaction is not False:
            super().commit()
            self._in_transaction = False


class _DBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> _Connection:
        connection = self.aiosqlite.connect(*arg, **kw)
        connection._thread.daemon = True  # as SQLAlchemy's adapter does
        return _Connection(self, await_(connection))


DBAPI = _DBAPI(aiosqlite, sqlite3)
