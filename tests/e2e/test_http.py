"""The HTTP surface as Slack sees it: signatures, acks, odd payloads, the slash command."""

from __future__ import annotations

import json
import time

import aiohttp
import pytest
from slack_bolt.middleware import RequestVerification

from tests.e2e.conftest import Harness
from tests.fakes.openai_model import Reply
from tests.fakes.slack_payloads import event_callback, message, message_changed, next_ts


@pytest.fixture(params=["responses", "chat"])
def runtime(request: pytest.FixtureRequest) -> str:
    """The HTTP surface does not depend on the model protocol: the default runtime, and the
    one that answers from the bot's own store."""
    return str(request.param)


def _event_body(text: str = "<@UBOT> hi") -> bytes:
    return json.dumps(event_callback(message(text=text, ts=next_ts()))).encode()


async def test_bad_signature_is_401(harness: Harness) -> None:
    assert harness.sender is not None
    result = await harness.sender.post_raw(
        _event_body(), content_type="application/json", signature="v0=deadbeef"
    )
    assert result.status == 401


async def test_missing_signature_headers_are_401(harness: Harness) -> None:
    assert harness.sender is not None
    result = await harness.sender.post_raw(
        _event_body(), content_type="application/json", signature=None
    )
    assert result.status == 401


async def test_stale_timestamp_is_401(harness: Harness) -> None:
    assert harness.sender is not None
    result = await harness.sender.post_raw(
        _event_body(), content_type="application/json", timestamp=int(time.time()) - 6 * 60
    )
    assert result.status == 401
    await harness.settle()
    assert harness.openai.model.calls == []


@pytest.mark.parametrize("timestamp", ["abc", "", "1e309", "9" * 5000, "-5", "١٧٠٠٠٠٠٠٠٠"])
@pytest.mark.parametrize("signature", [None, "v0=deadbeef"])
async def test_odd_timestamps_are_401_not_500(
    harness: Harness, timestamp: str, signature: str | None
) -> None:
    assert harness.sender is not None
    result = await harness.sender.post_raw(
        _event_body(),
        content_type="application/json",
        signature=signature,
        headers={"X-Slack-Request-Timestamp": timestamp},
    )
    assert result.status == 401, result.body


async def test_no_timestamp_and_a_non_ascii_signature_are_401(harness: Harness) -> None:
    url = f"{harness.url}/slack/events"
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=_event_body(), headers={}) as resp:
            assert resp.status == 401
        headers = {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=é"}
        async with session.post(url, data=_event_body(), headers=headers) as resp:
            assert resp.status == 401


async def test_the_signature_is_checked_once_before_bolt(harness: Harness) -> None:
    assert harness.bot is not None
    middleware = harness.bot.bolt._async_middleware_list
    assert not any(isinstance(m, RequestVerification) for m in middleware)
    # …and signed requests still get through, unsigned ones still do not.
    event = await harness.mention("hello")
    await harness.wait_answers("C1", event["ts"], 1)


async def test_url_verification_echoes_the_challenge(harness: Harness) -> None:
    assert harness.sender is not None
    result = await harness.sender.url_verification("abc123")
    assert result.status == 200
    assert "abc123" in result.body


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"payload=%7Bnot-json", "application/x-www-form-urlencoded"),
        (b"\xff\xfe\x00garbage", "application/octet-stream"),
        (json.dumps({"type": "event_callback"}).encode(), "application/json"),
        (json.dumps({"type": "mystery_payload", "x": 1}).encode(), "application/json"),
    ],
)
async def test_malformed_signed_bodies_are_4xx_or_ignored(
    harness: Harness, body: bytes, content_type: str
) -> None:
    assert harness.sender is not None
    result = await harness.sender.post_raw(body, content_type=content_type)
    assert result.status < 500, result.body
    # The process keeps serving.
    event = await harness.mention("still alive?")
    await harness.wait_answers("C1", event["ts"], 1)


@pytest.mark.parametrize(
    "event",
    [
        {
            "type": "reaction_added",
            "user": "U1",
            "reaction": "tada",
            "item": {"type": "message", "channel": "C1", "ts": "1.1"},
            "event_ts": "1.2",
        },
        {"type": "channel_created", "channel": {"id": "C9", "name": "new"}},
        {"type": "app_home_opened", "user": "U1", "channel": "D1", "tab": "messages"},
        {"type": "member_joined_channel", "user": "U2", "channel": "C1"},
    ],
)
async def test_other_event_types_get_2xx_and_nothing_happens(harness: Harness, event) -> None:
    assert harness.sender is not None
    result = await harness.sender.post_event(event)
    assert 200 <= result.status < 300
    await harness.settle()
    assert harness.openai.model.calls == []


