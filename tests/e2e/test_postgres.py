"""Two bot processes share one database (PostgreSQL, or one SQLite file on one machine) and
never work one thread at once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Harness
from tests.e2e.test_quiz import MIXED_QUIZ, answer_free, choose, quiz_call, submit, wait_quizzes
from tests.fakes.openai_model import Reply
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_payloads import app_mention, message, next_ts
from tests.fakes.slack_server import FakeSlack


@pytest.fixture(params=["postgres", "sqlite"])
def shared_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The DATABASE_URL both bots use: PostgreSQL, or one SQLite file on this machine."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    return str(request.getfixturevalue("pg_schema"))


@pytest.fixture
async def two_bots(
    fake_slack: FakeSlack,
    fake_openai: FakeOpenAI,
    tmp_path: Path,
    shared_database: str,
    runtime: str,
) -> AsyncIterator[tuple[Harness, Harness]]:
    bots = [
        Harness(
            fake_slack, fake_openai, tmp_path / "unused.db", runtime, DATABASE_URL=shared_database
        )
        for _ in range(2)
    ]
    for bot in bots:
        await bot.start()
    yield bots[0], bots[1]
    for bot in bots:
        await bot.stop()
    assert fake_openai.violations == []


@pytest.fixture
async def pg_bot(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, tmp_path: Path, pg_schema: str
) -> AsyncIterator[Harness]:
    db = tmp_path / "unused.db"
    bot = Harness(fake_slack, fake_openai, db, "responses", DATABASE_URL=pg_schema)
    await bot.start()
    yield bot
    await bot.stop()
    assert fake_openai.violations == []


async def test_unencodable_characters_are_cleaned_and_recorded(pg_bot: Harness) -> None:
    """PostgreSQL refuses NUL in text, and every UTF-8 encoder a lone surrogate."""
    h = pg_bot
    assert h.sender is not None
    lone = await h.mention("what is 2\ud800+2?")
    nul = await h.mention("what is 3\x00+3?")
    await h.wait_answers("C1", lone["ts"], 1)
    await h.wait_answers("C1", nul["ts"], 1)
    result = await h.sender.post_command("what is 5\x00+5?")
    assert result.status == 200
    # The slash command's turn has taken its (echo) reply before the quiz is scripted.
    await h.slack.wait_for(lambda: len(h.openai.model.calls) == 3)
    assert sorted(h.openai.user_messages()) == [
        "what is 2\ufffd+2?",
        "what is 3+3?",
        "what is 5+5?",
    ]
    # A quiz answer typed in the modal: cleaned, saved, sent (no modal error).
    h.openai.model.push(Reply(function_calls=[quiz_call(MIXED_QUIZ)]), Reply(text="Thanks!"))
    event = await h.mention("quiz me")
    [quiz] = await wait_quizzes(h, event["ts"])
    await choose(h, quiz, "x = 3")
    ack = await answer_free(h, quiz, "Divide\x00 by 2 \ud800")
    assert ack.get("response_action") != "errors", ack
    await submit(h, quiz)
    await h.wait_answers("C1", event["ts"], 2)
    [output] = h.openai.tool_outputs()
    assert json.loads(output["output"]) == ["x = 3", "Divide by 2 \ufffd"]


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
