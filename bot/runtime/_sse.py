"""Server-sent events read off the SDK's HTTP response, as plain dicts.

The openai SDK turns every streamed event into a pydantic model; for a streamed answer
that was a quarter of the bot's CPU per turn (profiled with py-spy). The runtimes only
read a few fields of most events, so they read the raw stream here and wrap the few
objects they map whole (a finished response, a run, a message) in ``Obj``.

Transport failures while reading come out as the SDK's own ``APIConnectionError`` /
``APITimeoutError``, so callers handle a dropped stream the same way as before.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai


async def sse_events(response: Any) -> AsyncIterator[tuple[str | None, Any]]:
    """(event name, decoded data) for each event of ``response`` (an httpx2 response),
    until ``[DONE]`` or the end of the body."""
    event: str | None = None
    data: list[str] = []
    try:
        async for line in response.aiter_lines():
            if not line:
                if data:
                    joined = "\n".join(data)
                    if joined.startswith("[DONE]"):
                        return
                    yield event, json.loads(joined)
                event, data = None, []
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
    except httpx2.TimeoutException as exc:
        raise openai.APITimeoutError(request=response.request) from exc
    except httpx2.RequestError as exc:
        raise openai.APIConnectionError(request=response.request) from exc
    if data:
        joined = "\n".join(data)
        if not joined.startswith("[DONE]"):
            yield event, json.loads(joined)


class Obj:
    """Attribute access over decoded JSON, as the SDK's models give it: a missing field
    reads as None, nested objects and lists are wrapped too."""

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getattr__(self, name: str) -> Any:
        try:
            value = self._data[name]
        except KeyError:
            return None
        return wrap(value)

    def __repr__(self) -> str:
        return f"Obj({self._data!r})"


def wrap(value: Any) -> Any:
    if isinstance(value, dict):
        return Obj(value)
    if isinstance(value, list):
        return [wrap(v) for v in value]
    return value
