"""Many workspaces, end to end: the bot installed through Slack's OAuth flow (against the
fake Slack's authorize page and ``oauth.v2.access``), serving two workspaces at once with
their own tokens, uninstalled from one, and asked by one where it was never installed.
On SQLite and PostgreSQL: installations live in the bot's own database."""

from __future__ import annotations

import asyncio
import html
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from bot.domain import ThreadKey, TurnStatus
from bot.oauth import BOT_SCOPES
from tests.e2e.conftest import SIGNING_SECRET, Harness
from tests.e2e.test_quiz import MC_ONLY, button, buttons, dump, quiz_call
from tests.fakes.openai_model import Reply
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_payloads import (
    SlackSender,
    app_mention,
    app_uninstalled,
    block_actions,
    message,
    next_ts,
    tokens_revoked,
)
from tests.fakes.slack_server import FakeSlack

STATE_COOKIE = "slack-app-oauth-state"


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bot.db'}"
    return str(request.getfixturevalue("pg_schema"))


@pytest.fixture
async def many(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, tmp_path: Path, database: str
) -> AsyncIterator[Harness]:
    """The bot with the OAuth settings instead of a bot token; Slack knows T1 and T2."""
    fake_slack.add_workspace("T2", name="Second School")
    harness = Harness(
        fake_slack,
        fake_openai,
        tmp_path / "unused.db",
        "responses",
        DATABASE_URL=database,
        SLACK_CLIENT_ID=fake_slack.oauth.app.client_id,
        SLACK_CLIENT_SECRET=fake_slack.oauth.app.client_secret,
        SLACK_STATE_SECRET="a-long-random-state-secret",
    )
    del harness.env["SLACK_BOT_TOKEN"]
    await harness.start()
    # The Redirect URL registered in the app's settings.
    fake_slack.oauth.app.redirect_uri = f"{harness.url}/slack/oauth_redirect"
    yield harness
    await harness.stop()
    assert fake_openai.violations == []


async def _get(url: str, *, cookie: str | None = None) -> tuple[int, str, dict[str, Any]]:
    """A browser's GET without following redirects: (status, body or Location, cookies)."""
    headers = {"Cookie": cookie} if cookie else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers=headers, allow_redirects=False) as resp,
    ):
        body = resp.headers.get("Location") or await resp.text()
        return resp.status, body, {k: v.value for k, v in resp.cookies.items()}


async def _begin_install(harness: Harness, team: str) -> tuple[str, str]:
    """Open the "Add to Slack" page and click the button: the redirect Slack sends the
    browser back with, and the state cookie the page set."""
    status, page, cookies = await _get(f"{harness.url}/slack/install?team={team}")
    assert status == 200 and "Add to Slack" in page
    [authorize] = re.findall(r'<a href="([^"]+)"', page)
    authorize = html.unescape(authorize)
    query = parse_qs(urlsplit(authorize).query)
    assert authorize.startswith(f"{harness.slack.base_url}/oauth/v2/authorize?")
    assert query["client_id"] == [harness.slack.oauth.app.client_id]
    assert query["scope"] == [",".join(BOT_SCOPES)]
    assert query["state"] and query["team"] == [team]
    state_cookie = f"{STATE_COOKIE}={cookies[STATE_COOKIE]}"
    status, back, _ = await _get(authorize)
    assert status == 302 and back.startswith(f"{harness.url}/slack/oauth_redirect?")
    assert parse_qs(urlsplit(back).query)["state"] == query["state"]
    return back, state_cookie


async def install(harness: Harness, team: str) -> None:
    back, cookie = await _begin_install(harness, team)
    status, page, _ = await _get(back, cookie=cookie)
    assert status == 200 and "Thank you!" in page, page


def sender(harness: Harness, team: str) -> SlackSender:
    """Slack delivering the events of workspace ``team`` (its bot in ``authorizations``)."""
    return SlackSender(
        f"{harness.url}/slack/events",
        SIGNING_SECRET,
        bot_user_id=harness.slack.workspaces[team].bot_user_id,
        on_event=harness.slack.add_message,
    )


async def mention(
    harness: Harness, team: str, text: str, *, channel: str, thread_ts: str | None = None
) -> tuple[int, dict[str, Any]]:
    bot_user = harness.slack.workspaces[team].bot_user_id
    event = app_mention(
        text=f"<@{bot_user}> {text}",
        channel=channel,
        team=team,
        bot_user_id=bot_user,
        ts=next_ts(),
        thread_ts=thread_ts,
    )
    result = await sender(harness, team).post_event(event, team_id=team)
    return result.status, event


def _channel(call: Any) -> str | None:
    return call.args.get("channel") or call.args.get("channel_id")


