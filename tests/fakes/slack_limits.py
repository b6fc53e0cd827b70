"""Slack's Web API rate limits for the fake: token buckets per workspace (token) and method.

Slack publishes per-method tiers (requests per minute, "bursts tolerated"); a bucket holds a
minute's worth unless a test sets a smaller ``burst``, and refills continuously on the fake
clock. ``chat.postMessage`` is limited per channel (about one a second, short bursts). Off
until ``FakeSlack.enforce_rate_limits``; over the limit a call answers HTTP 429 with
``Retry-After`` (whole seconds) and ``{"ok": false, "error": "ratelimited"}``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RateLimit:
    per_minute: float
    burst: float | None = None  # bucket capacity; None: a minute's worth
    per_channel: bool = False  # one bucket per channel (chat.postMessage)

    @property
    def capacity(self) -> float:
        return self.per_minute if self.burst is None else self.burst


TIER_1 = RateLimit(1)
TIER_2 = RateLimit(20)
TIER_3 = RateLimit(50)
TIER_4 = RateLimit(100)

DEFAULT_LIMITS: dict[str, RateLimit] = {
    "chat.startStream": TIER_2,
    "chat.stopStream": TIER_2,
    "chat.appendStream": TIER_4,
    "chat.update": TIER_3,
    "chat.delete": TIER_3,
    "chat.postMessage": RateLimit(60, burst=5, per_channel=True),
    "chat.postEphemeral": TIER_4,
    "chat.getPermalink": TIER_4,
    "conversations.replies": TIER_3,
    "conversations.history": TIER_3,
    "conversations.info": TIER_3,
    "conversations.join": TIER_3,
    "conversations.open": TIER_3,
    "reactions.add": TIER_3,
    "reactions.remove": TIER_2,
    "users.info": TIER_4,
    "views.open": TIER_4,
    "views.push": TIER_4,
    "views.update": TIER_4,
    "views.publish": TIER_4,
    "files.info": TIER_4,
    "files.getUploadURLExternal": TIER_4,
    "files.completeUploadExternal": TIER_4,
    "assistant.threads.setStatus": RateLimit(600),
    "assistant.threads.setTitle": TIER_3,
    "assistant.threads.setSuggestedPrompts": TIER_3,
}


@dataclass
class _Bucket:
    tokens: float
    updated_at: float


class RateLimiter:
    """Admits or refuses calls; ``limits`` maps method -> ``RateLimit`` (others unlimited)."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self.enabled = False
        self.limits: dict[str, RateLimit] = dict(DEFAULT_LIMITS)
        self._buckets: dict[tuple[str, ...], _Bucket] = {}

    def enforce(self, overrides: Mapping[str, RateLimit] | None = None) -> None:
        self.enabled = True
        self.limits = {**DEFAULT_LIMITS, **(overrides or {})}
        self._buckets.clear()

    def disable(self) -> None:
        self.enabled = False
        self._buckets.clear()

    def admit(self, token: str | None, method: str, args: Mapping[str, Any]) -> int | None:
        """None if the call may proceed (it takes a token), else the Retry-After seconds."""
        limit = self.limits.get(method) if self.enabled else None
        if limit is None:
            return None
        key: tuple[str, ...] = (token or "", method)
        if limit.per_channel:
            key += (str(args.get("channel") or ""),)
        now = self._now()
        rate = limit.per_minute / 60.0
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(limit.capacity, now)
        bucket.tokens = min(limit.capacity, bucket.tokens + (now - bucket.updated_at) * rate)
        bucket.updated_at = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return None
        return max(1, math.ceil((1 - bucket.tokens) / rate))
