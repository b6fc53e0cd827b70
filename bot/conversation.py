"""The conversation core's front door: record what arrives, then have it worked in order.

Every user message (and every completed quiz) becomes a QUEUED turn in the store, recorded
before Slack is acknowledged (``bot.core.intake``: many per transaction); the store's
unique (thread, message_ts) makes duplicate deliveries no-ops. ``bot.core.workers`` then
works each thread's turns one after another, in the students' order, one process at a
time — so the model service never sees two requests at once for one thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from bot.core.intake import Intake
from bot.core.turn import TurnRunner
from bot.core.workers import DatabaseHealth, Ingest, ThreadWorkers, order_key
from bot.domain import ThreadKey, Turn, TurnKind
from bot.replies import SlackError
from bot.slack.surface import Surface
from bot.slack_text import escape_mrkdwn
from bot.tasks import BackgroundTasks
from bot.thread_context import is_bot_message
from store.base import NewMessage, Store, StoreError

log = logging.getLogger(__name__)

FOREIGN_THREAD_CACHE = 4096
STORE_SINCE = "store.created_at"
# A reply in a thread this young that the store does not know yet may have raced its
# parent's delivery (to another process, say): look again a little later.
RECENT_THREAD = 300.0
RECHECKS = (1.0, 3.0)


def _seconds(ts: str) -> float:
    try:
        return float(ts)
    except ValueError:
        return 0.0


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
        processor: TurnRunner,
        replies: Surface,
        runtime_name: str,
        tasks: BackgroundTasks,
        exclude_teams: tuple[str, ...] = (),
    ) -> None:
        self._store = store
        self._replies = replies
        self._processor = processor
        self._runtime_name = runtime_name
        self._tasks = tasks
        self.health = DatabaseHealth()
        self.ingest = Ingest()  # the app counts Slack deliveries in flight here
        self._intake = Intake(store)
        self.workers = ThreadWorkers(
            store=store,
            process=processor.process,
            tasks=tasks,
            owner=f"worker-{uuid.uuid4().hex[:12]}",
            health=self.health,
            ingest=self.ingest,
            exclude_teams=exclude_teams,
        )
        # Threads the bot was never in (LRU): their chatter costs no more Slack calls.
        self._foreign_threads: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        # When this database began: only threads older than that can have been lost.
        self._store_since: float | None = None

    # -- intake ----------------------------------------------------------------------

    async def receive_message(self, message: IncomingMessage) -> Turn | None:
        """Record a message as a turn (durably: raises ``StoreError`` otherwise) and wake
        its thread's worker.

        Returns None when the message is not for the bot (a thread it is not in) or was
        already recorded (a retried or doubled delivery).
        """
        new = NewMessage(
            key=message.key,
            runtime=self._runtime_name,
            user_id=message.user,
            text=message.text,
            message_ts=message.ts,
            order_key=order_key(message.ts),
            files=[dict(f) for f in message.files],
            create_thread=message.addressed,
        )
        try:
            recorded = await self._intake.record(new)
        except StoreError as exc:
            self.health.failed(exc)
            raise
        if recorded.thread is None:
            if await self._bot_was_in_thread(message):
                recorded = await self._intake.record(replace(new, create_thread=True))
            elif self._recent(message):
                self._tasks.spawn(self._recheck(new), name=f"recheck-{message.ts}")
                return None
            else:
                return None
        if recorded.thread is None or recorded.turn is None:
            log.info("duplicate delivery of %s in %s ignored", message.ts, message.key)
            return None
        log.info("turn %s queued for %s", recorded.turn.id, message.key)
        self.kick(recorded.thread.id)
        return recorded.turn

    async def stop(self, key: ThreadKey) -> bool:
        """The student pressed Stop in a thread: its answer ends as they see it, its run is
        cancelled at the model service, the turn is recorded as cancelled. Works whichever
        process is writing the answer: this one stops it at once; another sees the turn
        marked in the store, or its run end cancelled. False: nothing was being answered."""
        thread = await self._store.get_thread(key)
        if thread is None:
            return False
        here = self._processor.stop(thread.id)
        marked = await self._store.request_stop(thread.id)
        if not here and marked:
            await self._processor.cancel_runs(thread, marked)
        log.info("stop in %s: %s", key, "stopped here" if here else f"{len(marked)} turn(s)")
        return here or bool(marked)

    def _recent(self, message: IncomingMessage) -> bool:
        return message.thread_ts is not None and (
            time.time() - _seconds(message.thread_ts) < RECENT_THREAD
        )

    async def _recheck(self, new: NewMessage) -> None:
        """A reply that came before its thread was recorded (its parent's delivery is a
        moment behind, perhaps at another process): record it once the thread is there."""
        for delay in RECHECKS:
            await asyncio.sleep(delay)
            recorded = await self._intake.record(new)
            if recorded.thread is not None:
                if recorded.turn is not None:
                    log.info("turn %s queued for %s (late thread)", recorded.turn.id, new.key)
                    self.kick(recorded.thread.id)
                return

    async def _bot_was_in_thread(self, message: IncomingMessage) -> bool:
        """A reply in a thread the store does not know: had the bot spoken there?

        True only when the store lost the thread (a reset database): the conversation then
        starts fresh, with a note. Answers are cached (one Slack call per unknown thread);
        when Slack cannot tell (rate limited…), the message is left alone.
        """
        if message.thread_ts is None:
            return False
        if self._store_since is not None and _seconds(message.thread_ts) >= self._store_since:
            return False  # the thread began while this database existed: it would know it
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
            # Refusals are remembered too: conversations.replies may be limited to one call
            # a minute, and asking again for every reply would only be refused again.
            log.info("could not check thread %s: %s", message.thread_ts, exc.error)
            messages = []
        if any(is_bot_message(m, bot_user_id=bot_user_id, bot_id=bot_id) for m in messages):
            return True
        self._foreign_threads[cache_key] = None
        if len(self._foreign_threads) > FOREIGN_THREAD_CACHE:
            self._foreign_threads.popitem(last=False)
        return False

    async def start_from_command(
        self,
        *,
        team: str,
        channel: str,
        user: str,
        question: str,
        quiz_topic: str | None = None,
        request_id: str | None = None,
    ) -> str | None:
        """``/tutor``: post the question visibly, then answer it in that message's thread.

        Returns a note for the user (shown ephemerally) when it cannot, e.g. not in channel.
        ``request_id`` (the command's ``trigger_id``, unique per invocation) makes a
        replayed request a no-op.
        """
        if request_id and not await self._store.seen_request(f"command:{request_id}"):
            log.info("slash command %s seen before; ignored", request_id)
            return None
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
            order_key=order_key(f"{time.time():.6f}"),
        )
        if turn is not None:
            self.kick(thread_id)
        return turn

    # -- workers ---------------------------------------------------------------------

    def kick(self, thread_id: int) -> None:
        """Make sure a worker will look at this thread's queue."""
        self.workers.kick(thread_id)

    async def start(self, *, sweep: bool = True) -> None:
        """Heartbeat, resume what a previous process left in flight, sweep periodically
        (``sweep`` off: only threads kicked here are worked)."""
        since = await self._store.get_setting(STORE_SINCE)
        if since is None:
            since = f"{time.time():.6f}"
            await self._store.set_setting(STORE_SINCE, since)
        self._store_since = float(since)
        await self.workers.start(sweep=sweep)

    async def close(self) -> None:
        """Stop working: park the turns in flight (``drain`` the runner after this), then
        ``retire`` to free the leases."""
        await self.workers.stop_working()
        await self._intake.close()

    async def retire(self) -> None:
        await self.workers.retire()

    @property
    def busy_threads(self) -> int:
        return self.workers.busy_threads
