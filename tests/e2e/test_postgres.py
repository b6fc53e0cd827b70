"""PostgreSQL: two bot processes share one database and never work one thread at once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.e2e.conftest import Harness, postgres_url
from tests.fakes.openai_model import Reply
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_payloads import app_mention, message, next_ts
from tests.fakes.slack_server import FakeSlack


@pytest.fixture
async def pg_schema() -> AsyncIterator[str]:
    schema = f"e2e_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(postgres_url())
    await conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{postgres_url()}?search_path={schema}"
    finally:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.close()


@pytest.fixture
async def two_bots(
    fake_slack: FakeSlack,
    fake_openai: FakeOpenAI,
    tmp_path: Path,
    pg_schema: str,
) -> AsyncIterator[tuple[Harness, Harness]]:
    bots = [
        Harness(fake_slack, fake_openai, tmp_path / "unused.db", runtime, DATABASE_URL=pg_schema)
        for runtime in ("responses", "responses")
    ]
    for bot in bots:
        await bot.start()
    yield bots[0], bots[1]
    for bot in bots:
        await bot.stop()
    assert fake_openai.violations == []


async def test_two_processes_share_threads_in_order(two_bots: tuple[Harness, Harness]) -> None:
    a, b = two_bots
    assert a.sender is not None and b.sender is not None
    parent = app_mention(text="<@UBOT> q0", ts=next_ts())
    await a.sender.post_event(parent)
    await a.wait_answers("C1", parent["ts"], 1)
    for i in range(1, 5):
        a.openai.model.push(Reply(text=f"answer {i}", latency=0.2))
    # Slack spreads deliveries over both processes; each message arrives at one of them.
    for i in range(1, 5):
        sender = (a if i % 2 else b).sender
        assert sender is not None
        await sender.post_event(message(text=f"q{i}", thread_ts=parent["ts"], ts=next_ts()))
    answers = await a.wait_answers("C1", parent["ts"], 5, timeout=30)
    assert [x.split()[-1] for x in answers[1:]] == ["1", "2", "3", "4"]
    assert max(a.openai.max_concurrent.values()) == 1
    # A duplicate delivered to the other process is still one turn.
    dup = message(text="q1 again", thread_ts=parent["ts"], ts=next_ts())
    await asyncio.gather(a.sender.post_event(dup), b.sender.post_event(dup))
    await a.wait_answers("C1", parent["ts"], 6)
    await asyncio.gather(a.settle(), b.settle())
    assert len(a.answers("C1", parent["ts"])) == 6