async def test_the_install_flow_stores_the_workspace(many: Harness) -> None:
    installations = many.bot.installs.installations if many.bot and many.bot.installs else None
    assert installations is not None
    back, cookie = await _begin_install(many, "T2")

    # Without the cookie the install page set, the redirect is not this browser's.
    status, _, _ = await _get(back)
    assert status == 400
    assert await installations.async_find_bot(enterprise_id=None, team_id="T2") is None
    # A state this deployment did not sign is refused.
    forged = re.sub(r"state=[^&]+", "state=forged.0000", back)
    status, _, _ = await _get(forged, cookie=f"{STATE_COOKIE}=forged.0000")
    assert status == 401

    status, page, _ = await _get(back, cookie=cookie)
    assert status == 200 and "Thank you!" in page
    workspace = many.slack.workspaces["T2"]
    stored = await installations.async_find_installation(enterprise_id=None, team_id="T2")
    assert stored is not None
    assert (stored.bot_token, stored.bot_user_id, stored.bot_id) == (
        workspace.bot_token,
        workspace.bot_user_id,
        workspace.bot_id,
    )
    assert (stored.team_name, stored.user_id) == ("Second School", many.slack.oauth.installer)
    assert stored.bot_scopes == list(BOT_SCOPES)
    [exchange] = many.slack.calls_to("oauth.v2.access")
    assert exchange.ok
    # The state is used up: the same redirect again is refused.
    status, _, _ = await _get(back, cookie=cookie)
    assert status == 401


async def test_two_workspaces_are_served_at_once_with_their_own_tokens(many: Harness) -> None:
    await install(many, "T1")
    await install(many, "T2")
    slack = many.slack
    first, second = slack.workspaces["T1"], slack.workspaces["T2"]
    since = len(slack.calls)
    report = slack.add_file(
        name="notes.txt", content=b"x = 2", mimetype="text/plain", filetype="text", team="T2"
    )

    async def file_in_t2() -> dict[str, Any]:
        event = message(text="what does my file say?", channel="DT2", team="T2", files=[report])
        result = await sender(many, "T2").post_event(event, team_id="T2")
        assert result.status == 200
        return event

    (status_a, a), (status_b, b), shared = await asyncio.gather(
        mention(many, "T1", "question A", channel="C1"),
        mention(many, "T2", "question B", channel="C2"),
        file_in_t2(),
    )
    assert status_a == status_b == 200
    command = await sender(many, "T2").post_command(
        "question C", team_id="T2", channel_id="C22", user_id="U2"
    )
    assert command.status == 200
    [answer_a] = await many.wait_answers("C1", a["ts"], 1)
    [answer_b] = await many.wait_answers("C2", b["ts"], 1)
    assert "Echo: question A" in answer_a and "Echo: question B" in answer_b
    await many.wait_answers("DT2", shared["ts"], 1)
    asked = (await slack.wait_for(lambda: slack.bot_messages("C22")))[0]
    await many.wait_answers("C22", asked["ts"], 1)
    await many.settle()

    # Each workspace's messages were posted by its own bot...
    for channel, workspace in (("C1", first), ("C2", second), ("DT2", second), ("C22", second)):
        posted = slack.bot_messages(channel)
        assert posted and {(m["team"], m["bot_id"]) for m in posted} == {
            (workspace.team_id, workspace.bot_id)
        }
    # ... every call for a workspace's conversation carried that workspace's token ...
    for call in slack.calls[since:]:
        channel = _channel(call)
        if channel in ("C1",):
            assert call.token == first.bot_token, call
        elif channel in ("C2", "DT2", "C22"):
            assert call.token == second.bot_token, call
    assert all(call.ok for call in slack.calls[since:]), slack.describe()
    assert {c.team for c in slack.calls[since:]} == {"T1", "T2"}
    # ... the shared file was downloaded with it, and each thread is its workspace's.
    assert slack.downloads == [{"file_id": report["id"], "authorized": True}]
    assert many.bot is not None
    store = many.bot.store
    assert await store.get_thread(ThreadKey("T1", "C1", a["ts"])) is not None
    assert await store.get_thread(ThreadKey("T2", "C2", b["ts"])) is not None
    assert await store.get_thread(ThreadKey("T1", "C2", b["ts"])) is None


async def test_uninstall_deletes_the_tokens_and_stops_work_there(many: Harness) -> None:
    await install(many, "T1")
    await install(many, "T2")
    assert many.bot is not None and many.bot.installs is not None
    installations = many.bot.installs.installations
    slack, model = many.slack, many.openai.model

    # A turn in T2 is being answered, and another waits behind it in the same thread.
    hold = asyncio.Event()
    model.push(Reply(text="a long answer", hold=hold))
    status, first = await mention(many, "T2", "explain fractions", channel="C2")
    assert status == 200
    await slack.wait_for(lambda: len(model.calls) == 1)
    follow_up = message(text="and decimals?", channel="C2", team="T2", thread_ts=first["ts"])
    assert (await sender(many, "T2").post_event(follow_up, team_id="T2")).status == 200
    store = many.bot.store

    async def queued() -> bool:
        return bool(await store.list_turns(statuses=[TurnStatus.QUEUED]))

    await slack.wait_for(queued)

    slack.uninstall("T2")
    uninstalled = await sender(many, "T2").post_event(app_uninstalled(), team_id="T2")
    assert uninstalled.status == 200
    await slack.wait_for(installations_gone(installations, "T2"))
    assert await installations.async_find_installation(enterprise_id=None, team_id="T2") is None
    since = len(slack.calls)
    hold.set()

    # Both turns end without another call to T2 and without asking the model again.
    async def both_failed() -> bool:
        turns = await store.list_turns(statuses=[TurnStatus.FAILED])
        return len(turns) == 2

    await slack.wait_for(both_failed)
    await many.settle()
    later_status, _ = await mention(many, "T2", "anyone there?", channel="C2")
    assert later_status == 200
    await many.settle()
    assert slack.calls_from("T2")  # it was served until then
    assert [c for c in slack.calls[since:] if c.team == "T2"] == []
    assert len(model.calls) == 1

    # The other workspace is served as before.
    status, other = await mention(many, "T1", "still there?", channel="C1")
    assert status == 200
    [answer] = await many.wait_answers("C1", other["ts"], 1)
    assert "Echo: still there?" in answer


