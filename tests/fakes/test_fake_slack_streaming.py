"""The fake Slack's streaming, status, metadata, rate limits and outages, via slack_sdk."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.models.messages.chunk import MarkdownTextChunk, TaskUpdateChunk
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes import slack_payloads as p
from tests.fakes.slack_limits import RateLimit
from tests.fakes.slack_server import FakeSlack, message_text

RECIPIENTS = {"recipient_user_id": "U1", "recipient_team_id": "T1"}
FEEDBACK = [
    {
        "type": "context_actions",
        "elements": [
            {
                "type": "feedback_buttons",
                "action_id": "feedback",
                "positive_button": {"text": {"type": "plain_text", "text": "👍"}, "value": "up"},
                "negative_button": {"text": {"type": "plain_text", "text": "👎"}, "value": "down"},
            }
        ],
    }
]


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as f:
        yield f


@pytest.fixture
def client(fake: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)


async def _error(coro: Any) -> str:
    with pytest.raises(SlackApiError) as info:
        await coro
    return str(info.value.response["error"])


async def _start(client: AsyncWebClient, thread_ts: str, **kw: Any) -> str:
    resp = await client.chat_startStream(channel="C1", thread_ts=thread_ts, **RECIPIENTS, **kw)
    return str(resp["ts"])


# --------------------------------------------------------------------------- streams


async def test_markdown_stream_reads_once_and_keeps_blocks_and_metadata(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    parent = fake.add_message(p.app_mention(text="explain"))
    assert parent is not None
    ts = await _start(client, parent["ts"], markdown_text="**Photo")
    await client.chat_appendStream(channel="C1", ts=ts, markdown_text="synthesis** is")
    metadata = {"event_type": "tutor_answer", "event_payload": {"turn": 7}}
    await client.chat_stopStream(
        channel="C1", ts=ts, markdown_text=" how plants eat.", blocks=FEEDBACK, metadata=metadata
    )
    [answer] = fake.bot_messages("C1", parent["ts"])[-1:]
    assert answer["ts"] == ts and answer["thread_ts"] == parent["ts"]
    assert message_text(answer).startswith("**Photosynthesis** is how plants eat.")
    assert message_text(answer).count("Photosynthesis") == 1
    assert answer["blocks"] == FEEDBACK
    state = fake.stream_state("C1", ts)
    assert state is not None and state.mode == "markdown_text" and state.state == "stopped"

    replies = await client.conversations_replies(channel="C1", ts=parent["ts"])
    assert "metadata" not in replies["messages"][-1]
    replies = await client.conversations_replies(
        channel="C1", ts=parent["ts"], include_all_metadata=True
    )
    assert replies["messages"][-1]["metadata"] == metadata

    assert (
        await _error(client.chat_appendStream(channel="C1", ts=ts, markdown_text="x"))
        == "message_not_in_streaming_state"
    )
    assert (
        await _error(client.chat_stopStream(channel="C1", ts=ts))
        == "message_not_in_streaming_state"
    )


async def test_start_requires_thread_and_recipients_outside_dms(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    no_thread = client.api_call("chat.startStream", json={"channel": "C1", **RECIPIENTS})
    assert await _error(no_thread) == "invalid_thread_ts"
    assert (
        await _error(client.chat_startStream(channel="C1", thread_ts="1.1", recipient_team_id="T1"))
        == "missing_recipient_user_id"
    )
    assert (
        await _error(client.chat_startStream(channel="C1", thread_ts="1.1", recipient_user_id="U1"))
        == "missing_recipient_team_id"
    )
    dm = await client.chat_startStream(channel="D1", thread_ts="1.1", markdown_text="hi")
    assert dm["ok"] and fake.is_streaming("D1", dm["ts"])
    err = await _error(
        client.chat_startStream(
            channel="C1", thread_ts="1.1", task_display_mode="grid", **RECIPIENTS
        )
    )
    assert err == "invalid_arguments"
    fake.refuse_streaming("C9")
    err = await _error(client.chat_startStream(channel="C9", thread_ts="1.1", **RECIPIENTS))
    assert err == "channel_type_not_supported"
    assert not [m for m in fake.messages["C1"] if m.get("bot_id")]  # nothing was posted


async def test_content_rules_per_call_and_per_stream(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    both = client.chat_startStream(
        channel="C1",
        thread_ts="1.1",
        markdown_text="a",
        chunks=[MarkdownTextChunk(text="b")],
        **RECIPIENTS,
    )
    assert await _error(both) == "invalid_arguments"
    too_long = client.chat_startStream(
        channel="C1", thread_ts="1.1", markdown_text="x" * 12_001, **RECIPIENTS
    )
    assert await _error(too_long) == "msg_too_long"

    ts = await _start(client, "1.1", markdown_text="x" * 12_000)  # the limit is inclusive
    chunks = [MarkdownTextChunk(text="y" * 6_000), MarkdownTextChunk(text="y" * 6_001)]
    err = await _error(client.chat_appendStream(channel="C1", ts=ts, chunks=chunks))
    assert err == "msg_too_long"  # the per-call limit counts every markdown chunk
    err = await _error(client.chat_appendStream(channel="C1", ts=ts, markdown_text="y" * 12_001))
    assert err == "msg_too_long"
    err = await _error(
        client.chat_appendStream(channel="C1", ts=ts, chunks=[MarkdownTextChunk(text="y")])
    )
    assert err == "streaming_mode_mismatch"
    assert await _error(client.chat_appendStream(channel="C1", ts=ts)) == "no_text"
    blocks_early = client.api_call(
        "chat.appendStream", json={"channel": "C1", "ts": ts, "blocks": FEEDBACK}
    )
    assert await _error(blocks_early) == "invalid_arguments"

    # A bare start takes the mode of its first content: here chunks, then markdown is refused.
    bare = await _start(client, "1.1")
    await client.chat_appendStream(channel="C1", ts=bare, chunks=[MarkdownTextChunk(text="a")])
    err = await _error(client.chat_stopStream(channel="C1", ts=bare, markdown_text="b"))
    assert err == "streaming_mode_mismatch"
    for bad in (
        [{"type": "poem", "text": "x"}],
        [{"type": "task_update", "id": "t1", "title": "Run", "status": "done"}],
        [{"type": "task_update", "id": "t1", "title": "R" * 257, "status": "pending"}],
        [{"type": "blocks", "blocks": FEEDBACK}],  # blocks only when stopping
    ):
        err = await _error(client.chat_appendStream(channel="C1", ts=bare, chunks=bad))
        assert err == "invalid_arguments", bad
    bad_blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]
    err = await _error(
        client.chat_stopStream(
            channel="C1", ts=bare, chunks=[{"type": "blocks", "blocks": bad_blocks}]
        )
    )
    assert err == "invalid_blocks"
    await client.chat_stopStream(channel="C1", ts=bare, chunks=[MarkdownTextChunk(text="b")])
    assert fake.find_message("C1", bare)["markdown_text"] == "ab"  # type: ignore[index]

    # Past max_stream_chars in total, an append is refused (roll over to a new message).
    fake.max_stream_chars = 12_010
    err = await _error(client.chat_appendStream(channel="C1", ts=ts, markdown_text="z" * 11))
    assert err == "msg_too_long"
    await client.chat_appendStream(channel="C1", ts=ts, markdown_text="z" * 10)


async def test_task_timeline_through_the_sdk_chat_stream(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    stream = await client.chat_stream(
        channel="C1", thread_ts="1.1", buffer_size=1, task_display_mode="timeline", **RECIPIENTS
    )
    await stream.append(
        chunks=[TaskUpdateChunk(id="code1", title="Writing code", status="in_progress")]
    )
    await stream.append(markdown_text="The mean is ")
    await stream.append(
        chunks=[
            TaskUpdateChunk(id="code1", title="Running code", status="complete", output="3.5"),
            TaskUpdateChunk(id="file1", title="Reading your file", status="error"),
        ]
    )
    await stream.append(markdown_text="3.5.")
    await stream.stop(blocks=FEEDBACK)  # the SDK sends chunks=[] with the blocks
    ts = stream.ts
    assert ts is not None
    assert fake.tasks("C1", ts) == {
        "code1": {"id": "code1", "title": "Running code", "status": "complete", "output": "3.5"},
        "file1": {"id": "file1", "title": "Reading your file", "status": "error"},
    }
    assert [(u["id"], u["status"]) for u in fake.task_updates("C1", ts)] == [
        ("code1", "in_progress"),
        ("code1", "complete"),
        ("file1", "error"),
    ]
    [answer] = fake.thread("C1", "1.1")
    assert message_text(answer).startswith("The mean is 3.5.")
    assert "Running code" not in message_text(answer)  # tasks are a timeline, not the text
    assert answer["blocks"] == FEEDBACK


async def test_live_stream_lifetime_update_conflict_and_user_stop(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    ts = await _start(client, "1.1", markdown_text="Working")
    err = await _error(client.chat_update(channel="C1", ts=ts, markdown_text="Done"))
    assert err == "streaming_state_conflict"
    fake.clock.advance(200)
    await client.chat_appendStream(channel="C1", ts=ts, markdown_text=" on it")
    fake.clock.advance(100)  # 300 s after the start: appends did not extend it
    err = await _error(client.chat_appendStream(channel="C1", ts=ts, markdown_text="!"))
    assert err == "message_not_in_streaming_state"
    err = await _error(client.chat_stopStream(channel="C1", ts=ts))
    assert err == "message_not_in_streaming_state"
    await client.chat_update(channel="C1", ts=ts, markdown_text="Working on it, finished.")
    assert message_text(fake.find_message("C1", ts) or {}) == "Working on it, finished."

    stopped = await _start(client, "1.1", markdown_text="Long answer")
    fake.stop_stream_by_user("C1", stopped)
    err = await _error(client.chat_appendStream(channel="C1", ts=stopped, markdown_text="…"))
    assert err == "stopped_by_user"
    assert await _error(client.chat_stopStream(channel="C1", ts=stopped)) == "stopped_by_user"
    await client.chat_update(channel="C1", ts=stopped, markdown_text="Long answer (stopped)")

    closed = await _start(client, "1.1", markdown_text="x")
    fake.close_stream("C1", closed)
    err = await _error(client.chat_appendStream(channel="C1", ts=closed, markdown_text="y"))
    assert err == "message_not_in_streaming_state"


async def test_chat_update_limits_and_markdown(fake: FakeSlack, client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel="C1", text="draft")
    ts = str(posted["ts"])
    err = await _error(client.chat_update(channel="C1", ts=ts, text="x" * 4_001))
    assert err == "msg_too_long"
    err = await _error(client.chat_update(channel="C1", ts=ts, markdown_text="x" * 12_001))
    assert err == "msg_too_long"
    await client.chat_update(channel="C1", ts=ts, markdown_text="# Title\n**bold**")
    assert message_text(fake.find_message("C1", ts) or {}) == "# Title\n**bold**"
    await client.chat_update(channel="C1", ts=ts, text="plain again")
    assert message_text(fake.find_message("C1", ts) or {}) == "plain again"


# --------------------------------------------------------------------------- status, metadata


async def test_status_is_cleared_by_reply_empty_status_or_two_minutes(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    err = await _error(client.api_call("assistant.threads.setStatus", json={"channel_id": "C1"}))
    assert err == "invalid_arguments"
    err = await _error(
        client.assistant_threads_setStatus(
            channel_id="C1", thread_ts="1.1", status="x", loading_messages=["m"] * 11
        )
    )
    assert err == "invalid_arguments"

    await client.assistant_threads_setStatus(
        channel_id="C1", thread_ts="1.1", status="is thinking…", loading_messages=["Reading"]
    )
    await client.assistant_threads_setStatus(channel_id="C1", thread_ts="2.2", status="busy")
    assert fake.status_of("C1", "1.1") == "is thinking…"
    await client.chat_postMessage(channel="C1", text="unrelated")  # not a reply in 1.1
    assert fake.status_of("C1", "1.1") == "is thinking…"
    await client.chat_postMessage(channel="C1", thread_ts="1.1", text="answer")
    assert fake.status_of("C1", "1.1") is None
    assert fake.status_of("C1", "2.2") == "busy"

    await _start(client, "2.2", markdown_text="streamed answer")  # a stream is a reply too
    assert fake.status_of("C1", "2.2") is None

    await client.assistant_threads_setStatus(channel_id="C1", thread_ts="3.3", status="working")
    await client.assistant_threads_setStatus(channel_id="C1", thread_ts="3.3", status="")
    assert fake.status_of("C1", "3.3") is None

    await client.assistant_threads_setStatus(channel_id="C1", thread_ts="4.4", status="long")
    fake.clock.advance(119)
    assert fake.status_of("C1", "4.4") == "long"
    fake.clock.advance(1)
    assert fake.status_of("C1", "4.4") is None
    assert [s["status"] for s in fake.statuses] == ["is thinking…", "busy", "working", "", "long"]


async def test_message_metadata(fake: FakeSlack, client: AsyncWebClient) -> None:
    meta = {"event_type": "tutor_turn", "event_payload": {"turn": 1}}
    posted = await client.chat_postMessage(channel="C1", text="hi", metadata=meta)
    assert posted["message"]["metadata"] == meta
    history = await client.conversations_history(channel="C1")
    assert "metadata" not in history["messages"][0]
    newer = {"event_type": "tutor_turn", "event_payload": {"turn": 2}}
    await client.chat_update(channel="C1", ts=posted["ts"], text="hi!", metadata=newer)
    history = await client.conversations_history(channel="C1", include_all_metadata=True)
    assert history["messages"][0]["metadata"] == newer
    bad = client.api_call(
        "chat.postMessage", json={"channel": "C1", "text": "x", "metadata": {"event_type": "t"}}
    )
    assert await _error(bad) == "invalid_metadata_format"


# --------------------------------------------------------------------------- rate limits


async def test_tier_limits_answer_429_with_retry_after(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    for _ in range(25):  # off by default
        await client.chat_postMessage(channel="C1", text="free")
    fake.enforce_rate_limits()
    for _ in range(20):  # Tier 2: a minute's worth (20) may come at once
        await _start(client, "1.1")
    with pytest.raises(SlackApiError) as info:
        await _start(client, "1.1")
    assert info.value.response.status_code == 429
    assert info.value.response["error"] == "ratelimited"
    assert info.value.response.headers["Retry-After"] == "3"  # 60 s / 20
    fake.clock.advance(3)
    await _start(client, "1.1")

    # chat.postMessage: about one a second per channel, with a short burst.
    for _ in range(5):
        await client.chat_postMessage(channel="C2", text="burst")
    with pytest.raises(SlackApiError) as info:
        await client.chat_postMessage(channel="C2", text="one too many")
    assert info.value.response.headers["Retry-After"] == "1"
    await client.chat_postMessage(channel="C3", text="another channel has its own budget")
    fake.clock.advance(1)
    await client.chat_postMessage(channel="C2", text="after a second")

    # Tests can make a limit tight.
    fake.enforce_rate_limits({"chat.appendStream": RateLimit(6, burst=1)})
    ts = await _start(client, "1.1")
    await client.chat_appendStream(channel="C1", ts=ts, markdown_text="a")
    with pytest.raises(SlackApiError) as info:
        await client.chat_appendStream(channel="C1", ts=ts, markdown_text="b")
    assert info.value.response.headers["Retry-After"] == "10"
    assert fake.find_message("C1", ts)["markdown_text"] == "a"  # type: ignore[index]
    limited = [c for c in fake.calls if c.status == 429]
    assert [c.method for c in limited] == [
        "chat.startStream",
        "chat.postMessage",
        "chat.appendStream",
    ]
    fake.disable_rate_limits()
    await client.chat_appendStream(channel="C1", ts=ts, markdown_text="b")


# --------------------------------------------------------------------------- outage


async def test_offline_refuses_connections_and_keeps_state(fake: FakeSlack) -> None:
    # No retry handlers: each failure shows at once (the default retries once, after a wait).
    session = aiohttp.ClientSession()  # keeps its connection alive between calls
    kept = AsyncWebClient(
        token=fake.bot_token, base_url=fake.api_url, session=session, retry_handlers=[]
    )
    fresh = AsyncWebClient(token=fake.bot_token, base_url=fake.api_url, retry_handlers=[])
    try:
        posted = await kept.chat_postMessage(channel="C1", text="before")
        url = fake.api_url
        await fake.go_offline()
        with pytest.raises(aiohttp.ServerDisconnectedError):  # a kept-alive connection is cut
            await kept.chat_postMessage(channel="C1", text="lost")
        with pytest.raises(aiohttp.ClientConnectorError):  # a new one is refused
            await fresh.auth_test()
        await fake.go_online()
        assert fake.api_url == url
        await fresh.chat_postMessage(channel="C1", text="after")
    finally:
        await session.close()
    assert [m["text"] for m in fake.bot_messages("C1")] == ["before", "after"]
    assert fake.find_message("C1", posted["ts"]) is not None
