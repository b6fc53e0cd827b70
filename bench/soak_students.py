"""The soak's students: one per Slack thread, asking questions (sometimes three at once)
and taking quizzes, answered by button or in the modal, as a person in Slack would.

A student waits for each answer before going on (a failure notice counts as one), and
clicks again when a click had no visible effect (the process behind it died, say). What
each student sent is kept in ``Sent`` records for ``bench.soak_tally``.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bench.soak_world import (
    Slack,
    choices,
    done_marker,
    free_answer,
    quiz_title,
)
from tests.fakes.slack_payloads import app_mention, block_actions, message, next_ts, view_submission
from tests.fakes.slack_server import FakeSlack, message_text

# How long a student waits for an answer before going on regardless (it is then counted
# lost, or in flight, at the end): the run timeout, a takeover and Slack's retries fit.
ANSWER_WAIT = 90.0
POLL = 0.3
NOTICE_WORDS = ("try again", "ask again", "message again")


def is_notice(msg: dict[str, Any]) -> bool:
    text = message_text(msg).lower()
    return any(words in text for words in NOTICE_WORDS) and "(m" not in text


@dataclass
class Sent:
    token: str
    kind: str  # "ask" | "burst" | "quiz_button" | "quiz_modal"
    channel: str
    thread_ts: str
    ts: str
    text: str
    acked: bool = False
    quiz_submitted: bool = False  # the student saw the quiz close after pressing Submit


class Tokens:
    def __init__(self) -> None:
        self._next = 0

    def take(self) -> str:
        self._next += 1
        return f"m{self._next:05d}"


def plan_steps(rng: random.Random, turns: int) -> list[str]:
    """A thread's steps, ``turns`` messages in all: the first a question (a mention), then
    questions, bursts of three and quizzes (a tenth of steps each)."""
    steps = ["ask"]
    left = turns - 1
    while left > 0:
        roll = rng.random()
        if roll < 0.1 and left >= 3:
            steps.append("burst")
            left -= 3
        elif roll < 0.15:
            steps.append("quiz_button")
            left -= 1
        elif roll < 0.2:
            steps.append("quiz_modal")
            left -= 1
        else:
            steps.append("ask")
            left -= 1
    return steps


class Student:
    def __init__(
        self,
        index: int,
        slack: Slack,
        fake: FakeSlack,
        tokens: Tokens,
        rng: random.Random,
        steps: list[str],
        think: float,
        sent: list[Sent],
    ) -> None:
        self.slack = slack
        self.fake = fake
        self.tokens = tokens
        self.rng = rng
        self.steps = steps
        self.think = think
        self.sent = sent
        self.user = f"U{index:04d}"
        self.channel = f"C{index // 2:04d}"
        self.thread_ts = ""

    # -- what the student sees ---------------------------------------------------------------

    def bot_messages(self) -> list[dict[str, Any]]:
        return [
            m
            for m in self.fake.bot_messages(self.channel, self.thread_ts)
            if m["ts"] != self.thread_ts
        ]

    def notices(self) -> int:
        return sum(1 for m in self.bot_messages() if is_notice(m))

    def answered(self, token: str) -> bool:
        marker = done_marker(token)
        return any(marker in message_text(m) for m in self.bot_messages())

    async def until(self, check: Callable[[], Any], timeout: float = ANSWER_WAIT) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            await asyncio.sleep(POLL)
        return None

    async def wait_answer(self, tokens: list[str], notices_before: int) -> None:
        """Until every token is answered, or notices explain the rest, or time is up."""

        def settled() -> bool:
            missing = sum(1 for t in tokens if not self.answered(t))
            return missing == 0 or self.notices() - notices_before >= missing

        await self.until(settled)

    # -- sending ---------------------------------------------------------------------------

    async def send(self, kind: str, template: str) -> Sent:
        """Send ``template`` with a new token in it (as the thread's first message, a
        mention); returns what was sent once Slack stopped trying to deliver it."""
        token = self.tokens.take()
        text = template.format(token=token)
        ts = next_ts()
        if not self.thread_ts:
            self.thread_ts = ts
            event = app_mention(text=text, channel=self.channel, user=self.user, ts=ts)
        else:
            event = message(
                text=text, channel=self.channel, user=self.user, ts=ts, thread_ts=self.thread_ts
            )
        sent = Sent(token, kind, self.channel, self.thread_ts, ts, text)
        self.sent.append(sent)
        sent.acked = await self.slack.deliver(event)
        return sent

    async def run(self) -> None:
        await asyncio.sleep(self.rng.uniform(0, self.think))
        for step in self.steps:
            before = self.notices() if self.thread_ts else 0
            if step == "ask":
                sent = await self.send("ask", "question {token}: what is 3 + 4?")
                await self.wait_answer([sent.token], before)
            elif step == "burst":
                burst = []
                for _ in range(3):
                    burst.append(
                        asyncio.create_task(self.send("burst", "and {token}: what about 5 + 6?"))
                    )
                    await asyncio.sleep(self.rng.uniform(0.02, 0.15))
                sents = await asyncio.gather(*burst)
                await self.wait_answer([s.token for s in sents], before)
            else:
                modal = step == "quiz_modal"
                extra = " with a modal question" if modal else ""
                sent = await self.send(step, "quiz me {token}" + extra)
                await self.take_quiz(sent, modal, before)
            await asyncio.sleep(self.rng.uniform(0.3, 2 * self.think))

    # -- quizzes -----------------------------------------------------------------------------

    def quiz_message(self, token: str) -> dict[str, Any] | None:
        title = quiz_title(token)
        for m in self.bot_messages():
            if any(b.get("type") == "header" for b in m.get("blocks") or []) and title in (
                message_text(m)
            ):
                return m
        return None

    def fresh(self, quiz: dict[str, Any]) -> dict[str, Any]:
        return self.fake.find_message(self.channel, quiz["ts"]) or quiz

    async def click(self, quiz: dict[str, Any], starts: str, text: str | None = None) -> str | None:
        """Click a button of the quiz as it shows now; the trigger id used (None: no such
        button any more)."""
        current = self.fresh(quiz)
        for block in current.get("blocks") or []:
            if block.get("type") != "actions":
                continue
            for el in block.get("elements", []):
                if el["action_id"].startswith(starts) and (
                    text is None or text in el["text"]["text"]
                ):
                    trigger = self.fake.new_trigger_id(self.user)
                    payload = block_actions(
                        action_id=el["action_id"],
                        value=el["value"],
                        message=current,
                        user=self.user,
                        channel=self.channel,
                        trigger_id=trigger,
                    )
                    await self.slack.interact(payload)
                    return trigger
        return None

    async def persist(
        self, act: Callable[[], Awaitable[Any]], check: Callable[[], Any], tries: int = 12
    ) -> bool:
        """Act, and act again while the effect does not show within a few seconds."""
        for _ in range(tries):
            if check():
                return True
            await act()
            if await self.until(check, timeout=5.0):
                return True
        return bool(check())

    async def take_quiz(self, sent: Sent, modal: bool, notices_before: int) -> None:
        token = sent.token
        shown = await self.until(
            lambda: (
                self.quiz_message(token)
                or (self.notices() > notices_before and not self.quiz_message(token))
            )
        )
        quiz = self.quiz_message(token)
        if not shown or quiz is None:
            return  # a failure notice instead of the quiz (or nothing: counted at the end)
        choice = self.rng.choice(choices(token))
        await self.persist(
            lambda: self.click(quiz, "quiz_choice", choice),
            lambda: f"✓ {choice}" in json.dumps(self.fresh(quiz), ensure_ascii=False),
        )
        if modal:
            answer = free_answer(token)
            await self.persist(
                lambda: self.answer_in_modal(quiz, answer),
                lambda: answer in json.dumps(self.fresh(quiz), ensure_ascii=False),
            )
        sent.quiz_submitted = await self.persist(
            lambda: self.click(quiz, "quiz_submit"), lambda: not self.has_buttons(quiz)
        )
        await self.wait_answer([token], notices_before)

    def has_buttons(self, quiz: dict[str, Any]) -> bool:
        return any(b.get("type") == "actions" for b in self.fresh(quiz).get("blocks") or [])

    async def answer_in_modal(self, quiz: dict[str, Any], answer: str) -> None:
        trigger = await self.click(quiz, "quiz_free_open")
        if trigger is None:
            return
        view = await self.until(
            lambda: next((v for v in self.fake.views if v.get("trigger_id") == trigger), None),
            timeout=5.0,
        )
        if view is None:
            return
        await asyncio.sleep(self.rng.uniform(0.5, 2.0))  # typing
        await self.slack.interact(
            view_submission(
                view=view["view"], values={"answer": {"answer_input": answer}}, user=self.user
            )
        )
