"""Slack installations and OAuth states in the store's database, through slack_sdk's own
SQLAlchemy stores on the store's engine (``SqlStore.engine``).

slack_sdk's stores are used as they are, with two additions: the bot of a workspace looked
up by team id alone (a turn knows only its thread's team, not the Enterprise Grid org the
workspace may belong to), and expired OAuth states deleted (slack_sdk deletes a state only
when it is used, so abandoned installs would pile up). Their tables come from revision
0006; ``create_tables`` is refused so that nothing creates them behind the migrations' back.

Bolt takes these stores when the app is built, before the store is opened (and has an
engine): they are built unbound, and ``bind(store.engine)`` once the store is open.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn, cast

import sqlalchemy as sa
from slack_sdk.oauth.installation_store.sqlalchemy import AsyncSQLAlchemyInstallationStore
from slack_sdk.oauth.sqlalchemy_utils import normalize_datetime_for_db
from slack_sdk.oauth.state_store.sqlalchemy import AsyncSQLAlchemyOAuthStateStore
from sqlalchemy.ext.asyncio import AsyncEngine

from store.base import StoreError
from store.sql import STORE_FAILURES

log = logging.getLogger(__name__)

_MIGRATED = "the Slack installation tables are created by the store's migrations (0006)"
_UNBOUND = cast(AsyncEngine, None)


@dataclass(frozen=True, slots=True)
class InstalledBot:
    """A workspace's bot as the OAuth flow stored it: what a Slack call on its behalf needs."""

    team_id: str
    token: str
    user_id: str
    bot_id: str


class SlackInstallationStore(AsyncSQLAlchemyInstallationStore):
    """slack_sdk's installation store (``slack_installations``, ``slack_bots``)."""

    def __init__(self, client_id: str) -> None:
        super().__init__(client_id=client_id, engine=_UNBOUND, logger=log)

    def bind(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create_tables(self) -> NoReturn:
        raise RuntimeError(_MIGRATED)

    async def find_bot_of_team(self, team_id: str) -> InstalledBot | None:
        """The newest bot token installed in workspace ``team_id`` (whatever its org), or
        None when the app is not installed there (never was, uninstalled, revoked)."""
        c = self.bots.c
        query = (
            sa.select(c.bot_token, c.bot_user_id, c.bot_id)
            .where(
                c.client_id == self.client_id,
                c.team_id == team_id,
                c.bot_token.is_not(None),
            )
            .order_by(c.installed_at.desc())
            .limit(1)
        )
        if self.engine is None:
            raise StoreError("the installation store is not bound to the open store")
        try:
            async with self.engine.connect() as conn:
                row = (await conn.execute(query)).first()
        except STORE_FAILURES as exc:
            raise StoreError(f"looking up the bot of workspace {team_id} failed: {exc}") from exc
        if row is None:
            return None
        return InstalledBot(
            team_id=team_id,
            token=str(row.bot_token),
            user_id=str(row.bot_user_id or ""),
            bot_id=str(row.bot_id or ""),
        )


class SlackOAuthStateStore(AsyncSQLAlchemyOAuthStateStore):
    """slack_sdk's OAuth state store (``slack_oauth_states``), minus the expired states."""

    def __init__(self, *, expiration_seconds: int) -> None:
        super().__init__(expiration_seconds=expiration_seconds, engine=_UNBOUND, logger=log)

    def bind(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create_tables(self) -> NoReturn:
        raise RuntimeError(_MIGRATED)

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        now = normalize_datetime_for_db(datetime.now(tz=UTC))
        expired = self.oauth_states.delete().where(self.oauth_states.c.expire_at < now)
        async with self.engine.begin() as conn:
            await conn.execute(expired)
        return await super().async_issue(*args, **kwargs)
