"""Server-sent events for the fake OpenAI server: the per-response event log and its writer.

Every response (Responses) and run (Assistants) keeps all its events in an ``EventLog``,
whether or not anyone streams it: a stream is a reader of that log from some position, so a
resumed stream (``starting_after``) replays what it missed and then follows live, and a
dropped connection loses nothing server-side.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fakes.openai_model import REC, ApiError, new_id

if TYPE_CHECKING:
    from tests.fakes.openai_server import FakeOpenAI

DONE = b"event: done\ndata: [DONE]\n\n"


def streaming_unsupported() -> ApiError:
    """What a compatible server without streaming answers to ``stream: true``."""
    return ApiError(
        400,
        "Streaming is not supported by this server: 'stream' must be false.",
        param="stream",
        code="unsupported_parameter",
    )


class EventLog:
    """Append-only events of one response or run; readers wait for more until it closes."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []  # (event name, data), in emission order
        self.closed = False
        self._changed: asyncio.Event | None = None  # made when a reader waits (most never do)

    def append(self, name: str, data: dict) -> None:
        self.events.append((name, data))
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    async def wait_beyond(self, count: int) -> None:
        """Until the log holds more than ``count`` events, or is closed."""
        while len(self.events) <= count and not self.closed:
            if self._changed is None:
                self._changed = asyncio.Event()
            await self._changed.wait()

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None


@dataclass
class StreamDrop:
    """Cut the next matching stream after ``after`` events (a network drop, no clean end)."""

    after: int
    path_contains: str
    count: int


def _encode(name: str, data: dict) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def serve_log(
    fake: FakeOpenAI,
    request: web.Request,
    log: EventLog,
    start: int,
    *,
    ends_at: Callable[[str], bool] | None = None,
    done_marker: bool = False,
    drop_after: int | None = None,
    on_disconnect: Callable[[], None] | None = None,
) -> web.StreamResponse:
    """Write ``log`` from index ``start`` as SSE until it closes (or ``ends_at`` an event).

    ``done_marker`` ends a clean stream with ``data: [DONE]`` (Assistants). A stream cut by
    a drop fault, or whose client went away, calls ``on_disconnect``.
    """
    rec = request[REC]
    resp = web.StreamResponse(
        status=200,
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "x-request-id": new_id("req_", hex_len=32),
        },
    )
    await resp.prepare(request)
    drop = fake.take_stream_drop(request.path) if drop_after is None else drop_after
    position, sent = start, 0
    try:
        while drop is None or sent < drop:
            await log.wait_beyond(position)
            if position >= len(log.events):  # the log closed: nothing more will come
                break
            name, data = log.events[position]
            position += 1
            await resp.write(_encode(name, data))
            rec.sse.append((name, data))
            rec.sse_times.append(time.monotonic())
            sent += 1
            if ends_at is not None and ends_at(name):
                break
        else:  # the drop fault: cut after ``drop`` events, no clean end
            if request.transport is not None:
                request.transport.close()
            if on_disconnect is not None:
                on_disconnect()
            return resp
        if done_marker:
            await resp.write(DONE)
        await resp.write_eof()
    except ConnectionError:  # the client went away (aiohttp raises a ConnectionResetError)
        if on_disconnect is not None:
            on_disconnect()
    return resp


def stream_flag(value: Any) -> bool:
    """``stream`` as a JSON body field or a query string value."""
    if isinstance(value, str):
        return value.lower() in ("true", "1")
    return bool(value)
