"""The soak's world: fake Slack and OpenAI, the scripted model, the bot processes (killed
and restarted), the database plug, and deliveries that Slack would retry.

Every message a student sends carries a token (``m00042``). The model answers it with
``Answer m00042: … (m00042 done)``, a quiz's feedback with ``Feedback m00042: … (m00042
done)``, and puts the token into the quiz's title and choices, so what reached Slack and
the model service can be matched to the message afterwards (``bench.soak_tally``).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.e2e.bot_process import SIGNING_SECRET, BotProcess
from tests.e2e.tcp_proxy import TcpProxy
from tests.fakes.openai_model import FunctionCall, ModelContext, Reply
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_payloads import SlackSender, new_id
from tests.fakes.slack_server import FakeSlack

TOKEN = re.compile(r"\bm\d{5}\b")
# A turn that takes longer than this ends with "This is taking too long…" (a timeout).
RUN_TIMEOUT = 20.0
# Slack retries a delivery that got no 2xx (or no answer within 3 s) up to 3 times: at
# once, after 1 minute and after 5 minutes. The soak compresses the waits.
RETRY_DELAYS = (1.0, 10.0, 30.0)
SLACK_ACK_TIMEOUT = 3.0


def done_marker(token: str) -> str:
    return f"({token} done)"


def quiz_title(token: str) -> str:
    return f"Quiz {token}"


def choices(token: str) -> list[str]:
    return [f"{token} yes", f"{token} no"]


def free_answer(token: str) -> str:
    return f"{token} because it balances"


@dataclass
class ModelStats:
    replies: int = 0
    quizzes: int = 0
    stream_errors: int = 0
    too_slow: int = 0
    long_streams: int = 0


class SoakModel:
    """The model's side of every turn, chosen from what it is sent (see the module doc).

    Some replies fail on the model's side: a stream that breaks half-way (``server_error``),
    a reply slower than the bot's run timeout. A fifth are streamed over a few seconds, so
    that kills land while answers are being written.
    """

    def __init__(self, rng: random.Random, *, faults: bool = True) -> None:
        self.rng = rng
        self.faults = faults
        self.stats = ModelStats()
        self.journal: list[str] = []  # one line per model turn, for looking into problems

    def __call__(self, ctx: ModelContext) -> Reply:
        reply = self._reply(ctx)
        self.journal.append(
            f"{time.strftime('%H:%M:%S')} {ctx.thread_id} user={ctx.last_user_text!r} "
            f"outputs={[o['output'] for o in ctx.tool_outputs]!r} -> "
            f"{reply.text[:60] if reply.text else reply.function_calls and 'display_quiz'}"
            f"{' (breaks)' if reply.stream_error else ''}"
        )
        return reply

    def _reply(self, ctx: ModelContext) -> Reply:
        self.stats.replies += 1
        answered = self._quiz_answers(ctx)
        new_message = self._new_message(ctx)
        if answered is not None:
            # Owed quiz answers can come with the student's next message: answer both.
            text = f"Feedback {answered}: nicely reasoned. {done_marker(answered)}"
            if new_message and answered not in new_message:
                return self._text(f"{text} Answer {new_message}: add them.", new_message)
            return self._text(f"Feedback {answered}: nicely reasoned.", answered)
        text = ctx.last_user_text or ""
        tokens = TOKEN.findall(text)
        if not tokens:
            return Reply(text="Hello! Ask me anything.")
        token = tokens[-1]
        if "quiz me" in text:
            self.stats.quizzes += 1
            questions: list[dict[str, Any]] = [
                {
                    "question_text": f"Is 2x = 6 solved by x = 3? ({token})",
                    "question_type": "MULTIPLE_CHOICE",
                    "choices": choices(token),
                }
            ]
            if "modal" in text:
                questions.append(
                    {"question_text": "Why does it work?", "question_type": "FREE_RESPONSE"}
                )
            args = {"title": quiz_title(token), "questions": questions}
            return Reply(
                function_calls=[FunctionCall(name="display_quiz", arguments=json.dumps(args))],
                latency=self.rng.uniform(0.1, 0.8),
            )
        return self._text(f"Answer {token}: add the numbers, then check.", token)

    def _new_message(self, ctx: ModelContext) -> str | None:
        """The token of the student's message this request brings, if it brings one."""
        last = ctx.history[-1] if ctx.history else {}
        if last.get("role") != "user":
            return None
        tokens = TOKEN.findall(str(last.get("text") or ""))
        return tokens[-1] if tokens else None

    def _quiz_answers(self, ctx: ModelContext) -> str | None:
        """The token of a quiz whose answers this request carries (None: none does)."""
        for output in ctx.tool_outputs:
            try:
                answers = json.loads(output["output"])
            except (TypeError, ValueError):
                continue
            if isinstance(answers, list) and answers and isinstance(answers[0], str):
                tokens = TOKEN.findall(answers[0])
                if tokens:
                    return tokens[0]
        return None

    def _text(self, opening: str, token: str) -> Reply:
        text = f"{opening} Step one, step two. {done_marker(token)}"
        roll = self.rng.random()
        if self.faults and roll < 0.02:
            self.stats.stream_errors += 1
            return Reply(
                text=text, first_token_latency=0.3, write_time=1.0, stream_error="server_error"
            )
        if self.faults and roll < 0.03:
            self.stats.too_slow += 1
            return Reply(text=text, latency=RUN_TIMEOUT + 5.0)
        if roll < 0.23:
            self.stats.long_streams += 1
            filler = " ".join(f"Step {i}: keep both sides balanced." for i in range(1, 40))
            return Reply(
                text=f"{opening} {filler} {done_marker(token)}",
                first_token_latency=self.rng.uniform(0.2, 1.0),
                write_time=self.rng.uniform(2.0, 5.0),
            )
        return Reply(text=text, latency=self.rng.uniform(0.1, 1.5))


