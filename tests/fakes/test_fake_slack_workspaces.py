"""The fake Slack's workspaces and OAuth install flow, through the real slack_sdk client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack_server import FakeSlack

REDIRECT = "https://bot.example/slack/oauth_redirect"


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as f:
        yield f


async def _error(coro: Any) -> str:
    with pytest.raises(SlackApiError) as info:
        await coro
    return str(info.value.response["error"])


async def _authorize(fake: FakeSlack, **query: str) -> tuple[int, str]:
    """Visit the authorize page as a browser would; (status, Location or body)."""
    url = f"{fake.base_url}/oauth/v2/authorize?{urlencode(query)}"
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, allow_redirects=False) as resp,
    ):
        return resp.status, resp.headers.get("Location") or await resp.text()


async def test_each_token_acts_for_its_own_workspace(fake: FakeSlack) -> None:
    second = fake.add_workspace("T2")
    first = AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)
    other = AsyncWebClient(token=second.bot_token, base_url=fake.api_url)

    assert (await first.auth_test())["team_id"] == "T1"
    who = await other.auth_test()
    assert (who["team_id"], who["user_id"], who["bot_id"]) == ("T2", "UBOTT2", "BBOTT2")

    await first.chat_postMessage(channel="C1", text="one")
    posted = await other.chat_postMessage(channel="C2", text="two")
    [mine] = fake.bot_messages("C2")
    assert mine["ts"] == posted["ts"]
    assert (mine["team"], mine["bot_id"], mine["user"]) == ("T2", "BBOTT2", "UBOTT2")
    assert [m["team"] for m in fake.bot_messages("C1")] == ["T1"]
    assert [c.method for c in fake.calls_from("T2")] == ["auth.test", "chat.postMessage"]
    # Outside a call, the fake's ids are still the first workspace's.
    assert (fake.team_id, fake.bot_id) == ("T1", "BBOT")


async def test_a_shared_file_opens_only_with_its_workspace_token(fake: FakeSlack) -> None:
    second = fake.add_workspace("T2")
    file = fake.add_file(
        name="a.txt", content=b"hello", mimetype="text/plain", filetype="text", team="T2"
    )

    async def download(token: str) -> str:
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            aiohttp.ClientSession() as session,
            session.get(file["url_private_download"], headers=headers) as resp,
        ):
            return await resp.text()

    assert await download(second.bot_token) == "hello"
    assert "Sign in" in await download(fake.bot_token)  # Slack's login page, not the file


async def test_the_install_flow_gives_the_workspace_token_once(fake: FakeSlack) -> None:
    second = fake.add_workspace("T2", name="Second School")
    fake.oauth.app.redirect_uri = REDIRECT
    status, location = await _authorize(
        fake, client_id=fake.oauth.app.client_id, scope="chat:write,commands", state="s1", team="T2"
    )
    assert status == 302
    target = urlsplit(location)
    assert f"{target.scheme}://{target.netloc}{target.path}" == REDIRECT
    query = parse_qs(target.query)
    assert query["state"] == ["s1"]
    [code] = query["code"]

    app = AsyncWebClient(base_url=fake.api_url)
    credentials = {"client_id": fake.oauth.app.client_id}
    wrong = app.oauth_v2_access(**credentials, client_secret="nope", code=code)
    assert await _error(wrong) == "bad_client_secret"
    granted = await app.oauth_v2_access(
        **credentials, client_secret=fake.oauth.app.client_secret, code=code
    )
    assert granted["access_token"] == second.bot_token
    assert granted["team"] == {"id": "T2", "name": "Second School"}
    assert (granted["bot_user_id"], granted["token_type"]) == ("UBOTT2", "bot")
    assert granted["scope"] == "chat:write,commands"
    assert granted["authed_user"] == {"id": fake.oauth.installer}
    secret = fake.oauth.app.client_secret
    again = app.oauth_v2_access(**credentials, client_secret=secret, code=code)
    assert await _error(again) == "code_already_used"


async def test_the_authorize_page_checks_the_app_and_where_to_go_back(fake: FakeSlack) -> None:
    client_id = fake.oauth.app.client_id
    assert await _authorize(fake, client_id="other", scope="chat:write") == (
        400,
        "invalid_client_id",
    )
    # No Redirect URL registered and none given.
    assert await _authorize(fake, client_id=client_id, scope="chat:write") == (
        400,
        "bad_redirect_uri",
    )
    fake.oauth.app.redirect_uri = REDIRECT
    elsewhere = "https://evil.example/slack/oauth_redirect"
    assert await _authorize(
        fake, client_id=client_id, scope="chat:write", redirect_uri=elsewhere
    ) == (400, "bad_redirect_uri")
    assert await _authorize(fake, client_id=client_id, scope="chat:write", team="T9") == (
        400,
        "team_not_found",
    )


async def test_codes_expire_after_ten_minutes(fake: FakeSlack) -> None:
    code = fake.oauth.approve("T1", scope="chat:write", redirect_uri=None)
    fake.clock.advance(601)
    app = AsyncWebClient(base_url=fake.api_url)
    late = app.oauth_v2_access(
        client_id=fake.oauth.app.client_id, client_secret=fake.oauth.app.client_secret, code=code
    )
    assert await _error(late) == "invalid_code"


async def test_uninstall_revokes_and_a_new_install_issues_a_new_token(fake: FakeSlack) -> None:
    second = fake.add_workspace("T2")
    old = second.bot_token
    client = AsyncWebClient(token=old, base_url=fake.api_url)
    fake.uninstall("T2")
    assert await _error(client.chat_postMessage(channel="C2", text="hi")) == "token_revoked"

    code = fake.oauth.approve("T2", scope="chat:write", redirect_uri=None)
    app = AsyncWebClient(base_url=fake.api_url)
    granted = await app.oauth_v2_access(
        client_id=fake.oauth.app.client_id, client_secret=fake.oauth.app.client_secret, code=code
    )
    assert granted["access_token"] != old
    assert await _error(client.auth_test()) == "invalid_auth"
    renewed = AsyncWebClient(token=granted["access_token"], base_url=fake.api_url)
    assert (await renewed.auth_test())["team_id"] == "T2"
