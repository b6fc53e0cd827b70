"""Persistence: the ``Store`` interface and its SQLite and PostgreSQL implementations.

``open_store(url)`` picks the implementation from ``DATABASE_URL``; the caller awaits
``store.open()`` (connect + migrate) and ``store.close()``.
"""

from __future__ import annotations

from store.base import Store, StoreError
from store.postgres import PostgresStore
from store.sqlite import MEMORY, SqliteStore

__all__ = ["PostgresStore", "SqliteStore", "Store", "StoreError", "open_store"]

_SQLITE_SCHEMES = {"sqlite", "sqlite+aiosqlite"}
_POSTGRES_SCHEMES = {"postgresql", "postgres", "postgresql+asyncpg"}


def open_store(database_url: str) -> Store:
    """A store for a SQLAlchemy-style URL, not yet opened.

    ``sqlite:///tutorbot.db`` (relative to the working directory),
    ``sqlite:////abs/path.db``, ``sqlite://`` or ``sqlite:///:memory:`` (in memory),
    ``postgresql://user:pass@host:5432/db`` or ``postgres://…``.
    Raises ``ValueError`` for anything else.
    """
    url = database_url.strip()
    scheme, separator, rest = url.partition("://")
    scheme = scheme.lower()
    if not separator:
        # Not echoed: a malformed value may still carry a password.
        raise ValueError("DATABASE_URL is not a URL (expected sqlite:///… or postgresql://…)")
    if scheme in _SQLITE_SCHEMES:
        return SqliteStore(_sqlite_path(url, rest))
    if scheme in _POSTGRES_SCHEMES:
        return PostgresStore("postgresql://" + rest)
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
