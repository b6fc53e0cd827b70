"""The store's gate: a bounded number at once, priority waiters first, cancellation safe."""

from __future__ import annotations

import asyncio

from store._gate import Gate


async def test_priority_waiters_go_first_and_each_lane_keeps_its_order() -> None:
    gate = Gate(1)
    order: list[str] = []
    release = asyncio.Event()

    async def holder() -> None:
        async with gate.held():
            await release.wait()

    async def waiter(name: str, priority: bool) -> None:
        async with gate.held(priority=priority):
            order.append(name)

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    tasks = [
        asyncio.create_task(waiter(name, priority))
        for name, priority in (("n1", False), ("p1", True), ("n2", False), ("p2", True))
    ]
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(first, *tasks)
    assert order == ["p1", "p2", "n1", "n2"]


async def test_capacity_and_a_cancelled_waiter_passes_its_turn_on() -> None:
    gate = Gate(2)
    inside = 0
    peak = 0
    release = asyncio.Event()

    async def user() -> None:
        nonlocal inside, peak
        async with gate.held():
            inside += 1
            peak = max(peak, inside)
            await release.wait()
            inside -= 1

    users = [asyncio.create_task(user()) for _ in range(5)]
    await asyncio.sleep(0.01)
    assert peak == 2
    users[3].cancel()  # waiting: leaves the queue without taking a place
    release.set()
    results = await asyncio.gather(*users, return_exceptions=True)
    assert sum(isinstance(r, asyncio.CancelledError) for r in results) == 1
    assert peak == 2
    async with gate.held():  # every place was given back
        pass
