"""Many workspaces, part by part: the installation and state stores on both databases, the
signed OAuth states, the token cache, and ``Replies`` speaking for the current workspace."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from slack_sdk.oauth.installation_store import Installation

from bot.oauth import SignedStates
from bot.replies import NotInstalled, Replies, make_web_client
from bot.workspaces import WorkspaceTokens, current_team
from store.slack_oauth import InstalledBot, SlackInstallationStore, SlackOAuthStateStore
from tests.databases import Backend
from tests.fakes.slack_server import FakeSlack

CLIENT_ID = "1111.2222"


def _installation(
    team: str, token: str, *, enterprise: str | None = None, at: float
) -> Installation:
    return Installation(
        app_id="A1",
        enterprise_id=enterprise,
        team_id=team,
        team_name=f"School {team}",
        bot_token=token,
        bot_id=f"B{team}",
        bot_user_id=f"U{team}",
        bot_scopes="chat:write,commands",
        user_id="UINSTALLER",
        installed_at=at,
    )


async def test_installations_are_found_by_team_and_deleted(backend: Backend) -> None:
    store = backend.make()
    await store.open()
    try:
        installations = SlackInstallationStore(CLIENT_ID)
        installations.bind(store.engine)
        now = time.time()
        await installations.async_save(_installation("T2", "xoxb-old", enterprise="E1", at=now))
        await installations.async_save(_installation("T2", "xoxb-new", enterprise="E1", at=now + 1))
        await installations.async_save(_installation("T3", "xoxb-t3", at=now))

        # A workspace of an Enterprise Grid org is found by its team id alone: the newest.
        assert await installations.find_bot_of_team("T2") == InstalledBot(
            team_id="T2", token="xoxb-new", user_id="UT2", bot_id="BT2"
        )
        other = SlackInstallationStore("9999.0000")  # another app's rows are not ours
        other.bind(store.engine)
        assert await other.find_bot_of_team("T2") is None

        await installations.async_delete_all(enterprise_id="E1", team_id="T2")
        assert await installations.find_bot_of_team("T2") is None
        assert await installations.find_bot_of_team("T3") is not None
    finally:
        await store.close()


async def test_states_are_signed_used_once_and_expired_ones_swept(backend: Backend) -> None:
    store = backend.make()
    await store.open()
    try:
        stored = SlackOAuthStateStore(expiration_seconds=600)
        stored.bind(store.engine)
        states = SignedStates(stored, "state-secret")
        state = await states.async_issue()
        raw, _, signature = state.rpartition(".")
        assert raw and len(signature) == 64

        assert not await states.async_consume(f"{raw}.{'0' * 64}")  # not our signature
        assert not await SignedStates(stored, "another-secret").async_consume(state)
        assert not await states.async_consume(raw)  # unsigned
        assert await states.async_consume(state)
        assert not await states.async_consume(state)  # used once

        stale = SlackOAuthStateStore(expiration_seconds=-60)
        stale.bind(store.engine)
        await stale.async_issue()
        await stale.async_issue()  # sweeps the first
        await states.async_issue()  # sweeps the second
        assert await backend.query("SELECT count(*) FROM slack_oauth_states") == [(1,)]
    finally:
        await store.close()


async def test_tokens_are_cached_for_a_minute_and_absences_not_at_all() -> None:
    asked: list[str] = []
    installed = {"T1": InstalledBot(team_id="T1", token="xoxb-1", user_id="U1", bot_id="B1")}

    async def find(team: str) -> InstalledBot | None:
        asked.append(team)
        return installed.get(team)

    now = [0.0]
    tokens = WorkspaceTokens(find, ttl=60, clock=lambda: now[0])
    assert (await tokens.bot("T1")) == installed["T1"]
    assert (await tokens.bot("T1")) == installed["T1"]
    assert await tokens.bot("T2") is None
    assert await tokens.bot("T2") is None
    assert asked == ["T1", "T2", "T2"]

    now[0] = 61.0
    await tokens.bot("T1")
    assert asked[-1] == "T1"
    del installed["T1"]
    tokens.forget("T1")  # uninstalled here: not served from the cache any more
    assert await tokens.bot("T1") is None


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as f:
        f.add_workspace("T2")
        yield f


async def test_replies_speak_for_the_current_workspace(fake: FakeSlack) -> None:
    bots = {
        w.team_id: InstalledBot(w.team_id, w.bot_token, w.bot_user_id, w.bot_id)
        for w in fake.workspaces.values()
    }

    async def find(team: str) -> InstalledBot | None:
        return bots.get(team)

    client = make_web_client(None, fake.api_url)
    replies = Replies(client, tokens=WorkspaceTokens(find))
    for team, channel in (("T1", "C1"), ("T2", "C2")):
        reset = current_team.set(team)
        try:
            await replies.post(channel, f"hello {team}")
            assert await replies.identity() == (bots[team].user_id, bots[team].bot_id)
            assert await replies.token() == bots[team].token
        finally:
            current_team.reset(reset)
    assert [(c.method, c.team) for c in fake.calls] == [
        ("chat.postMessage", "T1"),
        ("chat.postMessage", "T2"),
    ]  # the identities came from the installations, not auth.test
    assert [m["team"] for m in fake.bot_messages("C2")] == ["T2"]

    for team in ("T9", None):  # never installed; no workspace at all
        reset = current_team.set(team)
        try:
            with pytest.raises(NotInstalled) as info:
                await replies.post("C9", "anyone?")
            assert (info.value.error, info.value.team) == ("not_installed", team)
            await replies.ephemeral("C9", "U1", "best effort: swallowed")
        finally:
            current_team.reset(reset)
    assert len(fake.calls) == 2  # nothing was sent for them
