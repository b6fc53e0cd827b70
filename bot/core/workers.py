"""Working each Slack thread's turns in order, one process at a time per thread.

Why this mechanism (issue 10 weighed PostgreSQL advisory locks, LISTEN/NOTIFY and a job
queue such as procrastinate): one mechanism for SQLite and PostgreSQL, built on two rows.

- Every process heartbeats its ``workers`` row each ``HEARTBEAT`` seconds; the row says it
  is alive for ``ALIVE`` seconds more (the database's clock).
- A thread's lease names its owner and an epoch. A process takes a lease that is free, its
  own, or held by a process whose heartbeat ran out (it died: takeover within ``ALIVE`` +
  ``SWEEP`` seconds), incrementing the epoch. Every write for a turn carries (owner, epoch)
  and is refused once the lease moved on (``LeaseLost``): a stalled process cannot write
  after another took over. Slack writes are held back too while this process's own
  heartbeat is in doubt (``may_write``), before anyone else could take its leases.
- Wake-ups are not missed: whoever records a turn tries to take its thread at once; a worker
  gives the lease up only when no turn waits (one conditional statement), so a turn
  recorded by another process while this one was finishing is seen either way.
- Order: turns run in the order of the students' Slack timestamps, whatever order they
  arrived in. A follow-up waits ``HOLD`` seconds after it arrived before it starts, so a
  message delivered a little late (to another process, say) still goes first.
- While a student's quiz is open, other people's messages in the thread wait (up to
  ``QUIZ_WAIT``) for it to be submitted or skipped; the student's own message skips it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from bot.domain import Thread, Turn, TurnKind, TurnStatus
from bot.tasks import BackgroundTasks
from store.base import Fence, LeaseLost, NextWork, Store, StoreError

log = logging.getLogger(__name__)

HEARTBEAT = 1.0
ALIVE = 3.0
SWEEP = 1.0
HOLD = 0.25
QUIZ_WAIT = 300.0
INGEST_WAIT = 0.5
# Slack writes pause this long before this process's heartbeat would run out.
MARGIN = 0.5
_WAITING_POLL = 0.5


class Guard:
    """What a turn is worked under: the thread's lease, and whether Slack writes may go
    out now (``check`` raises ``LeaseLost`` once the lease is known lost); with what the
    worker already read (the thread, whether a quiz waits in it), so it is not read again."""

    def __init__(
        self, fence: Fence, workers: ThreadWorkers, thread: Thread | None, open_quiz: bool
    ) -> None:
        self.fence = fence
        self._workers = workers
        self.thread = thread
        self.open_quiz = open_quiz

    def check(self) -> bool:
        return self._workers.may_write(self.fence)


ProcessTurn = Callable[[Turn, Guard], Awaitable[None]]
_DEFERRED = object()  # queued turns wait for someone's quiz: poll again soon
_DEFERRED_NOW = object()  # a hold just passed: look again at once


class Ingest:
    """Slack deliveries being handled right now. They are acknowledged only once recorded,
    within Slack's 3 s: under a burst, thread workers let them go first (briefly: at most
    ``INGEST_WAIT``), rather than fill the event loop with turns as the burst arrives."""

    def __init__(self) -> None:
        self._open = 0
        self._quiet = asyncio.Event()
        self._quiet.set()

    def started(self) -> None:
        self._open += 1
        self._quiet.clear()

    def ended(self) -> None:
        self._open -= 1
        if self._open <= 0:
            self._open = 0
            self._quiet.set()

    async def wait_quiet(self) -> None:
        if self._quiet.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._quiet.wait(), INGEST_WAIT)


class DatabaseHealth:
    """Whether the database answers (``GET /healthz``); one log line when it goes, one when
    it comes back."""

    def __init__(self) -> None:
        self.up = True

    def failed(self, exc: BaseException) -> None:
        if self.up:
            log.error("the database is unreachable: %s", exc)
        self.up = False

    def answered(self) -> None:
        if not self.up:
            log.warning("the database is back")
        self.up = True


class ThreadWorkers:
    def __init__(
        self,
        *,
        store: Store,
        process: ProcessTurn,
        tasks: BackgroundTasks,
        owner: str,
        health: DatabaseHealth,
        ingest: Ingest | None = None,
        exclude_teams: tuple[str, ...] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._process = process
        self._tasks = tasks
        self.owner = owner
        self._health = health
        self._ingest = ingest or Ingest()
        self._exclude_teams = exclude_teams
        self._clock = clock
        self._workers: dict[int, asyncio.Task[Any]] = {}
        self._kicked: set[int] = set()
        self._lost: set[tuple[int, int]] = set()  # (thread, epoch) leases found lost
        self._alive_until = 0.0  # our heartbeat holds until then (local, conservative)
        self._fresh_since: float | None = None  # heartbeats unbroken since then
        self._loops: list[asyncio.Task[Any]] = []

    # -- heartbeats ----------------------------------------------------------------------

    async def start(self, *, sweep: bool = True) -> None:
        """Heartbeat at once (so this process's leases hold), then keep beating and (unless
        ``sweep`` is off: the console works only its own conversation) sweeping for
        threads that need a worker."""
        await self._beat()
        loops = [(self._beat_forever, "heartbeat")]
        if sweep:
            loops.append((self._sweep_forever, "sweeper"))
        for loop, name in loops:
            task = self._tasks.spawn(loop(), name=f"turn-{name}")
            if task is not None:
                self._loops.append(task)
        if sweep:
            await self.sweep()

    async def _beat(self) -> None:
        sent = self._clock()
        try:
            await self._store.heartbeat(self.owner, ALIVE)
        except StoreError as exc:
            self._health.failed(exc)
            self._fresh_since = None
            return
        self._health.answered()
        self._alive_until = sent + ALIVE
        if self._fresh_since is None:
            self._fresh_since = sent

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT)
            await self._beat()

    def may_write(self, fence: Fence) -> bool:
        """Whether a turn worked under ``fence`` may write to Slack now: the lease is not
        known lost, and this process's heartbeat holds with a margin."""
        if (fence.thread_id, fence.epoch) in self._lost:
            raise LeaseLost(f"the lease of thread {fence.thread_id} was lost")
        return self._clock() < self._alive_until - MARGIN

    # -- waking workers ------------------------------------------------------------------

    def kick(self, thread_id: int) -> None:
        """Make sure a worker of this process looks at the thread (if it can take it)."""
        self._kicked.add(thread_id)
        if thread_id not in self._workers:
            task = self._tasks.spawn(self._work(thread_id), name=f"thread-{thread_id}")
            if task is not None:
                self._workers[thread_id] = task

    async def sweep(self) -> None:
        """Threads with work and no live worker (free, or their process died), and ours
        whose worker ended on an error (a database outage) while holding the lease."""
        fresh = self._fresh_since is not None and self._clock() - self._fresh_since >= ALIVE
        try:
            found = await self._store.threads_needing_work(
                self.owner, exclude_teams=self._exclude_teams
            )
        except StoreError as exc:
            self._health.failed(exc)
            return
        for thread_id, ours in found:
            if ours:
                if thread_id not in self._workers:
                    self.kick(thread_id)
            # After an outage every process's heartbeat ran out: wait until ours has been
            # fresh long enough that the others, alive too, had the time to renew theirs.
            elif fresh or thread_id in self._workers:
                self.kick(thread_id)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP)
            try:
                await self.sweep()
            except Exception:
                log.exception("turn sweep failed")

    # -- one thread ----------------------------------------------------------------------

    async def _work(self, thread_id: int) -> None:
        try:
            while thread_id in self._kicked:
                self._kicked.discard(thread_id)
                await self._drain(thread_id)
        except StoreError as exc:
            self._health.failed(exc)
            log.warning("thread %s waits for the database: %s", thread_id, exc)
        finally:
            # No await between the last check and this: a kick either saw us alive (and
            # set _kicked before our check) or finds the slot free.
            self._workers.pop(thread_id, None)

    async def _drain(self, thread_id: int) -> None:
        await self._ingest.wait_quiet()
        claimed = await self._store.take_thread(thread_id, self.owner)
        if claimed is None:
            log.debug("thread %s is worked by another process", thread_id)
            return
        epoch, thread = claimed
        fence = Fence(thread_id, self.owner, epoch)
        opener = thread.key.thread_ts
        worked = False
        try:
            while True:
                # After a turn, try to let go first: the usual case is that nothing waits.
                if worked and await self._store.release_thread(fence):
                    return
                work = await self._store.next_work(thread_id, limit=10)
                found = await self._pick(work, opener)
                if found is _DEFERRED_NOW:
                    worked = False
                    continue
                if found is _DEFERRED:
                    await asyncio.sleep(_WAITING_POLL)
                    continue
                if found is None:
                    if await self._store.release_thread(fence):
                        return
                    continue  # a turn arrived meanwhile (or the lease is gone: next write says)
                assert isinstance(found, Turn)
                guard = Guard(fence, self, thread, open_quiz=work.quiz_student is not None)
                await self._process(found, guard)
                worked = True
        except LeaseLost:
            log.warning("thread %s was taken over by another process", thread_id)
            self._lost.add((thread_id, fence.epoch))

    async def _pick(self, work: NextWork, opener: str | None) -> object:
        """The turn to work now: in flight first; else the earliest queued by the students'
        timestamps that may start (its hold passed; not waiting on someone's quiz).
        ``_DEFERRED`` when queued turns must wait; None when there is nothing to do."""
        turns = work.turns
        if not turns:
            return None
        if turns[0].status is not TurnStatus.QUEUED:
            return turns[0]
        for turn in turns:
            age = _age(turn.created_at)
            if work.quiz_student is not None and _waits_for_quiz(turn, work.quiz_student):
                if min(age, _age(work.quiz_since)) < QUIZ_WAIT:
                    continue  # someone's quiz is open: after it, or after QUIZ_WAIT
            if turn.kind is TurnKind.MESSAGE and age < HOLD and turn.message_ts != opener:
                # A message delivered a little late may belong before this one.
                await asyncio.sleep(HOLD - age)
                return _DEFERRED_NOW
            return turn
        return _DEFERRED

    # -- shutdown ------------------------------------------------------------------------

    async def stop_working(self) -> None:
        """Stop the heartbeat and sweep loops and cancel the thread workers (their turns
        park: the critical steps they are in finish in ``TurnRunner.drain``)."""
        for task in self._loops:
            task.cancel()
        for task in list(self._workers.values()):
            task.cancel()
        pending = [*self._loops, *self._workers.values()]
        if pending:
            await asyncio.wait(pending, timeout=5)
        self._loops.clear()

    async def retire(self) -> None:
        """After the turns in flight were parked and recorded: free every lease at once."""
        try:
            await self._store.retire_worker(self.owner)
        except StoreError as exc:
            log.warning("could not free this process's leases (they expire): %s", exc)

    @property
    def busy_threads(self) -> int:
        return len(self._workers)


def _age(moment: datetime | None) -> float:
    """Seconds since ``moment`` (the database's clock); infinite when unknown."""
    if moment is None:
        return float("inf")
    return max(0.0, (datetime.now(UTC) - moment).total_seconds())


def _waits_for_quiz(turn: Turn, student: str) -> bool:
    return turn.kind is TurnKind.MESSAGE and turn.user_id is not None and turn.user_id != student


def order_key(ts: str) -> str:
    """A Slack ts as text that sorts in time order (``1700000000.000100`` -> zero-padded)."""
    try:
        return f"{float(ts):020.6f}"
    except ValueError:
        return ts
