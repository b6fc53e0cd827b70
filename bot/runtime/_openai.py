"""What both OpenAI-protocol runtimes share: the client, error translation, polling."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import openai

from bot.runtime.base import (
    MissingToolOutputs,
    ModelServiceError,
    RemoteThreadGone,
    RuntimeError_,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# The SDK retries connection errors, timeouts, 408/409/429/5xx with backoff (honouring
# retry-after); three tries bound a turn's wait on a flaky service to well under a minute.
MAX_RETRIES = 3
REQUEST_TIMEOUT = 60.0


def make_client(api_key: str, base_url: str | None) -> openai.AsyncOpenAI:
    """The SDK client, over aiohttp (already ours for Slack): a quarter less CPU per turn
    than its default httpx transport in a quick trial."""
    return openai.AsyncOpenAI(
        api_key=api_key,
        base_url=base_url,
        max_retries=MAX_RETRIES,
        timeout=REQUEST_TIMEOUT,
        http_client=openai.DefaultAioHttpClient(timeout=REQUEST_TIMEOUT),
    )


def retry_delay(exc: BaseException, attempt: int) -> float:
    """Seconds before trying a request again: the service's retry-after, else backoff."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    raw = headers.get("retry-after") if hasattr(headers, "get") else None
    try:
        if raw is not None:
            return min(max(float(raw), 0.0), 20.0)
    except ValueError:
        pass
    return min(0.5 * 2 ** (attempt - 1), 8.0)


@asynccontextmanager
async def translate_errors(what: str, *, thread_id: str | None = None) -> AsyncIterator[None]:
    """Turn SDK exceptions into the runtime's small hierarchy, logging the details."""
    try:
        yield
    except RuntimeError_:
        raise
    except openai.NotFoundError as exc:
        log.warning("%s: not found (%s)", what, _short(exc))
        if thread_id is not None:
            raise RemoteThreadGone(f"{what}: {thread_id} not found") from exc
        raise ModelServiceError(f"{what}: not found") from exc
    except openai.RateLimitError as exc:
        log.warning("%s: rate limited after retries (%s)", what, _short(exc))
        err = ModelServiceError(f"{what}: rate limited")
        err.user_message = "The model service is busy right now. Please try again in a minute."
        raise err from exc
    except openai.APIStatusError as exc:
        log.warning("%s: HTTP %s (%s)", what, exc.status_code, _short(exc))
        missing = _MISSING_OUTPUT.findall(str(exc)) if exc.status_code == 400 else []
        if missing:
            raise MissingToolOutputs(f"{what}: tool outputs missing", missing) from exc
        raise ModelServiceError(f"{what}: HTTP {exc.status_code}") from exc
    except (openai.APIConnectionError, openai.APITimeoutError) as exc:
        log.warning("%s: connection failed (%s)", what, type(exc).__name__)
        raise ModelServiceError(f"{what}: connection failed") from exc
    except openai.OpenAIError as exc:
        log.warning("%s: %s", what, _short(exc))
        raise ModelServiceError(f"{what}: {type(exc).__name__}") from exc


# "No tool output found for function call call_abc." (Responses, for every open call)
_MISSING_OUTPUT = re.compile(r"No tool output found for function call ([A-Za-z0-9_\-]+)")


def _short(exc: Exception) -> str:
    return str(exc).replace("\n", " ")[:300]


async def poll_until(
    fetch: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    timeout: float,
    on_each: Callable[[T], Awaitable[None]] | None = None,
    first_delay: float = 0.1,
    max_delay: float = 1.5,
) -> T | None:
    """Poll ``fetch`` with growing sleeps until ``done``; None when ``timeout`` passes.

    ``asyncio.sleep`` between polls keeps the loop free: many runs are awaited at once.
    """
    deadline = time.monotonic() + timeout
    delay = first_delay
    while True:
        value = await fetch()
        if done(value):
            return value
        if on_each is not None:
            await on_each(value)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 1.5, max_delay)
