"""The fake's agent-app methods and payload builders, through the real slack_sdk / slack_bolt."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from slack_bolt.async_app import AsyncApp, AsyncAssistant
from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import ContextActionsBlock, FeedbackButtonsElement
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes import slack_payloads as p
from tests.fakes.slack_agent_methods import stop_session
from tests.fakes.slack_server import FakeSlack

SECRET = "signing-secret"
PROMPTS = [{"title": "Quiz me", "message": "Quiz me on fractions"}]


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as f:
        yield f


@pytest.fixture
def client(fake: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)


async def _error(coro: Any) -> dict[str, Any]:
    with pytest.raises(SlackApiError) as info:
        await coro
    return dict(info.value.response.data)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- suggested prompts


async def test_suggested_prompts_are_recorded(fake: FakeSlack, client: AsyncWebClient) -> None:
    await client.assistant_threads_setSuggestedPrompts(
        channel_id="DU1", prompts=PROMPTS * 4, title="Try one"
    )
    assert fake.suggested_prompts == [
        {
            "channel_id": "DU1",
            "thread_ts": None,
            "title": "Try one",
            "prompts": PROMPTS * 4,
            "shown": True,
        }
    ]
    # An agent app passing thread_ts: Slack says ok and shows nothing.
    await client.assistant_threads_setSuggestedPrompts(
        channel_id="DU1", thread_ts="1.000001", prompts=PROMPTS
    )
    assert fake.suggested_prompts[-1]["shown"] is False
    fake.app_surface = "assistant_view"  # the legacy container takes thread_ts
    await client.assistant_threads_setSuggestedPrompts(
        channel_id="D1", thread_ts="1.000001", prompts=PROMPTS
    )
    assert fake.suggested_prompts[-1]["shown"] is True


@pytest.mark.parametrize(
    ("prompts", "pointer"),
    [
        (PROMPTS * 5, "/prompts"),
        ([], "non-empty"),
        ([{"title": "x"}], "message"),
        ([{"title": " ", "message": "m"}], "title"),
        (["just a string"], "/prompts/0"),
    ],
)
async def test_suggested_prompts_rules(
    client: AsyncWebClient, prompts: list[Any], pointer: str
) -> None:
    error = await _error(
        client.assistant_threads_setSuggestedPrompts(channel_id="D1", prompts=prompts)
    )
    assert error["error"] == "invalid_arguments"
    assert pointer in error["response_metadata"]["messages"][0]


async def test_agent_methods_need_an_agent_app_with_scopes(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    fake.missing_scopes.add("assistant:write")
    error = await _error(
        client.assistant_threads_setSuggestedPrompts(channel_id="D1", prompts=PROMPTS)
    )
    assert error["error"] == "missing_scope" and error["needed"] == "assistant:write"
    error = await _error(
        client.assistant_threads_setTitle(channel_id="D1", thread_ts="1.1", title="t")
    )
    assert error["error"] == "missing_scope"

    fake.missing_scopes.clear()
    fake.app_surface = "none"
    for call in (
        client.assistant_threads_setSuggestedPrompts(channel_id="D1", prompts=PROMPTS),
        client.assistant_threads_setTitle(channel_id="D1", thread_ts="1.1", title="t"),
        client.agents_sessions_setStatus(channel_id="D1", thread_ts="1.1", status="processing"),
        client.agents_sessions_rename(channel_id="D1", thread_ts="1.1", title="t"),
    ):
        assert (await _error(call))["error"] == "not_agent_app"
    assert not fake.suggested_prompts and not fake.titles and not fake.sessions

    fake.app_surface = "agent_view"
    fake.unknown_channels.add("D404")
    error = await _error(
        client.assistant_threads_setSuggestedPrompts(channel_id="D404", prompts=PROMPTS)
    )
    assert error["error"] == "channel_not_found"


# --------------------------------------------------------------------------- titles, sessions


async def test_set_title_records_and_renames_the_session(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    await client.agents_sessions_setStatus(channel_id="DU1", thread_ts="1.1", status="processing")
    await client.assistant_threads_setTitle(channel_id="DU1", thread_ts="1.1", title="Fractions")
    assert fake.titles == [
        {
            "via": "assistant.threads.setTitle",
            "channel_id": "DU1",
            "thread_ts": "1.1",
            "title": "Fractions",
        }
    ]
    assert fake.sessions[("DU1", "1.1")]["title"] == "Fractions"  # bridged
    error = await _error(
        client.api_call("assistant.threads.setTitle", params={"channel_id": "D1", "title": "x"})
    )
    assert error["error"] == "invalid_arguments"


async def test_agent_session_lifecycle(fake: FakeSlack, client: AsyncWebClient) -> None:
    error = await _error(
        client.agents_sessions_rename(channel_id="DU1", thread_ts="1.1", title="t")
    )
    assert error["error"] == "session_not_found"

    created = await client.agents_sessions_setStatus(
        channel_id="DU1",
        thread_ts="1.1",
        status="processing",
        title="First title",
        initiator_user_id="U1",
    )
    assert created["status"] == "processing" and created["title"] == "First title"
    assert "warning" not in created.data  # type: ignore[operator]
    # title and initiator only count when the session is created
    again = await client.agents_sessions_setStatus(
        channel_id="DU1", thread_ts="1.1", status="active", title="ignored", initiator_user_id="U9"
    )
    assert again["title"] == "First title"
    renamed = await client.agents_sessions_rename(
        channel_id="DU1", thread_ts="1.1", title="Renamed"
    )
    assert renamed["title"] == "Renamed"
    session = fake.sessions[("DU1", "1.1")]
    assert session["statuses"] == ["processing", "active"] and session["status"] == "active"
    assert session["initiator_user_id"] == "U1" and session["title"] == "Renamed"
    assert fake.titles[-1]["via"] == "agents.sessions.rename"

    for call in (
        client.agents_sessions_setStatus(channel_id="DU1", thread_ts="1.1", status="thinking"),
        client.agents_sessions_setStatus(channel_id="DU1", status="active"),
        client.agents_sessions_rename(channel_id="DU1", thread_ts="1.1", title="x" * 201),
        client.api_call("agents.sessions.rename", json={"channel_id": "DU1", "thread_ts": "1.1"}),
    ):
        assert (await _error(call))["error"] == "invalid_arguments"
    fake.remove_bot("C2")
    error = await _error(
        client.agents_sessions_setStatus(channel_id="C2", thread_ts="1.1", status="active")
    )
    assert error["error"] == "not_in_channel"


async def test_processing_without_the_stop_event_warns(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    fake.stop_event_subscribed = False
    resp = await client.agents_sessions_setStatus(
        channel_id="DU1", thread_ts="1.1", status="processing"
    )
    assert resp["warning"] == "missing_agent_session_stopped_event_subscription"
    assert (
        "warning"
        not in (
            await client.agents_sessions_setStatus(
                channel_id="DU1", thread_ts="1.1", status="active"
            )
        ).data
    )  # type: ignore[operator]


async def test_stop_session_stops_the_threads_streams(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    question = fake.add_message(p.dm_message(text="long question"))
    assert question is not None
    stream = await client.chat_startStream(
        channel="DU1", thread_ts=question["ts"], markdown_text="Working"
    )
    other = await client.chat_startStream(channel="DU1", thread_ts="9.000001", markdown_text="x")

    event = stop_session(fake, channel="DU1", thread_ts=question["ts"], user="U1")
    assert event["type"] == "agent_session_stopped" and event["user"] == "U1"
    assert event["thread_ts"] == question["ts"]
    assert event["streaming_message_ts"] == [stream["ts"]]
    assert fake.stopped_streams == {("DU1", stream["ts"])}
    error = await _error(
        client.chat_appendStream(channel="DU1", ts=stream["ts"], markdown_text="!")
    )
    assert error["error"] == "stopped_by_user"
    await client.chat_appendStream(channel="DU1", ts=other["ts"], markdown_text="y")  # untouched
    assert stop_session(fake, channel="DU1", thread_ts=question["ts"])["streaming_message_ts"] == []


# --------------------------------------------------------------------------- Home tab, blocks


def _home(blocks: int = 1) -> dict[str, Any]:
    section = {"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}
    return {"type": "home", "blocks": [section] * blocks}


async def test_views_publish_home_per_user(fake: FakeSlack, client: AsyncWebClient) -> None:
    first = await client.views_publish(user_id="U1", view=_home())
    await client.views_publish(user_id="U2", view=_home(2))
    second = await client.views_publish(user_id="U1", view=_home(3), hash=first["view"]["hash"])
    assert second["view"]["id"] == first["view"]["id"]  # a user's Home is one view
    assert len(fake.home_views["U1"]["blocks"]) == 3 and len(fake.home_views["U2"]["blocks"]) == 2
    assert [v["user"] for v in fake.views] == ["U1", "U2", "U1"]

    error = await _error(client.views_publish(user_id="U1", view=_home(), hash="stale"))
    assert error["error"] == "hash_conflict"
    modal = {**_home(), "type": "modal", "title": {"type": "plain_text", "text": "x"}}
    for view in (modal, _home(101)):
        error = await _error(client.views_publish(user_id="U1", view=view))
        assert error["error"] == "invalid_arguments"
    assert len(fake.home_views["U1"]["blocks"]) == 3


def _feedback_block(**button: Any) -> dict[str, Any]:
    positive = {"text": {"type": "plain_text", "text": "👍"}, "value": "up:1", **button}
    return {
        "type": "context_actions",
        "elements": [
            {
                "type": "feedback_buttons",
                "action_id": "fb",
                "positive_button": positive,
                "negative_button": {
                    "text": {"type": "plain_text", "text": "👎"},
                    "value": "down:1",
                },
            }
        ],
    }


async def test_feedback_blocks_are_checked(client: AsyncWebClient) -> None:
    sdk_block = ContextActionsBlock(
        elements=[
            FeedbackButtonsElement(
                action_id="fb",
                positive_button={"text": "👍", "value": "up:1"},
                negative_button={"text": "👎", "value": "down:1"},
            )
        ]
    )
    await client.chat_postMessage(channel="C1", text="answer", blocks=[sdk_block])
    await client.chat_postMessage(channel="C1", text="answer", blocks=[_feedback_block()])

    too_many = {**_feedback_block(), "elements": _feedback_block()["elements"] * 6}
    wrong_kind = {**_feedback_block(), "elements": [{"type": "button", "action_id": "b"}]}
    for block in (
        _feedback_block(text={"type": "plain_text", "text": "x" * 76}),
        _feedback_block(text={"type": "mrkdwn", "text": "*up*"}),
        _feedback_block(value=""),
        _feedback_block(value="v" * 2001),
        too_many,
        wrong_kind,
        {"type": "context_actions", "elements": []},
    ):
        error = await _error(client.chat_postMessage(channel="C1", text="t", blocks=[block]))
        assert error["error"] == "invalid_blocks", block


# --------------------------------------------------------------------------- payloads via Bolt


async def test_agent_payloads_through_bolt(fake: FakeSlack) -> None:
    """Every new builder is delivered signed and parsed by Bolt as Slack's own payloads are."""
    app = AsyncApp(
        client=AsyncWebClient(token=fake.bot_token, base_url=fake.api_url),
        signing_secret=SECRET,
    )
    seen: dict[str, Any] = {}

    @app.event("app_home_opened")
    async def home_opened(
        event: dict[str, Any], context: Any, set_suggested_prompts: Any = None
    ) -> None:
        seen[f"home_opened:{event['tab']}"] = (context.user_id, context.channel_id)
        if event["tab"] == "messages":
            await set_suggested_prompts(prompts=["Quiz me on fractions"])
        else:
            await context.client.views_publish(user_id=event["user"], view=_home())

    @app.event("app_context_changed")
    async def context_changed(event: dict[str, Any], context: Any) -> None:
        seen["context"] = (context.user_id, context.channel_id, event["context"])

    @app.event("agent_session_stopped")
    async def stopped(event: dict[str, Any], context: Any) -> None:
        seen["stopped"] = (context.user_id, context.channel_id, context.thread_ts)

    @app.event("message")
    async def dm(event: dict[str, Any], context: Any) -> None:
        seen["dm"] = (event["channel_type"], event.get("thread_ts"), context.channel_id)

    assistant = AsyncAssistant()

    @assistant.thread_started
    async def started(set_suggested_prompts: Any, payload: dict[str, Any]) -> None:
        seen["legacy_started"] = payload["assistant_thread"]["context"]["channel_id"]
        await set_suggested_prompts(prompts=["Solve 3x + 11 = 14 step by step"])

    @assistant.thread_context_changed
    async def legacy_context(payload: dict[str, Any]) -> None:
        seen["legacy_context"] = payload["assistant_thread"]["context"]["channel_id"]

    app.use(assistant)

    @app.action("fb")
    async def feedback(ack: Any, action: dict[str, Any], body: dict[str, Any]) -> None:
        await ack()
        seen["feedback"] = (action["type"], action["value"], body["container"]["message_ts"])

    runner = web.AppRunner(app.web_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    sender = p.SlackSender(f"http://{host}:{port}/slack/events", SECRET, on_event=fake.add_message)
    try:
        for event in (
            p.app_home_opened(user="U1", tab="messages", context_channel="C7"),
            p.app_home_opened(user="U1", tab="home"),
            p.app_context_changed(user="U1", context_channel="C7"),
            p.agent_session_stopped(user="U1", thread_ts="1.000001"),
            p.dm_message(text="What is 2+2?", user="U1"),
            p.assistant_thread_started(channel="D1", thread_ts="2.000001", context_channel="C7"),
            p.assistant_thread_context_changed(thread_ts="2.000001", context_channel="C8"),
        ):
            assert (await sender.post_event(event)).status == 200
        await fake.wait_for(lambda: len(fake.suggested_prompts) == 2 and fake.home_views)
        await fake.wait_for(lambda: {"context", "stopped", "dm", "legacy_context"} <= seen.keys())
        assert seen["home_opened:messages"] == ("U1", "DU1")
        assert seen["home_opened:home"] == ("U1", "DU1")
        assert seen["context"] == ("U1", "DU1", p.app_context("C7"))
        assert seen["stopped"] == ("U1", "DU1", "1.000001")
        assert seen["dm"] == ("im", None, "DU1")
        assert (seen["legacy_started"], seen["legacy_context"]) == ("C7", "C8")
        messages_tab, legacy = fake.suggested_prompts
        assert (messages_tab["channel_id"], messages_tab["thread_ts"]) == ("DU1", None)
        assert messages_tab["shown"] is True
        assert (legacy["channel_id"], legacy["thread_ts"]) == ("D1", "2.000001")

        answer = await AsyncWebClient(token=fake.bot_token, base_url=fake.api_url).chat_postMessage(
            channel="DU1", thread_ts="1.000001", text="4", blocks=[_feedback_block()]
        )
        stored = fake.find_message("DU1", answer["ts"])
        assert stored is not None
        click = p.feedback_click(message=stored, positive=False, user="U1", channel="DU1")
        assert click["actions"][0]["text"] == {"type": "plain_text", "text": "👎"}
        assert click["container"]["thread_ts"] == "1.000001"
        assert (await sender.post_interaction(click)).status == 200
        assert seen["feedback"] == ("feedback_buttons", "down:1", answer["ts"])
    finally:
        await runner.cleanup()