@dataclass
class Incarnation:
    """One run of ``python -m bot`` in one slot (a slot is restarted after each kill)."""

    slot: int
    bot: BotProcess
    sender: SlackSender
    started: float = field(default_factory=time.monotonic)


class Deployment:
    """``processes`` bot processes on one database, each restartable; its logs kept in
    ``workdir/p{slot}-{n}/bot.log`` (one directory per incarnation)."""

    def __init__(
        self,
        workdir: Path,
        slack: FakeSlack,
        openai: FakeOpenAI,
        database_url: str,
        processes: int,
        rng: random.Random,
    ) -> None:
        self.workdir = workdir
        self.slack = slack
        self.openai = openai
        self.database_url = database_url
        self.processes = processes
        self.rng = rng
        self.live: dict[int, Incarnation] = {}
        self.history: list[Incarnation] = []
        self.kills = 0
        self.failed_starts = 0
        self._starts = 0

    def _settings(self) -> dict[str, str]:
        return {
            "OPENAI_API_KEY": "sk-soak",
            "OPENAI_BASE_URL": self.openai.base_url,
            "DATABASE_URL": self.database_url,
            "RUN_TIMEOUT_SECONDS": str(int(RUN_TIMEOUT)),
            "AGENTOPS_API_KEY": "",
            "LOG_LEVEL": "INFO",
        }

    async def start(self, slot: int) -> Incarnation:
        self._starts += 1
        directory = self.workdir / f"p{slot}-{self._starts}"
        directory.mkdir(parents=True)
        bot = BotProcess(directory, self.slack, self._settings())
        try:
            await bot.start(timeout=60)
        except AssertionError:
            await bot.kill()
            raise
        sender = SlackSender(
            f"{bot.url}/slack/events",
            SIGNING_SECRET,
            timeout=SLACK_ACK_TIMEOUT,
            on_event=self.slack.add_message,
        )
        incarnation = Incarnation(slot, bot, sender)
        self.live[slot] = incarnation
        self.history.append(incarnation)
        return incarnation

    async def start_all(self) -> None:
        for slot in range(self.processes):
            await self.start(slot)

    async def kill_and_restart(self, slot: int) -> None:
        """SIGKILL the process in ``slot``, then start a new one there."""
        incarnation = self.live.pop(slot, None)
        if incarnation is not None:
            await incarnation.bot.kill()
            self.kills += 1
        while True:  # as a supervisor would: a process that cannot start is started again
            try:
                await self.start(slot)
                return
            except AssertionError as exc:  # it exited (the database is down, say)
                self.failed_starts += 1
                print(f"  process {slot} did not start: {str(exc).splitlines()[0][:120]}")
                await asyncio.sleep(2.0)

    def pick(self, avoid: int | None = None) -> Incarnation | None:
        """A live process to send to (not ``avoid`` when another is live)."""
        choices = [i for s, i in self.live.items() if s != avoid] or list(self.live.values())
        return self.rng.choice(choices) if choices else None

    async def stop(self) -> None:
        for incarnation in list(self.live.values()):
            try:
                await incarnation.bot.stop(timeout=30)
            except AssertionError as exc:
                print(f"  process {incarnation.slot} did not stop cleanly: {str(exc)[:200]}")
                await incarnation.bot.kill()
        self.live.clear()

    async def idle(self, timeout: float) -> bool:
        """Whether every live process reported no thread being worked on within ``timeout``."""
        try:
            await asyncio.gather(*(i.bot.wait_idle(timeout) for i in self.live.values()))
        except (AssertionError, OSError):
            return False
        return True


