"""Thread workers on the real store (SQLite and PostgreSQL): what happens to a thread whose
worker ended on an error while it held the lease."""

from __future__ import annotations

import asyncio

from bot.core.workers import DatabaseHealth, Guard, ThreadWorkers
from bot.domain import ThreadKey, Turn, TurnKind, TurnStatus
from bot.tasks import BackgroundTasks
from store import Store, StoreError

KEY = ThreadKey(team="T1", channel="C1", thread_ts="1700000000.000100")


async def test_a_worker_that_died_on_a_store_error_is_replaced_while_the_process_lives(
    store: Store,
) -> None:
    """The lease stays with this (live) process when its worker ends on a database error;
    the sweep must still hand the thread to a new worker once the database answers."""
    seen: list[tuple[int, int]] = []
    done = asyncio.Event()

    async def process(turn: Turn, guard: Guard) -> None:
        seen.append((turn.id, guard.fence.epoch))
        if len(seen) == 1:
            raise StoreError("sqlite: update_turn failed: database is locked")
        await store.update_turn(turn.id, status=TurnStatus.COMPLETED, fence=guard.fence)
        done.set()

    tasks = BackgroundTasks()
    workers = ThreadWorkers(
        store=store, process=process, tasks=tasks, owner="worker-a", health=DatabaseHealth()
    )
    thread_id = (await store.get_or_create_thread(KEY, "responses", "U1")).id
    await store.enqueue_turn(
        thread_id, TurnKind.MESSAGE, user_id="U1", text="hi", message_ts="1700000000.000100"
    )
    await workers.start()
    try:
        await asyncio.wait_for(done.wait(), timeout=10)
    finally:
        await workers.stop_working()
    [(first_turn, first_epoch), (again, epoch)] = seen
    assert again == first_turn and epoch > first_epoch
