"""Per-workspace Slack budgets: a minute's worth of calls, refilled, emptied by a 429."""

from __future__ import annotations

from bot.runtime.base import StepKind, StepState, StepUpdate
from bot.slack.answer import Progress, task_chunk
from bot.slack.budget import SlackBudget


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_minutes_worth_then_refills() -> None:
    clock = Clock()
    budget = SlackBudget({"chat.startStream": 20, "chat.stopStream": 20}, clock=clock)
    taken = sum(budget.take("T1", "chat.startStream", "chat.stopStream") for _ in range(30))
    assert taken == 20
    clock.now += 3.0  # 20 a minute: one every 3 s
    assert budget.take("T1", "chat.startStream", "chat.stopStream")
    assert not budget.take("T1", "chat.startStream", "chat.stopStream")


def test_workspaces_have_their_own_budgets() -> None:
    budget = SlackBudget({"chat.update": 1}, clock=Clock())
    assert budget.take("T1", "chat.update")
    assert not budget.take("T1", "chat.update")
    assert budget.take("T2", "chat.update")


def test_all_or_none() -> None:
    budget = SlackBudget({"a": 5, "b": 1}, clock=Clock())
    assert budget.take("T1", "a", "b")
    assert not budget.take("T1", "a", "b")
    assert budget.available("T1", "a") == 4  # "a" was not spent by the refused take


def test_unlimited_methods_are_always_allowed() -> None:
    budget = SlackBudget({}, clock=Clock())
    assert all(budget.take("T1", "chat.postMessage") for _ in range(1000))


def test_a_429_blocks_the_method_until_retry_after() -> None:
    clock = Clock()
    budget = SlackBudget({"chat.appendStream": 100}, clock=clock)
    budget.rate_limited("T1", "chat.appendStream", 30)
    assert not budget.take("T1", "chat.appendStream")
    clock.now += 29
    assert not budget.take("T1", "chat.appendStream")
    clock.now += 2
    assert budget.take("T1", "chat.appendStream")


def test_refund() -> None:
    budget = SlackBudget({"x": 1}, clock=Clock())
    assert budget.take("T1", "x")
    budget.refund("T1", "x")
    assert budget.take("T1", "x")


def test_task_chunks_say_what_the_run_does() -> None:
    writing = task_chunk(StepUpdate("ci_1", StepKind.CODE, StepState.WRITING))
    assert writing == {
        "type": "task_update",
        "id": "ci_1",
        "title": "Writing code",
        "status": "in_progress",
    }
    done = task_chunk(StepUpdate("ci_1", StepKind.CODE, StepState.DONE))
    assert (done["status"], done["output"]) == ("complete", "Done")
    failed = task_chunk(StepUpdate("fs_1", StepKind.FILE_SEARCH, StepState.FAILED))
    assert (failed["title"], failed["status"]) == ("Reading your file", "error")


def test_progress_round_trips_and_tolerates_garbage() -> None:
    progress = Progress(ts="1.2", mode="stream", text="hi", cursor=7, raw=2, parts=1)
    assert Progress.from_json(progress.to_json()) == progress
    assert Progress.from_json(None) == Progress()
    assert Progress.from_json("not json") == Progress()
    assert Progress.from_json('{"ts": "1", "unknown": 3}') == Progress(ts="1")
