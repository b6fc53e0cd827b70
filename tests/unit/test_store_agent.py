"""The agent app's records (store/agent.py) on SQLite and PostgreSQL: a student greeted
once, viewing contexts per thread or per DM, Stop marks on the turns in flight."""

from __future__ import annotations

from bot.domain import ThreadKey, TurnKind, TurnStatus
from store import Store
from store.base import ViewedChannel

KEY = ThreadKey(team="T1", channel="DU1", thread_ts="1700000000.000100")


async def test_a_student_is_greeted_once_per_workspace(store: Store) -> None:
    assert await store.greet_once("T1", "U1") is True
    assert await store.greet_once("T1", "U1") is False
    assert await store.greet_once("T1", "U2") is True
    assert await store.greet_once("T2", "U1") is True
    # A greeting that did not reach the student is tried again on the next open.
    await store.forget_greeting("T1", "U1")
    assert await store.greet_once("T1", "U1") is True
    assert await store.greet_once("T1", "U2") is False


async def test_a_thread_s_own_context_wins_over_its_dm_s(store: Store) -> None:
    assert await store.viewing_context("T1", "DU1", KEY.thread_ts) is None
    await store.set_viewing_context("T1", "DU1", "", ViewedChannel("C1"))
    assert await store.viewing_context("T1", "DU1", KEY.thread_ts) == ViewedChannel("C1")
    await store.set_viewing_context("T1", "DU1", KEY.thread_ts, ViewedChannel("C2", "maths"))
    assert await store.viewing_context("T1", "DU1", KEY.thread_ts) == ViewedChannel("C2", "maths")
    # The DM's context changes; another thread of the DM sees the change.
    await store.set_viewing_context("T1", "DU1", "", ViewedChannel("C3"))
    assert await store.viewing_context("T1", "DU1", "1.2") == ViewedChannel("C3")
    assert await store.viewing_context("T2", "DU1", "1.2") is None


async def test_a_name_is_added_only_while_that_channel_is_viewed(store: Store) -> None:
    await store.set_viewing_context("T1", "DU1", "", ViewedChannel("C1"))
    await store.set_viewing_context("T1", "DU1", "", ViewedChannel("C2"))
    # A slow name lookup for the channel viewed before arrives late: it changes nothing.
    await store.name_viewing_context("T1", "DU1", "", ViewedChannel("C1", "old"))
    assert await store.viewing_context("T1", "DU1", "9.9") == ViewedChannel("C2")
    await store.name_viewing_context("T1", "DU1", "", ViewedChannel("C2", "algebra"))
    assert await store.viewing_context("T1", "DU1", "9.9") == ViewedChannel("C2", "algebra")


async def test_stop_marks_the_turns_in_flight_once(store: Store) -> None:
    thread = await store.get_or_create_thread(KEY, "responses", "U1")
    running = await store.enqueue_turn(
        thread.id, TurnKind.MESSAGE, user_id="U1", text="a", message_ts="1.1"
    )
    queued = await store.enqueue_turn(
        thread.id, TurnKind.MESSAGE, user_id="U1", text="b", message_ts="1.2"
    )
    assert running is not None and queued is not None
    await store.update_turn(running.id, status=TurnStatus.RUNNING, remote_run_id="resp_1")
    [marked] = await store.request_stop(thread.id)
    assert marked.id == running.id and marked.remote_run_id == "resp_1"
    assert await store.stop_requested(running.id) is True
    assert await store.stop_requested(queued.id) is False, "the next message still runs"
    assert await store.request_stop(thread.id) == [], "a second Stop marks nothing new"
