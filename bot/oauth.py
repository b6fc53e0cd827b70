"""Installs into many workspaces: Slack's OAuth flow as Bolt runs it, kept in our database.

``WorkspaceInstalls`` holds what ``TutorBot`` needs in that mode: slack_sdk's installation
and OAuth state stores on the store's engine (``store.slack_oauth``), Bolt's OAuth settings
(``GET /slack/install`` renders the "Add to Slack" page, ``GET /slack/oauth_redirect``
exchanges the code with ``oauth.v2.access`` and saves the installation), Bolt's authorize
(each request's workspace -> its bot token), and the token cache the core's Slack calls use
(``bot.workspaces``).

``SLACK_STATE_SECRET`` signs the OAuth ``state``: the state store and the browser cookie
already tie a redirect to the install page that began it; the signature also makes a state
this deployment did not issue fail before the database is asked, and changing the secret
voids every install in progress.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

from slack_bolt.authorization.async_authorize import AsyncInstallationStoreAuthorize
from slack_bolt.oauth.async_callback_options import (
    AsyncCallbackOptions,
    AsyncFailureArgs,
    AsyncSuccessArgs,
)
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.response import BoltResponse
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore
from sqlalchemy.ext.asyncio import AsyncEngine
from yarl import URL

from bot.config import DEFAULT_SLACK_API_URL, Settings
from bot.workspaces import WorkspaceTokens
from store.slack_oauth import SlackInstallationStore, SlackOAuthStateStore

log = logging.getLogger(__name__)

# What the app asks each workspace for: manifest.yml's oauth_config.scopes.bot (a test
# checks they agree). Bot scopes only: the tutor never acts as a person.
BOT_SCOPES = (
    "app_mentions:read",
    "assistant:write",
    "channels:history",
    "channels:read",
    "groups:history",
    "groups:read",
    "im:history",
    "mpim:history",
    "chat:write",
    "commands",
    "files:read",
    "files:write",
)
INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"
STATE_SECONDS = 600  # Slack's own advice: an install left open longer starts again


class SignedStates(AsyncOAuthStateStore):
    """OAuth states as ``<state>.<HMAC-SHA256 of it>``, kept (unsigned) in ``states``."""

    def __init__(self, states: AsyncOAuthStateStore, secret: str) -> None:
        self._states = states
        self._key = secret.encode()

    @property
    def logger(self) -> logging.Logger:
        return log

    def _signature(self, state: str) -> str:
        return hmac.new(self._key, state.encode(), hashlib.sha256).hexdigest()

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        state = await self._states.async_issue(*args, **kwargs)
        return f"{state}.{self._signature(state)}"

    async def async_consume(self, state: str) -> bool:
        raw, _, signature = (state or "").rpartition(".")
        if not raw or not hmac.compare_digest(signature, self._signature(raw)):
            log.warning("an OAuth redirect came back with a state this app did not sign")
            return False
        return await self._states.async_consume(raw)


def authorization_url(api_url: str) -> str | None:
    """Slack's authorize page beside the Web API base (GovSlack, a test's fake Slack), or
    None for Bolt's default (``https://slack.com/oauth/v2/authorize``)."""
    if api_url == DEFAULT_SLACK_API_URL:
        return None
    return str(URL(api_url).origin() / "oauth" / "v2" / "authorize")


class WorkspaceInstalls:
    """The OAuth install flow, authorize and token lookups, over the store's database."""

    def __init__(self, settings: Settings) -> None:
        assert settings.slack_client_id and settings.slack_client_secret
        assert settings.slack_state_secret
        self.installations = SlackInstallationStore(settings.slack_client_id)
        self.states = SlackOAuthStateStore(expiration_seconds=STATE_SECONDS)
        self.tokens = WorkspaceTokens(self.installations.find_bot_of_team)
        self.oauth_settings = AsyncOAuthSettings(
            client_id=settings.slack_client_id,
            client_secret=settings.slack_client_secret,
            scopes=list(BOT_SCOPES),
            user_scopes=[],
            redirect_uri=settings.slack_redirect_uri,
            install_path=INSTALL_PATH,
            redirect_uri_path=REDIRECT_PATH,
            authorization_url=authorization_url(settings.slack_api_url),
            installation_store=self.installations,
            installation_store_bot_only=True,
            state_store=SignedStates(self.states, settings.slack_state_secret),
            state_expiration_seconds=STATE_SECONDS,
            callback_options=AsyncCallbackOptions(success=self._installed, failure=self._failed),
            logger=log,
        )
        # Bolt's authorize for the installation store, finding bots only (the app has no
        # user tokens), and asking auth.test once per token rather than once per request.
        self.authorize = AsyncInstallationStoreAuthorize(
            logger=log,
            installation_store=self.installations,
            client_id=settings.slack_client_id,
            client_secret=settings.slack_client_secret,
            bot_only=True,
            cache_enabled=True,
        )

    def bind(self, engine: AsyncEngine) -> None:
        """The store is open: its engine is where installations and states live."""
        self.installations.bind(engine)
        self.states.bind(engine)

    async def _installed(self, args: AsyncSuccessArgs) -> BoltResponse:
        installation = args.installation
        team = installation.team_id or installation.enterprise_id or "?"
        self.tokens.forget(team)  # installed again: a new token, maybe new scopes
        log.info(
            "installed in workspace %s (%s) by %s",
            team,
            installation.team_name or "unnamed",
            installation.user_id,
        )
        return await args.default.success(args)

    async def _failed(self, args: AsyncFailureArgs) -> BoltResponse:
        log.warning("an install did not complete: %s", args.reason)
        return await args.default.failure(args)
