"""Scripted model, clock and shared helpers for the fake OpenAI server (see ``openai_server``)."""

from __future__ import annotations

import asyncio
import secrets
import string
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

# --- what the tests script ---------------------------------------------------------------


@dataclass
class FunctionCall:
    name: str
    arguments: str = "{}"  # raw JSON text
    call_id: str | None = None  # generated "call_…" when None


@dataclass
class CodeCall:
    code: str
    logs: str = ""
    image_png: bytes | None = None
    file_name: str | None = None  # a generated non-image file (e.g. "result.csv")
    file_bytes: bytes | None = None
    run_time: float = 0.0  # seconds the code runs (between "interpreting" and "completed")


@dataclass
class Citation:
    file_id: str
    quote: str = ""  # the citation is placed after this text if it occurs, else at the end


@dataclass
class Reply:
    """One model turn. The pace applies whether the client streams or polls: a polled
    response takes as long as a streamed one (the model writes at the same speed).

    ``latency`` is the wait before the model's first output (kept for older tests);
    ``first_token_latency`` overrides it. Text, arguments and code are written in deltas of
    ``chunk_chars`` characters, ``delta_interval`` seconds apart; ``write_time`` instead
    spreads the text's deltas over that many seconds ("the model takes 4 s to write this").
    ``stream_error`` ends the turn half-way through the text with an ``error`` event (that
    code); the response or run is then failed. ``hold`` keeps the model from writing until
    the test sets that event (after the first-token wait): a deterministic "still working".
    """

    text: str | None = None
    function_calls: list[FunctionCall] = field(default_factory=list)
    code: list[CodeCall] = field(default_factory=list)
    citations: list[Citation] = field(default_factory=list)
    latency: float = 0.0
    fail: str | None = None
    status: str | None = None  # "incomplete" | "cancelled" | "expired"
    first_token_latency: float | None = None
    chunk_chars: int = 20
    delta_interval: float = 0.0
    write_time: float | None = None
    stream_error: str | None = None
    hold: asyncio.Event | None = field(default=None, compare=False, repr=False)

    async def wait_to_write(self) -> None:
        """The time from "in progress" to the model's first output."""
        if self.wait_before_output > 0:
            await asyncio.sleep(self.wait_before_output)
        if self.hold is not None:
            await self.hold.wait()

    @property
    def wait_before_output(self) -> float:
        """Seconds from "in progress" to the model's first output."""
        if self.first_token_latency is not None:
            return self.first_token_latency
        return self.latency

    def pieces(self, text: str) -> list[str]:
        """``text`` cut into deltas of ``chunk_chars`` characters (none for empty text)."""
        size = max(1, self.chunk_chars)
        return [text[i : i + size] for i in range(0, len(text), size)]

    def text_interval(self, count: int) -> float:
        """Seconds between two of the ``count`` text deltas."""
        if self.write_time is not None:
            return self.write_time / max(1, count - 1)
        return self.delta_interval


@dataclass
class ModelContext:
    protocol: str  # "responses" | "assistants" | "chat"
    thread_id: str
    instructions: str | None
    model: str | None
    tools: list[dict]
    history: list[dict]
    last_user_text: str | None
    tool_outputs: list[dict]
    files: list[str]


def echo_reply(ctx: ModelContext) -> Reply:
    return Reply(text=f"Echo: {ctx.last_user_text}")


class ScriptedModel:
    """Each model turn (a response, a run start, a tool-output submission) takes one reply.

    ``push`` also accepts callables ``(ModelContext) -> Reply`` for replies that depend on
    what the model saw.
    """

    def __init__(self) -> None:
        self._queue: deque[Reply | Callable[[ModelContext], Reply]] = deque()
        self.default: Callable[[ModelContext], Reply] = echo_reply
        self.calls: list[ModelContext] = []

    def push(self, *replies: Reply | Callable[[ModelContext], Reply]) -> None:
        self._queue.extend(replies)

    @property
    def pending(self) -> int:
        """Scripted replies not consumed yet."""
        return len(self._queue)

    def next_reply(self, ctx: ModelContext) -> Reply:
        self.calls.append(ctx)
        item = self._queue.popleft() if self._queue else self.default
        reply = item if isinstance(item, Reply) else item(ctx)
        if not isinstance(reply, Reply):
            raise TypeError(f"scripted model produced {reply!r}, not a Reply")
        return reply


# --- infrastructure ------------------------------------------------------------------------


class FakeClock:
    """Wall-clock time plus an offset that tests move forward with ``advance``."""

    def __init__(self) -> None:
        self._offset = 0.0

    def now(self) -> float:
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += seconds


@dataclass
class RecordedRequest:
    method: str
    path: str
    json: Any = None
    form: dict | None = None
    time: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, list[str]] = field(default_factory=dict)
    status: int | None = None  # HTTP status the fake answered with
    # Server-sent events written on this request, in order: (event name, data).
    sse: list[tuple[str, Any]] = field(default_factory=list)
    sse_times: list[float] = field(default_factory=list)  # time.monotonic() of each


REC = web.RequestKey("fake_openai_request", RecordedRequest)


class ApiError(Exception):
    """An HTTP error in OpenAI's JSON shape; ``violation`` is recorded on the fake."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        violation: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.violation = violation

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def not_found(message: str) -> ApiError:
    return ApiError(404, message)


_ALNUM = string.ascii_letters + string.digits


def new_id(prefix: str, *, hex_len: int | None = None, alnum_len: int = 24) -> str:
    """Ids shaped like OpenAI's: ``conv_<48 hex>`` or ``thread_<24 alnum>``."""
    if hex_len is not None:
        return prefix + secrets.token_hex(hex_len // 2)
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(alnum_len))


def paginate(
    items: list[dict], query: dict[str, list[str]], *, default_order: str = "desc"
) -> dict:
    """OpenAI cursor list: ``order``/``after``/``before``/``limit`` over items in creation order."""
    order = first(query, "order") or default_order
    ordered = list(items) if order == "asc" else list(reversed(items))
    ids = [it["id"] for it in ordered]
    after, before = first(query, "after"), first(query, "before")
    if after:
        if after not in ids:
            raise ApiError(400, f"Invalid 'after': no object with id '{after}'.", param="after")
        ordered = ordered[ids.index(after) + 1 :]
    if before:
        ids = [it["id"] for it in ordered]
        if before not in ids:
            raise ApiError(400, f"Invalid 'before': no object with id '{before}'.", param="before")
        ordered = ordered[: ids.index(before)]
    try:
        limit = int(first(query, "limit") or 20)
    except ValueError as e:
        raise ApiError(400, "Invalid 'limit'.", param="limit") from e
    if not 1 <= limit <= 100:
        raise ApiError(400, "Invalid 'limit': must be between 1 and 100.", param="limit")
    page = ordered[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(ordered) > limit,
    }


def first(query: dict[str, list[str]], key: str) -> str | None:
    values = query.get(key) or query.get(key + "[]")
    return values[0] if values else None


def all_values(query: dict[str, list[str]], key: str) -> list[str]:
    return [*query.get(key, []), *query.get(key + "[]", [])]


def approx_tokens(text: str) -> int:
    return max(1, len(text) // 4) if text else 0
