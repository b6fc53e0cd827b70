"""Persistence: the ``Store`` interface and its one implementation on SQLAlchemy Core.

``open_store(url)`` makes a store for ``DATABASE_URL``; the caller awaits ``store.open()``
(connect + migrate) and ``store.close()``. ``store.engine`` is the SQLAlchemy engine, for
libraries that keep their own tables in the same database.
"""

from __future__ import annotations

from store.base import Fence, LeaseLost, NewMessage, Recorded, Store, StoreError
from store.dialects import MEMORY, Pool, PostgresDatabase, SqliteDatabase
from store.sql import SqlStore

__all__ = [
    "Fence",
    "LeaseLost",
    "NewMessage",
    "Pool",
    "Recorded",
    "SqlStore",
    "Store",
    "StoreError",
    "open_store",
]

_SQLITE_SCHEMES = {"sqlite", "sqlite+aiosqlite"}
_POSTGRES_SCHEMES = {"postgresql", "postgres", "postgresql+asyncpg"}


def open_store(database_url: str, *, pool: Pool | None = None) -> SqlStore:
    """A store for a SQLAlchemy-style URL, not yet opened.

    ``sqlite:///tutorbot.db`` (relative to the working directory),
    ``sqlite:////abs/path.db``, ``sqlite://`` or ``sqlite:///:memory:`` (in memory),
    ``postgresql://user:pass@host:5432/db`` or ``postgres://…`` (libpq's URL: ``?sslmode=``,
    ``?search_path=`` and the like are honoured). ``pool`` sizes the connection pool.
    Raises ``ValueError`` for anything else.
    """
    url = database_url.strip()
    scheme, separator, rest = url.partition("://")
    scheme = scheme.lower()
    if not separator:
        # Not echoed: a malformed value may still carry a password.
        raise ValueError("DATABASE_URL is not a URL (expected sqlite:///… or postgresql://…)")
    if scheme in _SQLITE_SCHEMES:
        return SqlStore(SqliteDatabase(_sqlite_path(url, rest)), pool=pool)
    if scheme in _POSTGRES_SCHEMES:
        return SqlStore(PostgresDatabase("postgresql://" + rest), pool=pool)
    raise ValueError(
        f"DATABASE_URL scheme {scheme!r} is not supported (use sqlite:///… or postgresql://…)"
    )


def _sqlite_path(url: str, rest: str) -> str:
    if rest == "":
        return MEMORY
    if not rest.startswith("/"):
        raise ValueError(
            f"DATABASE_URL {url!r} names a host; use sqlite:///relative.db or "
            "sqlite:////absolute/path.db"
        )
    path = rest[1:]
    if "?" in path:
        raise ValueError(f"DATABASE_URL {url!r}: query parameters are not supported for sqlite")
    return path or MEMORY
