"""The conversation core's front door: record what arrives, then work each thread in order.

Every user message (and every completed quiz) becomes a QUEUED turn in the store; the
store's unique (thread, message_ts) makes duplicate deliveries no-ops. One worker per
Slack thread drains that thread's turns one after another while holding the thread's
lease in the store, so the model service never sees two requests at once for one thread
— across processes too. Different threads proceed concurrently.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.domain import ThreadKey, Turn, TurnKind, TurnStatus
from bot.replies import Replies, SlackError
from bot.slack_text import escape_mrkdwn
from bot.tasks import BackgroundTasks
from bot.thread_context import is_bot_message
from bot.turns import TurnProcessor
from store.base import Store

log = logging.getLogger(__name__)

LEASE_TTL = 30.0
FOREIGN_THREAD_CACHE = 4096
SWEEP_INTERVAL = 15.0


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A user's Slack message, already parsed and filtered by the handlers."""

    team: str
    channel: str
    user: str
    text: str
    ts: str
    thread_ts: str | None
    # Direct message or mention: may start a conversation. Otherwise only continues one.
    addressed: bool
    files: Sequence[dict[str, Any]] = field(default_factory=tuple)

    @property
    def key(self) -> ThreadKey:
        return ThreadKey(self.team, self.channel, self.thread_ts or self.ts)


