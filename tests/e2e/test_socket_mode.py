"""Socket Mode end to end: the real bot connects to a fake Slack WebSocket, envelopes in,
acks out, answers through the Web API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Harness
from tests.fakes.openai_model import Reply
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_payloads import app_mention, event_callback, next_ts, slash_command
from tests.fakes.slack_server import FakeSlack


@pytest.fixture
async def socket_harness(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, tmp_path: Path, runtime: str
) -> AsyncIterator[Harness]:
    h = Harness(
        fake_slack,
        fake_openai,
        tmp_path / "bot.db",
        runtime,
        SLACK_APP_TOKEN=fake_slack.app_token,
    )
    del h.env["SLACK_SIGNING_SECRET"]  # Socket Mode needs no signing secret
    from bot.app import TutorBot
    from bot.config import load_settings

    h.bot = TutorBot(load_settings(h.env))
    await h.bot.start(port=None)
    yield h
    await h.stop()
    assert fake_openai.violations == []


async def test_mention_over_socket_mode(socket_harness: Harness) -> None:
    slack = socket_harness.slack
    socket_harness.openai.model.push(Reply(text="Hello over the socket"))
    await slack.socket.wait_connected()
    event = app_mention(text="<@UBOT> hi", ts=next_ts())
    envelope_id = await slack.socket.send("events_api", event_callback(event))
    ack = await slack.socket.wait_ack(envelope_id)
    assert ack["envelope_id"] == envelope_id
    [answer] = await socket_harness.wait_answers("C1", event["ts"], 1)
    assert "Hello over the socket" in answer


async def test_slash_command_help_over_socket_mode(socket_harness: Harness) -> None:
    slack = socket_harness.slack
    envelope_id = await slack.socket.send("slash_commands", slash_command("help"))
    ack = await slack.socket.wait_ack(envelope_id)
    assert "/tutor quiz" in ack["payload"]["text"]


async def test_reconnects_when_slack_refreshes_the_connection(socket_harness: Harness) -> None:
    slack = socket_harness.slack
    await slack.socket.wait_connected()
    await slack.socket.send_disconnect("refresh_requested")
    await slack.socket.wait_connected(total=2, timeout=20)
    event = app_mention(text="<@UBOT> still there?", ts=next_ts())
    envelope_id = await slack.socket.send("events_api", event_callback(event))
    await slack.socket.wait_ack(envelope_id)
    await socket_harness.wait_answers("C1", event["ts"], 1)


async def test_socket_mode_serves_only_healthz_over_http(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    import aiohttp

    from bot.app import TutorBot
    from bot.config import load_settings

    h = Harness(
        fake_slack,
        fake_openai,
        tmp_path / "bot.db",
        "responses",
        SLACK_APP_TOKEN=fake_slack.app_token,
        PORT="3000",
    )
    del h.env["SLACK_SIGNING_SECRET"]
    h.bot = TutorBot(load_settings(h.env))
    await h.bot.start(port=0)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{h.url}/healthz") as resp:
                assert (await resp.json())["mode"] == "socket"
            async with session.post(f"{h.url}/slack/events", data=b"{}") as resp:
                assert resp.status in (404, 405)
    finally:
        await h.stop()
