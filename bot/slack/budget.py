"""Slack's per-workspace rate limits, as budgets we spend before Slack says no.

Streams are expensive in Slack's tiers (``chat.startStream`` / ``stopStream`` are Tier 2,
~20 a minute per workspace, shared by every stream), so each answer picks how it appears
from what is left: a native stream, an edited message, or one post when it is complete.
Budgets are token buckets holding a minute's worth (Slack tolerates bursts); a 429 empties
a bucket until its ``Retry-After`` has passed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

# Calls per minute per workspace (Slack's tiers; setStatus has its own limit).
DEFAULT_LIMITS: Mapping[str, float] = {
    "chat.startStream": 20,
    "chat.stopStream": 20,
    "chat.appendStream": 100,
    "chat.update": 50,
    "assistant.threads.setStatus": 600,
}


@dataclass(slots=True)
class _Bucket:
    capacity: float
    per_second: float
    tokens: float
    updated: float
    blocked_until: float = 0.0

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now


class SlackBudget:
    """Token buckets per (workspace, method). Methods without a limit are always allowed."""

    def __init__(
        self,
        limits: Mapping[str, float] = DEFAULT_LIMITS,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = dict(limits)
        self._clock = clock
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def _bucket(self, team: str, method: str) -> _Bucket | None:
        per_minute = self._limits.get(method)
        if per_minute is None:
            return None
        key = (team, method)
        bucket = self._buckets.get(key)
        now = self._clock()
        if bucket is None:
            bucket = _Bucket(per_minute, per_minute / 60.0, per_minute, now)
            self._buckets[key] = bucket
        else:
            bucket.refill(now)
        return bucket

    def available(self, team: str, method: str) -> float:
        bucket = self._bucket(team, method)
        if bucket is None:
            return float("inf")
        if bucket.blocked_until > self._clock():
            return 0.0
        return bucket.tokens

    def take(self, team: str, *methods: str) -> bool:
        """Spend one call of each method, all or none."""
        if any(self.available(team, m) < 1 for m in methods):
            return False
        for method in methods:
            bucket = self._bucket(team, method)
            if bucket is not None:
                bucket.tokens -= 1
        return True

    def refund(self, team: str, method: str) -> None:
        """A call that was budgeted but not made."""
        bucket = self._bucket(team, method)
        if bucket is not None:
            bucket.tokens = min(bucket.capacity, bucket.tokens + 1)

    def rate_limited(self, team: str, method: str, retry_after: float) -> None:
        """Slack answered 429: nothing more of this method until ``retry_after`` passed."""
        bucket = self._bucket(team, method)
        if bucket is not None:
            bucket.tokens = 0.0
            bucket.blocked_until = self._clock() + retry_after