class Conversation:
    def __init__(
        self,
        *,
        store: Store,
        processor: TurnProcessor,
        replies: Replies,
        runtime_name: str,
        tasks: BackgroundTasks,
    ) -> None:
        self._store = store
        self._replies = replies
        self._processor = processor
        self._runtime_name = runtime_name
        self._tasks = tasks
        self._owner = f"worker-{uuid.uuid4().hex[:12]}"
        self._workers: dict[int, asyncio.Task[Any]] = {}
        self._kicked: set[int] = set()
        self._leased: set[int] = set()  # threads whose lease this process holds
        self._sweeper: asyncio.Task[Any] | None = None
        # Threads the bot was never in (LRU): their chatter costs no more Slack calls.
        self._foreign_threads: OrderedDict[tuple[str, str, str], None] = OrderedDict()

    # -- intake ----------------------------------------------------------------------

    def accept(self, message: IncomingMessage) -> None:
        """Take a message from a listener: recorded in an owned task (awaited at shutdown)."""
        self._tasks.spawn(self.receive_message(message), name=f"receive-{message.ts}")

    async def receive_message(self, message: IncomingMessage) -> Turn | None:
        """Record a message as a turn and wake its thread's worker.

        Returns None when the message is not for the bot (a thread it is not in) or was
        already recorded (a retried or doubled delivery).
        """
        if message.addressed:
            thread = await self._store.get_or_create_thread(
                message.key, self._runtime_name, message.user
            )
        else:
            existing = await self._store.get_thread(message.key)
            if existing is None and not await self._bot_was_in_thread(message):
                return None
            thread = existing or await self._store.get_or_create_thread(
                message.key, self._runtime_name, message.user
            )
        turn = await self._store.enqueue_turn(
            thread.id,
            TurnKind.MESSAGE,
            user_id=message.user,
            text=message.text,
            message_ts=message.ts,
            files=[dict(f) for f in message.files],
        )
        if turn is None:
            log.info("duplicate delivery of %s in %s ignored", message.ts, message.key)
            return None
        log.info("turn %s queued for %s", turn.id, message.key)
        self.kick(thread.id)
        return turn

    async def _bot_was_in_thread(self, message: IncomingMessage) -> bool:
        """A reply in a thread the store does not know: had the bot spoken there?

        True only when the store lost the thread (a reset database): the conversation then
        starts fresh, with a note. Answers are cached (one Slack call per unknown thread);
        when Slack cannot tell (rate limited…), the message is left alone.
        """
        if message.thread_ts is None:
            return False
        cache_key = (message.team, message.channel, message.thread_ts)
        if cache_key in self._foreign_threads:
            self._foreign_threads.move_to_end(cache_key)
            return False
        try:
            bot_user_id, bot_id = await self._replies.identity()
            messages = await self._replies.thread_messages(
                message.channel, message.thread_ts, best_effort=True
            )
        except SlackError as exc:
            log.info("could not check thread %s: %s", message.thread_ts, exc.error)
            return False
        if any(is_bot_message(m, bot_user_id=bot_user_id, bot_id=bot_id) for m in messages):
            return True
        self._foreign_threads[cache_key] = None
        if len(self._foreign_threads) > FOREIGN_THREAD_CACHE:
            self._foreign_threads.popitem(last=False)
        return False

    async def start_from_command(
        self, *, team: str, channel: str, user: str, question: str, quiz_topic: str | None = None
    ) -> str | None:
        """``/tutor``: post the question visibly, then answer it in that message's thread.

        Returns a note for the user (shown ephemerally) when it cannot, e.g. not in channel.
        """
        if quiz_topic is not None:
            shown = f"<@{user}> asked for a quiz on *{escape_mrkdwn(quiz_topic)}*"
        else:
            shown = f"<@{user}> asked: {escape_mrkdwn(question)}"
        try:
            ts = await self._replies.post(channel, shown[:3000])
        except SlackError as exc:
            if exc.error in ("not_in_channel", "channel_not_found", "is_archived"):
                return (
                    "I'm not in this conversation, so I can't answer here. Invite me with "
                    "`/invite @tutorbot`, or send me a direct message."
                )
            raise
        await self.receive_message(
            IncomingMessage(
                team=team,
                channel=channel,
                user=user,
                text=question,
                ts=ts,
                thread_ts=None,
                addressed=True,
            )
        )
        return None

    async def enqueue_quiz_answers(
        self, thread_id: int, parent_turn_id: int, batch_run_id: str, user_id: str | None
    ) -> Turn | None:
        """Queue the submission of a run's quiz answers (once, however many clicks)."""
        turn = await self._store.enqueue_turn(
            thread_id,
            TurnKind.QUIZ_ANSWERS,
            user_id=user_id,
            text=batch_run_id,
            message_ts=f"quiz:{batch_run_id}",
            parent_turn_id=parent_turn_id,
        )
        if turn is not None:
            self.kick(thread_id)
        return turn

    # -- workers ---------------------------------------------------------------------

    def kick(self, thread_id: int) -> None:
        """Make sure a worker will look at this thread's queue."""
        self._kicked.add(thread_id)
        if thread_id not in self._workers:
            task = self._tasks.spawn(self._work(thread_id), name=f"thread-{thread_id}")
            if task is not None:
                self._workers[thread_id] = task

    async def _work(self, thread_id: int) -> None:
        try:
            while thread_id in self._kicked:
                self._kicked.discard(thread_id)
                await self._drain(thread_id)
        finally:
            # No await between the last check and this: a kick either saw us alive
            # (and set _kicked before our check) or finds the slot free.
            self._workers.pop(thread_id, None)

    async def _drain(self, thread_id: int) -> None:
        if not await self._store.try_lock_thread(thread_id, self._owner, LEASE_TTL):
            log.info("thread %s is being worked by another process", thread_id)
            return
        self._leased.add(thread_id)
        heartbeat = asyncio.create_task(self._hold_lease(thread_id))
        try:
            while (turn := await self._next_turn(thread_id)) is not None:
                await self._processor.process(turn)
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            # A shutdown can cancel this very write; close() then releases what is left,
            # so a restarted process never waits out a lease its predecessor held.
            await self._store.unlock_thread(thread_id, self._owner)
            self._leased.discard(thread_id)

    async def _next_turn(self, thread_id: int) -> Turn | None:
        # A RUNNING turn here was orphaned (a previous process stopped mid-turn): resume it.
        running = await self._store.list_turns(statuses=[TurnStatus.RUNNING], thread_id=thread_id)
        if running:
            return running[0]
        return await self._store.next_queued_turn(thread_id)

    async def _hold_lease(self, thread_id: int) -> None:
        while True:
            await asyncio.sleep(LEASE_TTL / 3)
            try:
                if not await self._store.try_lock_thread(thread_id, self._owner, LEASE_TTL):
                    log.warning("lost the lease on thread %s", thread_id)
            except Exception:
                log.exception("could not renew the lease on thread %s", thread_id)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Resume what a previous process left in flight, then sweep periodically."""
        await self._sweep()
        self._sweeper = self._tasks.spawn(self._sweep_forever(), name="turn-sweeper")

    async def _sweep(self) -> None:
        thread_ids = set(await self._store.threads_with_queued_turns())
        for turn in await self._store.list_turns(statuses=[TurnStatus.RUNNING]):
            thread_ids.add(turn.thread_id)
        for thread_id in sorted(thread_ids):
            self.kick(thread_id)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            try:
                await self._sweep()
            except Exception:
                log.exception("turn sweep failed")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for task in list(self._workers.values()):
            task.cancel()
        if self._workers:
            await asyncio.wait(list(self._workers.values()), timeout=5)
        for thread_id in sorted(self._leased):
            try:
                await self._store.unlock_thread(thread_id, self._owner)
            except Exception:
                log.exception("could not release the lease on thread %s", thread_id)
        self._leased.clear()

    @property
    def busy_threads(self) -> int:
        return len(self._workers)
