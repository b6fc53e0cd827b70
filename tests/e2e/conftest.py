"""End-to-end harness: the real bot, in-process, against fake Slack and fake OpenAI servers.

The bot is built exactly as ``python -m bot`` builds it (``load_settings`` from an env dict,
``TutorBot``), listens on a real port, and reaches the fakes through the real ``slack_sdk``
and ``openai`` clients. Tests talk to it with signed HTTP requests, as Slack does.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bot.app import TutorBot
from bot.config import load_settings
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_payloads import SlackSender, app_mention, message, next_ts
from tests.fakes.slack_server import FakeSlack, message_text

SIGNING_SECRET = "test-signing-secret"
PLACEHOLDER = re.compile(r"hourglass|Thinking…|Checking your answers")


class Harness:
    """One bot under test plus its fakes; ``restart()`` keeps the database."""

    def __init__(
        self, slack: FakeSlack, openai: FakeOpenAI, db_path: Path, runtime: str, **env: str
    ) -> None:
        self.slack = slack
        self.openai = openai
        self.runtime = runtime
        self.env = {
            "SLACK_BOT_TOKEN": slack.bot_token,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.api_url,
            "OPENAI_API_KEY": "sk-test",
            "OPENAI_BASE_URL": openai.base_url,
            "ASSISTANT_RUNTIME": runtime,
            "DATABASE_URL": f"sqlite:///{db_path}",
            "RUN_TIMEOUT_SECONDS": "20",
            **env,
        }
        self.bot: TutorBot | None = None
        self.sender: SlackSender | None = None

    async def start(self) -> None:
        self.bot = TutorBot(load_settings(self.env))
        await self.bot.start(port=0)
        self.sender = SlackSender(
            f"http://127.0.0.1:{self.bot.port}/slack/events",
            SIGNING_SECRET,
            on_event=self.slack.add_message,
        )

    async def stop(self) -> None:
        if self.bot is not None:
            await self.bot.stop()
            self.bot = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    @property
    def url(self) -> str:
        assert self.bot is not None
        return f"http://127.0.0.1:{self.bot.port}"

    # -- conveniences ----------------------------------------------------------------------

    async def mention(
        self, text: str, *, channel: str = "C1", user: str = "U1", thread_ts: str | None = None
    ) -> dict[str, Any]:
        assert self.sender is not None
        event = app_mention(
            text=f"<@{self.slack.bot_user_id}> {text}",
            channel=channel,
            user=user,
            ts=next_ts(),
            thread_ts=thread_ts,
        )
        result = await self.sender.post_event(event)
        assert result.status == 200, result.body
        return event

    async def say(
        self,
        text: str,
        *,
        channel: str = "C1",
        user: str = "U1",
        thread_ts: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        assert self.sender is not None
        event = message(
            text=text, channel=channel, user=user, ts=next_ts(), thread_ts=thread_ts, **fields
        )
        result = await self.sender.post_event(event)
        assert result.status == 200, result.body
        return event

    def answers(self, channel: str, thread_ts: str) -> list[str]:
        """The bot's settled messages in a thread: streams still being written, and empty
        or placeholder messages, left out."""
        return [
            text
            for m in self.slack.bot_messages(channel, thread_ts)
            if m["ts"] != thread_ts
            and not self.slack.is_streaming(channel, m["ts"])
            and (text := message_text(m)).strip()
            and not PLACEHOLDER.search(text)
        ]

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait until the bot has nothing left to do for what was delivered so far.

        Bolt hands an acked event to a task of its own first, so idleness must hold for a
        few consecutive looks, not one.
        """
        assert self.bot is not None
        bot = self.bot
        deadline = time.monotonic() + timeout
        quiet = 0
        while quiet < 5:
            quiet = quiet + 1 if not bot.tasks.busy() else 0
            if time.monotonic() > deadline:
                raise AssertionError("the bot did not settle")
            await asyncio.sleep(0.02)

    async def wait_answers(
        self, channel: str, thread_ts: str, count: int, timeout: float = 15.0
    ) -> list[str]:
        async def enough() -> list[str] | None:
            found = self.answers(channel, thread_ts)
            return found if len(found) >= count else None

        return await self.slack.wait_for(enough, timeout=timeout)


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    slack = FakeSlack()
    await slack.start()
    yield slack
    await slack.stop()


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture(params=["responses", "assistants", "chat"])
def runtime(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def harness(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, tmp_path: Path, runtime: str
) -> AsyncIterator[Harness]:
    h = Harness(fake_slack, fake_openai, tmp_path / "bot.db", runtime)
    await h.start()
    yield h
    await h.stop()
    # No test may leave a protocol violation behind (two requests on a thread, …).
    assert fake_openai.violations == []


def postgres_url() -> str:
    return os.environ.get("TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test")


@pytest.fixture
async def pg_schema() -> AsyncIterator[str]:
    """A ``DATABASE_URL`` on a fresh PostgreSQL schema of its own, dropped afterwards."""
    schema = f"e2e_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(postgres_url())
    await conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{postgres_url()}?search_path={schema}"
    finally:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.close()
