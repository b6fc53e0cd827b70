"""The fake Slack's workspaces and its OAuth install flow (``oauth.v2.access``).

One app, installed in any number of workspaces: each has its team id, its bot user and bot
id, and its own bot token, and a Web API call acts for the workspace whose token it carries
(the messages it posts are that workspace's bot's; ``calls`` record the team). The
workspace given to ``FakeSlack(...)`` exists from the start; ``FakeSlack.add_workspace``
adds more.

The install flow, as Slack runs it (docs.slack.dev, "Installing with OAuth"): the app sends
the person to ``/oauth/v2/authorize?client_id&scope&state[&redirect_uri][&team]``; the fake
approves at once, as ``installer`` of ``team`` (or of the first workspace), and redirects
to the ``redirect_uri`` given, or else the app's registered one (``OAuthApp.redirect_uri``),
with ``code`` and ``state``. ``oauth.v2.access`` exchanges the code once, within ten
minutes, for the workspace's bot token, authenticated with the app's client id and secret
(HTTP Basic, as slack_sdk sends them, or form fields). ``FakeSlack.uninstall(team)``
revokes a workspace's token: its calls then answer ``token_revoked``; installing again
issues a new one.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from aiohttp import web

from tests.fakes.slack_methods import SlackFailure

if TYPE_CHECKING:
    from tests.fakes.slack_server import FakeSlack

CODE_TTL = 10 * 60.0  # an authorization code is good once, for ten minutes


@dataclass
class Workspace:
    """A workspace where the app is (or will be) installed."""

    team_id: str
    bot_token: str
    bot_user_id: str
    bot_id: str
    team_domain: str
    name: str
    revoked: bool = False


@dataclass
class OAuthApp:
    """The app's credentials and its registered Redirect URL (None: none registered yet)."""

    client_id: str = "1111111111.2222222222"
    client_secret: str = "fake-client-secret"
    redirect_uri: str | None = None


@dataclass
class _Grant:
    team_id: str
    user: str
    scope: str
    redirect_uri: str | None
    issued_at: float
    used: bool = False


def new_bot_token(team_id: str) -> str:
    return f"xoxb-{team_id}-{secrets.token_hex(8)}"


class OAuthFlow:
    """Authorization codes issued by the authorize page, exchanged by ``oauth.v2.access``."""

    def __init__(self, fake: FakeSlack) -> None:
        self._fake = fake
        self.app = OAuthApp()
        self.installer = "UINSTALLER"  # who clicks "Allow" on the authorize page
        self.approvals: list[dict[str, Any]] = []  # every authorize-page visit approved
        self._grants: dict[str, _Grant] = {}

    def approve(
        self, team_id: str, *, scope: str, redirect_uri: str | None, user: str | None = None
    ) -> str:
        """Someone in ``team_id`` allowed the install: a one-time code for the app."""
        if team_id not in self._fake.workspaces:
            raise KeyError(f"no workspace {team_id}")
        code = f"{team_id}.{secrets.token_hex(12)}"
        self._grants[code] = _Grant(
            team_id=team_id,
            user=user or self.installer,
            scope=scope,
            redirect_uri=redirect_uri,
            issued_at=self._fake.clock.now(),
        )
        return code

    async def authorize_page(self, request: web.Request) -> web.Response:
        """``GET /oauth/v2/authorize``: approve at once, redirect back to the app."""
        query = request.query
        if query.get("client_id") != self.app.client_id:
            return web.Response(status=400, text="invalid_client_id")
        if not query.get("scope") and not query.get("user_scope"):
            return web.Response(status=400, text="invalid_scope")
        given = query.get("redirect_uri")
        if given and self.app.redirect_uri and given != self.app.redirect_uri:
            return web.Response(status=400, text="bad_redirect_uri")
        target = given or self.app.redirect_uri
        if not target:
            return web.Response(status=400, text="bad_redirect_uri")
        team_id = query.get("team") or self._fake.default_team_id
        if team_id not in self._fake.workspaces:
            return web.Response(status=400, text="team_not_found")
        code = self.approve(team_id, scope=query.get("scope", ""), redirect_uri=given)
        self.approvals.append({"team": team_id, "state": query.get("state"), "code": code})
        params = {"code": code}
        if query.get("state") is not None:
            params["state"] = query["state"]
        raise web.HTTPFound(f"{target}?{urlencode(params)}")

    def access(self, args: dict[str, Any], authorization: str) -> dict[str, Any]:
        """``oauth.v2.access``: the code -> the workspace's bot token."""
        client_id, client_secret = args.get("client_id"), args.get("client_secret")
        if authorization.startswith("Basic "):
            decoded = base64.b64decode(authorization[len("Basic ") :]).decode()
            client_id, _, client_secret = decoded.partition(":")
        if client_id != self.app.client_id:
            raise SlackFailure("invalid_client_id")
        if client_secret != self.app.client_secret:
            raise SlackFailure("bad_client_secret")
        grant = self._grants.get(str(args.get("code") or ""))
        if grant is None or self._fake.clock.now() - grant.issued_at > CODE_TTL:
            raise SlackFailure("invalid_code")
        if grant.used:
            raise SlackFailure("code_already_used")
        if grant.redirect_uri is not None and args.get("redirect_uri") != grant.redirect_uri:
            raise SlackFailure("bad_redirect_uri")
        grant.used = True
        workspace = self._fake.workspaces[grant.team_id]
        if workspace.revoked:  # installed again after an uninstall: a new token
            self._fake.set_bot_token(workspace, new_bot_token(workspace.team_id))
            workspace.revoked = False
        return {
            "app_id": self._fake.app_id,
            "authed_user": {"id": grant.user},
            "scope": grant.scope,
            "token_type": "bot",
            "access_token": workspace.bot_token,
            "bot_user_id": workspace.bot_user_id,
            "team": {"id": workspace.team_id, "name": workspace.name},
            "enterprise": None,
            "is_enterprise_install": False,
        }
