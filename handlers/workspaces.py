"""Many workspaces: which workspace a request speaks for, and the app leaving one.

``WorkspaceGate`` runs before Bolt's authorize on every request. From a workspace where the
app is installed it sets ``current_team``, so every Slack call the listeners (and the tasks
they spawn) make uses that workspace's token. From one where it is not (never installed,
uninstalled, tokens revoked) the request gets a 200 and one log line naming the workspace:
Bolt's own authorize would log an error that does not say which, and Slack must not
retry a request no retry can fix. A slash command also tells the person why nothing happens.

``app_uninstalled`` and ``tokens_revoked`` delete the workspace's tokens (as Bolt's built-in
listeners do) and drop it from the token cache: its turns then end at their next Slack call
(``NotInstalled``, never sent; for a queued turn normally the status indicator, before the
model is asked), and nothing more is sent there.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore

from bot.workspaces import WorkspaceTokens, current_team
from store.base import StoreError

log = logging.getLogger(__name__)

# Requests that concern the installation itself, or no workspace: Bolt lets them through.
_UNGATED_EVENTS = frozenset({"app_uninstalled", "tokens_revoked", "team_access_revoked"})
NOT_INSTALLED_NOTE = (
    "tutorbot is not installed in this workspace any more. Ask a workspace admin to add it again."
)


def _what(body: dict[str, Any]) -> str:
    """A request in a log line: ``app_mention event``, ``/tutor command``, ``block_actions``."""
    event = body.get("event")
    if body.get("type") == "event_callback" and isinstance(event, dict):
        return f"{event.get('type')} event"
    if body.get("command"):
        return f"{body.get('command')} command"
    return str(body.get("type") or "request")


class WorkspaceGate(AsyncMiddleware):
    """Bolt's ``before_authorize``: set ``current_team``, or answer for a workspace without
    an installation."""

    def __init__(self, tokens: WorkspaceTokens) -> None:
        self._tokens = tokens

    async def async_process(
        self,
        *,
        req: AsyncBoltRequest,
        resp: BoltResponse,
        next: Callable[[], Awaitable[BoltResponse]],
    ) -> BoltResponse | None:
        body = req.body or {}
        team = req.context.team_id
        event = body.get("event")
        kind = event.get("type") if isinstance(event, dict) else None
        if team is None or kind in _UNGATED_EVENTS:
            return await next()
        try:
            bot = await self._tokens.bot(team)
        except StoreError as exc:
            # Slack retries a 5xx a few times: the request is not lost to a database blip.
            log.error("could not look up workspace %s: %s", team, exc)
            return BoltResponse(status=503, body="")
        if bot is None:
            log.warning(
                "ignored a %s from workspace %s: tutorbot is not installed there "
                "(it can be installed through /slack/install)",
                _what(body),
                team,
            )
            return BoltResponse(status=200, body=NOT_INSTALLED_NOTE if body.get("command") else "")
        current_team.set(team)
        return await next()


def register(app: AsyncApp, installations: AsyncInstallationStore, tokens: WorkspaceTokens) -> None:
    """The app leaving a workspace. Register before any catch-all event listener."""

    async def forget(context: AsyncBoltContext, *, user_ids: list[str] | None = None) -> None:
        team, enterprise = context.team_id, context.enterprise_id
        for user_id in user_ids or []:
            await installations.async_delete_installation(
                enterprise_id=enterprise, team_id=team, user_id=user_id
            )
        if user_ids is None:
            await installations.async_delete_all(enterprise_id=enterprise, team_id=team)
            log.info("workspace %s: tokens deleted; nothing more is done there", team)
        if team is not None:
            tokens.forget(team)

    @app.event("app_uninstalled")
    async def on_app_uninstalled(context: AsyncBoltContext) -> None:
        log.info("tutorbot was uninstalled from workspace %s", context.team_id)
        await forget(context)

    @app.event("tokens_revoked")
    async def on_tokens_revoked(event: dict[str, Any], context: AsyncBoltContext) -> None:
        revoked = event.get("tokens") or {}
        if revoked.get("bot"):
            log.info("the bot token of workspace %s was revoked", context.team_id)
            await forget(context)  # the installations hold the same bot token: all go
        elif revoked.get("oauth"):
            await forget(context, user_ids=[str(u) for u in revoked["oauth"]])
