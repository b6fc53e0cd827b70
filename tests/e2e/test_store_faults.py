"""The database failing under the bot (issue 14, items 3 and 4): nothing acknowledged is
lost, nothing posted is posted again, and the bot says so while it lasts.

Another program holds SQLite's write lock past the bot's busy timeout, as a backup tool or a
stuck process would.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.conftest import Harness
from tests.e2e.test_quiz import (
    MC_ONLY,
    button,
    choose,
    click,
    dump,
    quiz_call,
    submit,
    wait_quizzes,
)
from tests.fakes.openai_model import Reply
from tests.fakes.slack_payloads import app_mention, next_ts
from tests.fakes.slack_server import message_text

LONG = " ".join(f"Step {i}: keep both sides balanced." for i in range(1, 81))


def db_path(h: Harness) -> Path:
    return Path(h.env["DATABASE_URL"].removeprefix("sqlite:///"))


@contextmanager
def write_lock(path: Path) -> Iterator[None]:
    """Hold the database's write lock until the block ends."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        yield
        conn.execute("COMMIT")
    finally:
        conn.close()


async def health(h: Harness) -> int:
    async with aiohttp.ClientSession() as session, session.get(f"{h.url}/healthz") as resp:
        return resp.status


async def test_a_locked_database_refuses_deliveries_until_it_can_record_them(
    harness: Harness,
) -> None:
    h = harness
    assert h.sender is not None
    h.openai.model.push(Reply(text="Recorded, then answered."))
    event = app_mention(text=f"<@{h.slack.bot_user_id}> hello?", ts=next_ts())
    with write_lock(db_path(h)):
        refused = await h.sender.post_event(event, event_id="EvLOCKED")
        assert refused.status >= 500  # not recorded: Slack delivers it again
        assert await health(h) == 503
    redelivered = await h.sender.post_event(
        event, event_id="EvLOCKED", retry_num=1, retry_reason="http_error"
    )
    assert redelivered.status == 200
    [answer] = await h.wait_answers("C1", event["ts"], 1, timeout=20)
    assert answer == "Recorded, then answered."
    assert await health(h) == 200


async def test_a_store_that_fails_while_an_answer_is_posted_posts_nothing_twice(
    harness: Harness,
) -> None:
    """The turn's records wait for the database (the worker survives); when it is back the
    answer is complete exactly once, and the next message works."""
    h = harness
    h.openai.model.push(
        Reply(text=LONG, first_token_latency=0.1, write_time=3.0),
        Reply(text="Still here."),
    )
    event = await h.mention("explain it at length")
    await h.slack.wait_for(lambda: "Step 5:" in _thread_text(h, event["ts"]), timeout=10)
    with write_lock(db_path(h)):
        await asyncio.sleep(14.0)
    await h.slack.wait_for(lambda: "Step 80:" in _thread_text(h, event["ts"]), timeout=30)
    await h.settle(timeout=60)
    assert _thread_text(h, event["ts"]) == LONG
    await h.say("are you still there?", thread_ts=event["ts"])
    answers = await h.wait_answers("C1", event["ts"], 2, timeout=20)
    assert answers[-1] == "Still here."
    await h.settle(timeout=30)
    assert _thread_text(h, event["ts"]).count("Step 80:") == 1


def _thread_text(h: Harness, thread_ts: str) -> str:
    return "".join(
        message_text(m)
        for m in h.slack.bot_messages("C1", thread_ts)
        if m["ts"] != thread_ts and "Still here" not in message_text(m)
    )


@pytest.mark.parametrize("runtime", ["responses"], indirect=True)
async def test_a_quiz_click_the_store_cannot_record_asks_the_student_to_click_again(
    harness: Harness,
) -> None:
    """Slack never sends a click again: one the database could not take is not silently
    dropped; the student is asked to click again, and the next click counts."""
    h = harness
    h.openai.model.push(Reply(function_calls=[quiz_call(MC_ONLY)]), Reply(text="Right!"))
    event = await h.mention("quiz me")
    [quiz] = await wait_quizzes(h, event["ts"])
    await h.settle()  # the quiz's message is recorded: the click below is its own
    with write_lock(db_path(h)):
        await click(h, quiz, button(quiz, starts="quiz_choice", text="4"))
        await h.slack.wait_for(
            lambda: any("click again" in e.get("text", "") for e in h.slack.ephemerals),
            timeout=15,
        )
    assert "✓ 4" not in dump(h.slack.find_message("C1", quiz["ts"]))
    await choose(h, quiz, "4")
    await submit(h, quiz)
    answers = await h.wait_answers("C1", event["ts"], 2)
    assert answers[-1] == "Right!"
