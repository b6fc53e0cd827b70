"""Two ``python -m bot`` processes on one machine share one SQLite file.

They start together (one migrates, the other waits for the write lock and finds nothing to
do), take turns on one Slack thread through the lease, and never fail with "database is
locked": every write waits on the busy timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.bot_process import BotProcess
from tests.e2e.conftest import PLACEHOLDER
from tests.fakes.openai_model import Reply
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_payloads import app_mention, message, next_ts
from tests.fakes.slack_server import FakeSlack, message_text


@pytest.fixture
async def two_processes(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, tmp_path: Path
) -> AsyncIterator[tuple[BotProcess, BotProcess]]:
    shared = f"sqlite:///{tmp_path / 'shared' / 'tutorbot.db'}"
    bots = []
    for name in ("a", "b"):
        workdir = tmp_path / name
        workdir.mkdir()
        settings = {
            "OPENAI_API_KEY": "sk-test",
            "OPENAI_BASE_URL": fake_openai.base_url,
            "DATABASE_URL": shared,
            "AGENTOPS_API_KEY": "",
        }
        bots.append(BotProcess(workdir, fake_slack, settings))
    try:
        await asyncio.gather(*(bot.start() for bot in bots))
        yield bots[0], bots[1]
        for bot in bots:
            await bot.stop()
    finally:
        for bot in bots:
            await bot.kill()


def _answers(slack: FakeSlack, channel: str, thread_ts: str) -> list[str]:
    return [
        message_text(m)
        for m in slack.bot_messages(channel, thread_ts)
        if m["ts"] != thread_ts and not PLACEHOLDER.search(message_text(m))
    ]


async def test_two_processes_share_one_sqlite_file(
    two_processes: tuple[BotProcess, BotProcess], fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    a, b = two_processes
    parent = app_mention(text=f"<@{fake_slack.bot_user_id}> q0", ts=next_ts())
    await a.sender.post_event(parent)
    await fake_slack.wait_for(lambda: len(_answers(fake_slack, "C1", parent["ts"])) >= 1)
    for i in range(1, 7):
        fake_openai.model.push(Reply(text=f"answer {i}", latency=0.1))
    for i in range(1, 7):
        sender = (a if i % 2 else b).sender
        await sender.post_event(message(text=f"q{i}", thread_ts=parent["ts"], ts=next_ts()))
    answered = await fake_slack.wait_for(
        lambda: (found := _answers(fake_slack, "C1", parent["ts"])) and len(found) >= 7 and found,
        timeout=30,
    )
    assert [text.split()[-1] for text in answered[1:]] == ["1", "2", "3", "4", "5", "6"]
    assert max(fake_openai.max_concurrent.values()) == 1
    assert fake_openai.violations == []
    await asyncio.gather(a.wait_idle(), b.wait_idle())
    for bot in (a, b):
        assert "database is locked" not in bot.log
        assert "Traceback" not in bot.log
