"""The one owner of turn states: every change of a turn's status happens here.

Each transition is one store call (one transaction), named for what happened, so the whole
life of a turn reads on this page:

    QUEUED ──begin──> RUNNING ──run_started──> (run id recorded, skipped quizzes closed)
    RUNNING ──answered──> POSTING ──complete──> COMPLETED
    RUNNING ──park──> NEEDS_TOOL_OUTPUTS            (a quiz waits for the student)
    NEEDS_TOOL_OUTPUTS ──(answers' turn run_started)──> COMPLETED
    any unfinished ──fail──> FAILED | CANCELLED | EXPIRED

A transition retries while the database is briefly unreachable (a restart, a lock held
past the busy timeout): a finished answer is recorded once the database is back, and the
thread's worker never dies of it. Past ``retry_for`` the ``StoreError`` is raised; the
turn then stays where it was and is resumed later (nothing already posted is posted again:
see ``bot.slack.answer.Progress``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from bot.domain import QuizMove, Thread, Turn, TurnStatus
from store.base import Fence, Store, StoreError

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_FOR = 120.0
_BACKOFF = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0)


class TurnLifecycle:
    def __init__(
        self, store: Store, *, retry_for: float = RETRY_FOR, fence: Fence | None = None
    ) -> None:
        self._store = store
        self._retry_for = retry_for
        self._fence = fence

    def fenced(self, fence: Fence | None) -> TurnLifecycle:
        """The same transitions, each refused (``LeaseLost``) once the thread's lease is no
        longer ``fence`` — another process took the thread over."""
        return TurnLifecycle(self._store, retry_for=self._retry_for, fence=fence)

    async def _write(self, what: str, turn: Turn, write: Callable[[], Awaitable[T]]) -> T:
        deadline = time.monotonic() + self._retry_for
        attempt = 0
        while True:
            try:
                return await write()
            except StoreError as exc:
                if time.monotonic() >= deadline:
                    log.error("turn %s: could not record %s: %s", turn.id, what, exc)
                    raise
                if attempt == 0:
                    log.warning("turn %s: recording %s failed, retrying: %s", turn.id, what, exc)
                await asyncio.sleep(_BACKOFF[min(attempt, len(_BACKOFF) - 1)])
                attempt += 1

    async def begin(self, turn: Turn) -> None:
        """The worker takes the turn up (again): RUNNING, one more attempt."""
        turn.attempts += 1
        turn.status = TurnStatus.RUNNING
        await self._write(
            "begin",
            turn,
            lambda: self._store.update_turn(
                turn.id, fence=self._fence, status=TurnStatus.RUNNING, attempts=turn.attempts
            ),
        )

    async def thread_created(
        self, turn: Turn, thread: Thread, runtime: str, remote_id: str
    ) -> None:
        """The model service created the thread's own (before the turn's run starts)."""
        await self._write(
            "the new model-side thread",
            turn,
            lambda: self._store.set_thread_remote(thread.id, runtime, remote_id, fence=self._fence),
        )
        thread.runtime, thread.remote_id = runtime, remote_id

    async def run_started(
        self,
        turn: Turn,
        run_id: str,
        *,
        thread_id: int,
        thread_remote: tuple[str, str] | None = None,
        quiz_moves: Sequence[QuizMove] = (),
        complete_turns: Sequence[int] = (),
    ) -> list[int]:
        """The model service took the turn's input: its run id, the model-side thread it
        created, and the quizzes that input closed, recorded together (so outputs the
        service has are never sent again, and outputs it lacks never forgotten)."""
        moved = await self._write(
            "the started run",
            turn,
            lambda: self._store.record_run_started(
                turn.id,
                run_id,
                thread_id=thread_id,
                thread_remote=thread_remote,
                quiz_moves=quiz_moves,
                complete_turns=complete_turns,
                fence=self._fence,
            ),
        )
        turn.remote_run_id = run_id
        return moved

    async def continued(self, turn: Turn, run_id: str) -> None:
        """The run goes on under another id (tool outputs submitted without the student)."""
        turn.remote_run_id = run_id
        await self._write(
            "the continued run",
            turn,
            lambda: self._store.update_turn(turn.id, remote_run_id=run_id, fence=self._fence),
        )

    async def checkpoint(self, turn: Turn, progress: str) -> None:
        """Where the answer stands in Slack (best effort between the transitions)."""
        turn.progress = progress
        await self._store.update_turn(turn.id, progress=progress, fence=self._fence)

    async def answered(self, turn: Turn, progress: str) -> None:
        """The model finished: the answer is recorded as ready to post, and posted."""
        turn.status = TurnStatus.POSTING
        turn.progress = progress
        await self._write(
            "the answer",
            turn,
            lambda: self._store.update_turn(
                turn.id, status=TurnStatus.POSTING, progress=progress, fence=self._fence
            ),
        )

    async def park(self, turn: Turn, run_id: str, progress: str) -> None:
        """A quiz waits for the student; its answers' turn continues the run."""
        turn.status = TurnStatus.NEEDS_TOOL_OUTPUTS
        turn.remote_run_id = run_id
        await self._write(
            "the parked run",
            turn,
            lambda: self._store.update_turn(
                turn.id,
                status=TurnStatus.NEEDS_TOOL_OUTPUTS,
                remote_run_id=run_id,
                progress=progress,
                fence=self._fence,
            ),
        )

    async def complete(self, turn: Turn, progress: str | None = None) -> None:
        turn.status = TurnStatus.COMPLETED
        await self._write(
            "completion",
            turn,
            lambda: self._store.update_turn(
                turn.id, fence=self._fence, status=TurnStatus.COMPLETED, progress=progress
            ),
        )

    async def fail(self, turn: Turn, error: str, *, status: TurnStatus = TurnStatus.FAILED) -> None:
        """The turn ends without an answer (the student is told separately)."""
        turn.status = status
        await self._write(
            "the failure",
            turn,
            lambda: self._store.update_turn(
                turn.id, status=status, error=error[:500], fence=self._fence
            ),
        )
