"""Schema migrations: Alembic revisions in ``store/alembic/versions``, applied in one
transaction under a lock so that processes starting together migrate one after another.

The lock is the database's: on PostgreSQL an advisory lock, on SQLite the write lock that
the migration transaction's ``BEGIN IMMEDIATE`` takes. A database made by the store before
Alembic (a ``schema_migrations`` table at version 1, no ``alembic_version``) holds exactly
the baseline revision's tables, so it is stamped with that revision, then upgraded.
A database at a revision this code does not know (a rolled-back deploy) is left as it is.
"""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

from store.base import StoreError
from store.dialects import Database

log = logging.getLogger(__name__)

SCRIPT_LOCATION = Path(__file__).parent / "alembic"
BASELINE = "0001"
LEGACY_TABLE = "schema_migrations"
LEGACY_VERSION = 1


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """The Alembic configuration of the store (no ini file), bound to ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    return config


def heads() -> list[str]:
    """The newest revisions (one, unless two branches were merged badly)."""
    return list(ScriptDirectory.from_config(alembic_config()).get_heads())


async def upgrade(engine: AsyncEngine, database: Database) -> None:
    """Bring the database to the newest revision (no-op when it is there)."""
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade, database)


def _upgrade(connection: sa.Connection, database: Database) -> None:
    database.lock_for_migration(connection)
    config = alembic_config(connection)
    tables = set(sa.inspect(connection).get_table_names())
    if "alembic_version" not in tables and LEGACY_TABLE in tables:
        _stamp_legacy(connection, config, database)
    current = MigrationContext.configure(connection).get_current_heads()
    known = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
    newer = [revision for revision in current if revision not in known]
    if newer:
        log.warning(
            "database %s is at revision %s, newer than this code knows; not migrating",
            database.where,
            ", ".join(newer),
        )
        return
    command.upgrade(config, "head")
    after = MigrationContext.configure(connection).get_current_heads()
    if after != current:
        log.info(
            "database %s migrated from %s to %s",
            database.where,
            ", ".join(current) or "nothing",
            ", ".join(after),
        )


def _stamp_legacy(connection: sa.Connection, config: Config, database: Database) -> None:
    versions = set(connection.scalars(sa.text(f"SELECT version FROM {LEGACY_TABLE}")))
    if versions != {LEGACY_VERSION}:
        raise StoreError(
            f"database {database.where} has pre-Alembic schema versions {sorted(versions)}; "
            f"only version {LEGACY_VERSION} can be upgraded"
        )
    log.info(
        "database %s was created before Alembic (schema version %d): stamping revision %s",
        database.where,
        LEGACY_VERSION,
        BASELINE,
    )
    command.stamp(config, BASELINE)
