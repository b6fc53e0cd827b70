"""What the soak's students got, from the fakes' records only (what Slack showed, what the
model service received), and the database's unfinished turns."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiosqlite
import asyncpg

from bench.soak_students import Sent, is_notice
from bench.soak_world import choices, done_marker, quiz_title
from tests.fakes.openai_responses import message_text as item_text
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_payloads import ts_key
from tests.fakes.slack_server import FakeSlack, message_text


@dataclass
class Tally:
    messages: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    extra_notices: int = 0
    open_streams: int = 0  # answers left "streaming" in Slack at the end
    model_saw: Counter[str] = field(default_factory=Counter)  # "once" | "twice" | "never"
    quizzes: int = 0
    quiz: Counter[str] = field(default_factory=Counter)
    unfinished_turns: dict[str, int] = field(default_factory=dict)
    problems: list[Sent] = field(default_factory=list)  # lost or answered twice

    def note(self, outcome: str, sent: Sent, detail: str = "") -> None:
        self.outcomes[outcome] += 1
        self.problems.append(sent)
        if len(self.examples[outcome]) < 8:
            self.examples[outcome].append(
                f"{sent.token} ({sent.kind}) {sent.channel} thread {sent.thread_ts} ts {sent.ts}"
                + (f": {detail}" if detail else "")
            )


def tally(slack: FakeSlack, openai: FakeOpenAI, sent: list[Sent]) -> Tally:
    result = Tally(messages=len(sent))
    by_thread: dict[tuple[str, str], list[Sent]] = defaultdict(list)
    for s in sent:
        by_thread[(s.channel, s.thread_ts)].append(s)
    user_texts, outputs = remembered(openai)
    for (channel, thread_ts), sents in by_thread.items():
        replies = [m for m in slack.bot_messages(channel, thread_ts) if m["ts"] != thread_ts]
        _thread(result, slack, channel, replies, sorted(sents, key=lambda s: ts_key(s.ts)))
    for s in sent:
        seen = sum(1 for text in user_texts if s.text in text)
        result.model_saw["once" if seen == 1 else "never" if seen == 0 else "twice"] += 1
        if s.kind.startswith("quiz"):
            _quiz(result, slack, s, outputs, user_texts)
    return result


def remembered(openai: FakeOpenAI) -> tuple[list[str], list[str]]:
    """What the model service keeps in its conversations at the end: the students'
    messages and the tool outputs (input of a response that failed may be sent again, so
    the requests alone would count it twice)."""
    texts: list[str] = []
    outputs: list[str] = []
    for conversation in list(openai.responses_api.conversations):
        for item in openai.conversation_items(conversation):
            if item.get("type") == "function_call_output":
                outputs.append(str(item.get("output")))
            elif item.get("type", "message") == "message" and item.get("role") == "user":
                texts.append(item_text(item))
    return texts, outputs


def _thread(
    result: Tally,
    slack: FakeSlack,
    channel: str,
    replies: list[dict[str, Any]],
    sents: list[Sent],
) -> None:
    # A message counts once however many times it shows a marker (its ``text`` fallback
    # repeats its blocks): two answers are two messages.
    texts = [message_text(m) for m in replies]
    streaming = [m["ts"] for m in replies if slack.is_streaming(channel, m["ts"])]
    result.open_streams += len(streaming)
    unanswered: list[Sent] = []
    for s in sents:
        ends = sum(1 for t in texts if done_marker(s.token) in t)
        starts = sum(1 for t in texts if f"Answer {s.token}:" in t or f"Feedback {s.token}:" in t)
        # Two complete answers are a doubled reply; a broken one ended by a failure notice
        # and then answered in full (owed quiz answers go with the next message) is not.
        if ends >= 2:
            result.note("answered twice", s, f"{starts} starts, {ends} ends")
        elif ends == 1:
            result.outcomes["answered once"] += 1
        else:
            unanswered.append(s)
    # A notice ("… Please try again.") answers the latest unanswered message before it
    # (a student waits for each answer, so that is the turn that failed).
    for notice in (m for m in replies if is_notice(m)):
        before = [s for s in unanswered if ts_key(s.ts) < ts_key(notice["ts"])]
        target = before[-1] if before else None
        if target is None:
            result.extra_notices += 1
            continue
        unanswered.remove(target)
        result.outcomes["failure notice"] += 1
    for s in unanswered:
        if any(ts_key(ts) > ts_key(s.ts) for ts in streaming):
            result.note("in flight", s, "an answer to it is still streaming")
        elif not s.acked:
            result.note("lost: never acknowledged", s)
        else:
            result.note("lost", s)


def _quiz(
    result: Tally, slack: FakeSlack, s: Sent, outputs: list[str], user_texts: list[str]
) -> None:
    result.quizzes += 1
    title = quiz_title(s.token)
    posted = sum(
        1
        for m in slack.bot_messages(s.channel, s.thread_ts)
        if any(b.get("type") == "header" for b in m.get("blocks") or [])
        and title in message_text(m)
    )
    result.quiz[f"posted {min(posted, 2) if posted < 2 else '2+'}x"] += 1
    picks = choices(s.token)
    delivered = sum(1 for o in outputs if any(p in o for p in picks))
    as_message = sum(1 for text in user_texts if any(p in text for p in picks))
    if not s.quiz_submitted:
        result.quiz["not submitted by the student"] += 1
    if delivered == 1 and as_message == 0:
        result.quiz["answers delivered once"] += 1
    elif delivered == 0 and as_message == 1:
        result.quiz["answers delivered once, as a message"] += 1
    elif delivered + as_message >= 2:
        result.quiz["answers delivered twice"] += 1
        result.note("quiz answers twice", s, f"{delivered} tool outputs, {as_message} messages")
    elif s.quiz_submitted and told_after(slack, s):
        # The feedback failed and the student was told: the answers go with their next
        # message (none came: the soak ended).
        result.quiz["answers not kept yet, the student told to try again"] += 1
    elif s.quiz_submitted:
        result.quiz["answers lost"] += 1
        result.note("quiz answers lost", s)


def told_after(slack: FakeSlack, s: Sent) -> bool:
    """Whether a failure notice follows the quiz in its thread."""
    replies = slack.bot_messages(s.channel, s.thread_ts)
    return any(is_notice(m) and ts_key(m["ts"]) > ts_key(s.ts) for m in replies)


async def unfinished_turns(database_url: str) -> dict[str, int]:
    """Turns not final in the database: queued, running, posting, awaiting tool outputs."""
    sql = (
        "SELECT status, count(*) FROM turns WHERE status IN "
        "('queued', 'running', 'posting', 'needs_tool_outputs') GROUP BY status"
    )
    if database_url.startswith("sqlite"):
        path = database_url.removeprefix("sqlite:///")
        async with aiosqlite.connect(path) as db:
            rows = [tuple(r) for r in await db.execute_fetchall(sql)]
    else:
        base, _, query = database_url.partition("?search_path=")
        conn = await asyncpg.connect(base, server_settings={"search_path": query})
        try:
            rows = [tuple(r) for r in await conn.fetch(sql)]
        finally:
            await conn.close()
    return {str(status): int(count) for status, count in rows}


def report(result: Tally) -> None:
    o = result.outcomes
    print(f"  student messages: {result.messages}")
    print(
        f"  answered once {o['answered once']}, answered twice {o['answered twice']}, "
        f"lost {o['lost']} (+ never acknowledged by any process: "
        f"{o['lost: never acknowledged']}), failure notices {o['failure notice']} "
        f"(+ {result.extra_notices} notices for a message that was also answered), "
        f"still in flight {o['in flight']}"
    )
    print(
        f"  the model service keeps each message: once {result.model_saw['once']}, "
        f"twice or more {result.model_saw['twice']}, never {result.model_saw['never']}"
    )
    q = result.quiz
    print(
        f"  quizzes {result.quizzes}: answers delivered once as display_quiz output "
        f"{q['answers delivered once']}, "
        f"once as a message {q['answers delivered once, as a message']}, "
        f"twice {q['answers delivered twice']}, lost {q['answers lost']}, not kept after a "
        f"failure notice {q['answers not kept yet, the student told to try again']}; "
        f"posted once {q['posted 1x']}, twice {q['posted 2+x']}, never {q['posted 0x']}; "
        f"not submitted {q['not submitted by the student']}"
    )
    print(f"  answers left streaming in Slack (never stopped): {result.open_streams}")
    print(f"  turns unfinished in the database: {result.unfinished_turns or 'none'}")
    for outcome, examples in result.examples.items():
        print(f"  {outcome}, e.g.:")
        for example in examples:
            print(f"    {example}")