async def test_edits_deletions_joins_and_bots_are_ignored(harness: Harness) -> None:
    assert harness.sender is not None
    parent = await harness.mention("start a thread")
    await harness.wait_answers("C1", parent["ts"], 1)
    calls = len(harness.openai.model.calls)
    events = [
        message_changed(
            channel="C1",
            message={"type": "message", "user": "U1", "text": "<@UBOT> edited", "ts": parent["ts"]},
            previous={"type": "message", "user": "U1", "text": "<@UBOT> start", "ts": parent["ts"]},
        ),
        message(text="joined", subtype="channel_join", thread_ts=parent["ts"]),
        message(text="deleted", subtype="message_deleted", thread_ts=parent["ts"]),
        message(
            text="another bot",
            user=None,
            bot_id="B999",
            subtype="bot_message",
            thread_ts=parent["ts"],
        ),
        message(text="me", user="UBOT", bot_id="BBOT", thread_ts=parent["ts"]),
    ]
    for event in events:
        result = await harness.sender.post_event(event)
        assert result.status == 200
    await harness.settle()
    assert len(harness.openai.model.calls) == calls


async def test_events_are_acked_fast_even_when_the_model_is_slow(harness: Harness) -> None:
    assert harness.sender is not None
    harness.openai.model.push(Reply(text="slow", latency=2))
    harness.openai.hang_next("/", 2)
    result = await harness.sender.post_event(message(text="<@UBOT> hi", ts=next_ts()))
    assert result.status == 200
    assert result.elapsed < 1.0


async def test_slash_command_posts_the_question_and_answers_in_its_thread(harness: Harness) -> None:
    assert harness.sender is not None
    harness.openai.model.push(Reply(text="It is 4."))
    result = await harness.sender.post_command(
        "what is 2+2?", response_url=harness.slack.response_url()
    )
    assert result.status == 200
    assert result.elapsed < 3.0
    question = await harness.slack.wait_for(
        lambda: [m for m in harness.slack.bot_messages("C1") if "asked" in (m.get("text") or "")]
    )
    [answer] = await harness.wait_answers("C1", question[0]["ts"], 1)
    assert "It is 4." in answer
    assert "what is 2+2?" in question[0]["text"]


async def test_a_replayed_slash_command_is_answered_once(harness: Harness) -> None:
    """Slack may deliver a command again (a slow ack, a proxy retry): same ``trigger_id``."""
    assert harness.sender is not None
    harness.openai.model.push(Reply(text="It is 9.", latency=0.5))
    trigger = harness.slack.new_trigger_id("U1")
    url = harness.slack.response_url()
    for _ in range(2):
        result = await harness.sender.post_command(
            "what is 3*3?", trigger_id=trigger, response_url=url
        )
        assert result.status == 200
    question = await harness.slack.wait_for(
        lambda: [m for m in harness.slack.bot_messages("C1") if "asked" in (m.get("text") or "")]
    )
    [answer] = await harness.wait_answers("C1", question[0]["ts"], 1)
    assert "It is 9." in answer
    await harness.settle()
    assert (
        len([m for m in harness.slack.bot_messages("C1") if "asked" in (m.get("text") or "")]) == 1
    )
    assert len(harness.openai.model.calls) == 1


async def test_slash_command_help_is_ephemeral(harness: Harness) -> None:
    assert harness.sender is not None
    result = await harness.sender.post_command("help")
    assert result.status == 200
    body = result.json()
    assert body["response_type"] == "ephemeral"
    assert "/tutor quiz" in body["text"]
    assert harness.slack.bot_messages("C1") == []


async def test_slash_command_where_the_bot_is_not_a_member(harness: Harness) -> None:
    assert harness.sender is not None
    harness.slack.remove_bot("C7")
    url = harness.slack.response_url()
    result = await harness.sender.post_command("hello?", channel_id="C7", response_url=url)
    assert result.status == 200
    note = await harness.slack.wait_for(lambda: harness.slack.ephemerals)
    assert "invite" in json.dumps(note).lower()
    assert harness.openai.model.calls == []


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe\x00", b"payload=%7B"])
async def test_unsigned_garbage_is_401_before_anything_reads_it(harness: Harness, body) -> None:
    assert harness.sender is not None
    result = await harness.sender.post_raw(
        body, content_type="application/json", signature="v0=0000"
    )
    assert result.status == 401


async def test_random_signed_bodies_never_5xx(harness: Harness) -> None:
    import random

    assert harness.sender is not None
    rng = random.Random(7)
    shapes = [
        lambda: bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))),
        lambda: json.dumps(
            {
                "type": rng.choice(["event_callback", "block_actions", "x"]),
                "event": rng.choice([None, {}, {"type": "message"}, []]),
            }
        ).encode(),
        lambda: b"payload=" + json.dumps({"type": "view_submission", "view": None}).encode(),
        lambda: b"payload=" + json.dumps({"type": "block_actions", "actions": [{}]}).encode(),
    ]
    for _ in range(40):
        body = rng.choice(shapes)()
        ct = rng.choice(["application/json", "application/x-www-form-urlencoded"])
        result = await harness.sender.post_raw(body, content_type=ct)
        assert result.status < 500, (body, result.body)