def installations_gone(installations: Any, team: str) -> Any:
    async def gone() -> bool:
        return await installations.find_bot_of_team(team) is None

    return gone


async def test_revoked_bot_token_deletes_the_workspace(many: Harness) -> None:
    await install(many, "T2")
    assert many.bot is not None and many.bot.installs is not None
    installations = many.bot.installs.installations
    bot_user = many.slack.workspaces["T2"].bot_user_id
    # A revoked user token leaves the bot alone; a revoked bot token does not.
    event = tokens_revoked(oauth=["U2"])
    assert (await sender(many, "T2").post_event(event, team_id="T2")).status == 200
    await many.settle()
    assert await installations.find_bot_of_team("T2") is not None
    event = tokens_revoked(bot=[bot_user])
    assert (await sender(many, "T2").post_event(event, team_id="T2")).status == 200
    await many.slack.wait_for(installations_gone(installations, "T2"))


async def test_a_workspace_without_installation_gets_a_2xx_and_one_log_line(
    many: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    await install(many, "T1")
    many.slack.add_workspace("T3")  # Slack knows it; the app was never installed there
    since = len(many.slack.calls)
    with caplog.at_level(logging.INFO):
        status, _ = await mention(many, "T3", "hello?", channel="C3")
        command = await sender(many, "T3").post_command("help me", team_id="T3", channel_id="C3")
        await many.settle()
    assert status == 200
    assert command.status == 200 and "not installed" in command.body
    lines = [r for r in caplog.records if "T3" in r.getMessage()]
    assert [r.getMessage() for r in lines] == [
        "ignored a app_mention event from workspace T3: tutorbot is not installed there "
        "(it can be installed through /slack/install)",
        "ignored a /tutor command from workspace T3: tutorbot is not installed there "
        "(it can be installed through /slack/install)",
    ]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert many.slack.calls[since:] == []  # not even auth.test
    assert many.openai.model.calls == []


async def test_a_turn_resumed_after_a_restart_speaks_for_its_workspace(many: Harness) -> None:
    """No request is in progress when a restarted bot resumes a turn: the worker sets the
    turn's workspace itself."""
    await install(many, "T1")
    await install(many, "T2")
    hold = asyncio.Event()
    many.openai.model.push(Reply(text="the answer, resumed", hold=hold))
    status, event = await mention(many, "T2", "a long question", channel="C2")
    assert status == 200
    await many.slack.wait_for(lambda: len(many.openai.model.calls) == 1)
    await many.restart()
    hold.set()
    [answer] = await many.wait_answers("C2", event["ts"], 1)
    assert "the answer, resumed" in answer
    assert {m["bot_id"] for m in many.slack.bot_messages("C2")} == {"BBOTT2"}
    assert {c.team for c in many.slack.calls if _channel(c) == "C2"} == {"T2"}


async def test_a_quiz_in_the_second_workspace_is_clicked_through_with_its_token(
    many: Harness,
) -> None:
    await install(many, "T1")
    await install(many, "T2")
    slack = many.slack
    many.openai.model.push(Reply(function_calls=[quiz_call(MC_ONLY)]), Reply(text="Right: 4."))
    status, event = await mention(many, "T2", "quiz me", channel="C2")
    assert status == 200

    def quiz() -> dict[str, Any] | None:
        return next((m for m in slack.bot_messages("C2") if buttons(m)), None)

    shown = await slack.wait_for(quiz)

    async def click(starts: str, text: str | None = None) -> None:
        current = slack.find_message("C2", shown["ts"]) or shown
        element = button(current, starts=starts, text=text)
        payload = block_actions(
            action_id=element["action_id"],
            value=element["value"],
            message=current,
            channel="C2",
            team="T2",
            trigger_id=slack.new_trigger_id("U1"),
        )
        assert (await sender(many, "T2").post_interaction(payload)).status == 200

    await click("quiz_choice", "4")
    await slack.wait_for(lambda: "✓ 4" in dump(slack.find_message("C2", shown["ts"])))
    await click("quiz_submit")
    answers = await many.wait_answers("C2", event["ts"], 2)
    assert "Right: 4." in answers[-1]
    await many.settle()
    updates = [c for c in slack.calls_to("chat.update") if _channel(c) == "C2"]
    assert updates and {c.team for c in updates} == {"T2"}
    assert {c.team for c in slack.calls if _channel(c) == "C2"} == {"T2"}