@dataclass
class DeliveryStats:
    deliveries: int = 0  # distinct events
    attempts: int = 0
    refused: int = 0  # non-2xx answers
    no_answer: int = 0  # connection refused/reset, or no answer within 3 s
    redelivered: int = 0  # Slack's retries after a failure
    duplicates: int = 0  # extra deliveries of an event that had been acked (or not yet)
    given_up: int = 0  # events Slack stopped retrying (never acknowledged)
    interactions: int = 0
    interaction_failures: int = 0


class Slack:
    """Delivers events to the deployment as Slack does: signed, retried on failure with
    ``X-Slack-Retry-Num``, sometimes twice (a retry after a slow ack, to any process)."""

    def __init__(self, deployment: Deployment, rng: random.Random, duplicates: float) -> None:
        self.deployment = deployment
        self.rng = rng
        self.duplicate_rate = duplicates
        self.stats = DeliveryStats()
        self._extra: set[asyncio.Task[None]] = set()

    async def deliver(self, event: dict[str, Any]) -> bool:
        """Deliver ``event`` until acknowledged (at most 1 + 3 tries); whether it was."""
        self.stats.deliveries += 1
        event_id = new_id("Ev0", 9)
        if self.rng.random() < self.duplicate_rate:
            self._spawn(self._duplicate(event, event_id))
        for attempt in range(len(RETRY_DELAYS) + 1):
            if attempt:
                await asyncio.sleep(RETRY_DELAYS[attempt - 1])
                self.stats.redelivered += 1
            if await self._post(event, event_id, attempt):
                return True
        self.stats.given_up += 1
        return False

    async def _post(
        self,
        event: dict[str, Any],
        event_id: str,
        attempt: int,
        *,
        avoid: int | None = None,
        reason: str = "http_error",
    ) -> bool:
        target = self.deployment.pick(avoid)
        self.stats.attempts += 1
        if target is None:
            self.stats.no_answer += 1
            return False
        try:
            result = await target.sender.post_event(
                event,
                event_id=event_id,
                retry_num=attempt or None,
                retry_reason=reason if attempt else None,
            )
        except (aiohttp.ClientError, OSError, TimeoutError):  # refused, reset, or over 3 s
            self.stats.no_answer += 1
            return False
        if 200 <= result.status < 300:
            return True
        self.stats.refused += 1
        return False

    async def _duplicate(self, event: dict[str, Any], event_id: str) -> None:
        """The same event again as Slack's retry: at once, or after a while; half the time
        to a process other than the one that probably took the first."""
        self.stats.duplicates += 1
        await asyncio.sleep(self.rng.choice([0.0, 0.05, 0.5, 2.0, 5.0]))
        slots = list(self.deployment.live)
        avoid = self.rng.choice(slots) if slots and self.rng.random() < 0.5 else None
        await self._post(event, event_id, 1, avoid=avoid, reason="http_timeout")

    async def interact(self, payload: dict[str, Any]) -> bool:
        """A click or a modal submission (Slack does not retry these; the student does)."""
        self.stats.interactions += 1
        target = self.deployment.pick()
        if target is None:
            self.stats.interaction_failures += 1
            return False
        try:
            result = await target.sender.post_interaction(payload)
        except (aiohttp.ClientError, OSError, TimeoutError):
            self.stats.interaction_failures += 1
            return False
        if 200 <= result.status < 300:
            return True
        self.stats.interaction_failures += 1
        return False

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._extra.add(task)
        task.add_done_callback(self._extra.discard)

    async def drain(self) -> None:
        await asyncio.gather(*self._extra, return_exceptions=True)


class DatabasePlug:
    """PostgreSQL reached through a proxy the soak can cut (the shared server stays up);
    for SQLite there is nothing to cut."""

    def __init__(self, proxy: TcpProxy | None) -> None:
        self.proxy = proxy
        self.outages: list[float] = []

    async def outage(self, seconds: float) -> None:
        if self.proxy is None:
            return
        self.proxy.cut()
        await asyncio.sleep(seconds)
        self.proxy.restore()
        self.outages.append(seconds)
