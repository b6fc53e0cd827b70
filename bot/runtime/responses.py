"""The default runtime: OpenAI Conversations + Responses, streamed.

thread -> conversation, run -> response, requires_action -> ``function_call`` output items
answered by ``function_call_output`` input items in the next response on the conversation.

Responses run in the background and are streamed (``stream=True, background=True``): a
dropped stream, or a process that restarts mid-answer, resumes with ``retrieve(id,
stream=True, starting_after=N)`` and misses or repeats nothing. A server that cannot
stream (``MODEL_STREAMING=auto`` finds out at the first refusal) is polled instead.

Creates are never retried blindly: the SDK has no idempotency keys, so a create whose
answer was lost may have gone through. Before trying again we look at the conversation's
newest items; if our input is there, its answer is read back from the conversation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import openai

from bot.quiz.schema import responses_tool
from bot.runtime._openai import poll_until, retry_delay, translate_errors
from bot.runtime._responses_items import (
    input_items,
    output_item,
    result_from_output,
    result_from_response,
)
from bot.runtime._sse import sse_events, wrap
from bot.runtime.base import (
    Finished,
    GeneratedFile,
    ModelServiceError,
    RunEvent,
    RunStream,
    RunStuck,
    StepKind,
    StepState,
    StepUpdate,
    TextDelta,
    ThreadCreated,
    ToolOutput,
    UserInput,
)

log = logging.getLogger(__name__)

_ACTIVE = ("queued", "in_progress")
_INCLUDE = ["code_interpreter_call.outputs"]
LOCKED_WAIT_LIMIT = 60.0
CREATE_ATTEMPTS = 3
RESUME_ATTEMPTS = 6
# A background response whose stream dropped at its first event can stay queued for good
# (a known service bug): past this, it is cancelled and the student told.
QUEUED_LIMIT = 20.0
_QUEUED_LOOK_EVERY = 2.0
RECOVER_POLL = 1.0
_STEP_KINDS = {
    "code_interpreter_call": (StepKind.CODE, StepState.WRITING),
    "file_search_call": (StepKind.FILE_SEARCH, StepState.RUNNING),
    "function_call": (StepKind.QUIZ, StepState.WRITING),
}


class _Dropped(Exception):
    """The event stream ended before the response did."""


class ResponsesRuntime:
    name = "responses"

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        *,
        model: str,
        instructions: str,
        tools: Sequence[str],
        streaming: bool | None = None,
        queued_limit: float = QUEUED_LIMIT,
    ) -> None:
        self._client = client
        # Creates are retried by us, after looking whether the first try went through.
        self._once = client.with_options(max_retries=0)
        self.model = model
        self._instructions = instructions
        self._tools = tuple(tools)
        # None: stream unless the server refuses; then poll for the rest of the process.
        self.streaming = streaming
        self.queued_limit = queued_limit
        self._plain_tools = self._tool_specs(())

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        await self._client.close()

    def _tool_specs(self, code_files: Sequence[str]) -> list[dict[str, Any]]:
        specs: list[dict[str, Any]] = []
        if "code_interpreter" in self._tools:
            container: dict[str, Any] = {"type": "auto"}
            if code_files:
                container["file_ids"] = list(code_files)
            specs.append({"type": "code_interpreter", "container": container})
        if "display_quiz" in self._tools:
            specs.append(responses_tool())
        return specs

    # -- starting --------------------------------------------------------------------------

    async def start_run(
        self,
        thread_id: str | None,
        user_input: UserInput,
        *,
        metadata: dict[str, str],
        pending_run_id: str | None = None,
        pending_outputs: Sequence[ToolOutput] = (),
        on_thread_created: ThreadCreated | None = None,
    ) -> RunStream:
        conversation = thread_id
        if conversation is None:
            async with translate_errors("conversations.create"):
                created = await self._client.conversations.create(extra_body={"metadata": metadata})
            conversation = created.id
            if on_thread_created is not None:
                await on_thread_created(conversation)
        items, code_files = input_items(
            user_input, pending_outputs, code_interpreter="code_interpreter" in self._tools
        )
        return await self._create(conversation, items, code_files)

    async def submit_tool_outputs(
        self, thread_id: str, run_id: str, outputs: Sequence[ToolOutput]
    ) -> RunStream:
        # Function calls on a conversation never expire: the outputs start the next response.
        return await self._create(thread_id, [output_item(o) for o in outputs], ())

    async def _create(
        self, conversation: str, items: list[dict[str, Any]], code_files: Sequence[str]
    ) -> RunStream:
        tools = self._tool_specs(code_files) if code_files else self._plain_tools
        body = {"tools": tools, "input": items}
        waited = 0.0
        attempt = 0
        while True:
            attempt += 1
            streamed = self.streaming is not False
            try:
                return await self._create_once(conversation, body)
            except openai.BadRequestError as exc:
                if _code(exc) == "conversation_locked" and waited < LOCKED_WAIT_LIMIT:
                    # An earlier create went through after all (its answer was lost) and
                    # is still running: a conversation gets a response's input only when
                    # it completes. Wait for it, bounded, and look before trying again.
                    log.warning("conversation %s is busy; looking again in 2 s", conversation)
                    await asyncio.sleep(2.0)
                    waited += 2.0
                    attempt -= 1
                    if (found := await self._recovered(conversation, items, exc)) is not None:
                        return found
                    continue
                if streamed and self.streaming is not True and _refuses_streaming(exc):
                    log.warning("the model service does not stream; polling from now on")
                    self.streaming = False
                    attempt -= 1
                    continue
                async with translate_errors("responses.create", thread_id=conversation):
                    raise
            except openai.RateLimitError as exc:
                if attempt >= CREATE_ATTEMPTS:
                    async with translate_errors("responses.create", thread_id=conversation):
                        raise
                await asyncio.sleep(retry_delay(exc, attempt))
            except (openai.APIConnectionError, openai.InternalServerError, _Dropped) as exc:
                # The create may have gone through. Its input reaches the conversation
                # when it completes, so look after the pause, just before trying again
                # (a try while it still runs is refused as conversation_locked, above).
                if attempt >= CREATE_ATTEMPTS:
                    if (found := await self._recovered(conversation, items, exc)) is not None:
                        return found
                    if isinstance(exc, _Dropped):
                        raise ModelServiceError("responses.create: stream ended early") from exc
                    async with translate_errors("responses.create", thread_id=conversation):
                        raise
                await asyncio.sleep(retry_delay(exc, attempt))
                if (found := await self._recovered(conversation, items, exc)) is not None:
                    return found
            except openai.APIStatusError:
                async with translate_errors("responses.create", thread_id=conversation):
                    raise

    async def _create_once(self, conversation: str, body: dict[str, Any]) -> RunStream:
        # Everything goes as extra_body: the SDK would otherwise walk its TypedDict schemas
        # over the (static) tools and every parameter on each call (7% of the CPU per turn).
        payload = {
            "model": self.model,
            "instructions": self._instructions,
            "conversation": conversation,
            "background": True,
            "store": True,
            "include": _INCLUDE,
            **body,
        }
        if self.streaming is False:
            response = await self._once.responses.create(extra_body=payload)
            return _PolledResponse(self, conversation, response.id)
        raw = await self._once.responses.create(stream=True, extra_body=payload)
        stream = _ResponseStream(self, conversation, "", raw=raw)
        await stream.begin()
        return stream

    async def _recovered(
        self, conversation: str, items: list[dict[str, Any]], exc: BaseException
    ) -> RunStream | None:
        """The answer to our input read back from the conversation, if the input is there."""
        landed = await self._find_landed_input(conversation, items)
        if landed is None:
            return None
        log.warning(
            "responses.create failed (%s) but its input reached %s; reading the answer from "
            "the conversation",
            type(exc).__name__,
            conversation,
        )
        return _RecoveredResponse(self, conversation, landed)

    async def _find_landed_input(
        self, conversation: str, items: list[dict[str, Any]]
    ) -> str | None:
        """The id of our input's last item if the conversation already has it, else None:
        our user message, or (tool outputs alone) our last function call output."""
        wanted = _user_text(items)
        call = _last_output_call(items) if not wanted else None
        try:
            async with translate_errors("conversations.items.list"):
                page = await self._client.conversations.items.list(
                    conversation, order="desc", limit=10
                )
        except ModelServiceError:
            return None
        for item in page.data:
            if call is not None:
                if getattr(item, "type", None) == "function_call_output":
                    return str(item.id) if getattr(item, "call_id", None) == call else None
                continue
            if getattr(item, "type", None) == "message" and getattr(item, "role", "") == "user":
                text = "".join(
                    getattr(part, "text", "") or ""
                    for part in getattr(item, "content", None) or []
                    if getattr(part, "type", None) == "input_text"
                )
                return str(item.id) if text == wanted else None
        return None

    async def find_run(self, thread_id: str, user_input: UserInput) -> RunStream | None:
        items, _ = input_items(user_input, (), code_interpreter=False)
        landed = await self._find_landed_input(thread_id, items)
        return _RecoveredResponse(self, thread_id, landed) if landed is not None else None

    async def find_submitted(
        self, thread_id: str, run_id: str, outputs: Sequence[ToolOutput]
    ) -> RunStream | None:
        landed = await self._find_landed_input(thread_id, [output_item(o) for o in outputs])
        return _RecoveredResponse(self, thread_id, landed) if landed is not None else None

    # -- resuming and ending -------------------------------------------------------------

    async def resume(self, thread_id: str, run_id: str, *, cursor: int | None) -> RunStream:
        if run_id.startswith(_RECOVERED):
            return _RecoveredResponse(self, thread_id, run_id.removeprefix(_RECOVERED))
        if self.streaming is False:
            return _PolledResponse(self, thread_id, run_id)
        stream = _ResponseStream(self, thread_id, run_id, cursor=cursor)
        return stream

    async def cancel(self, thread_id: str, run_id: str) -> None:
        if run_id.startswith(_RECOVERED):
            return
        try:
            async with translate_errors("responses.cancel"):
                await self._client.responses.cancel(run_id)
        except Exception:  # best effort: the response may already have finished
            log.info("could not cancel response %s", run_id)

    async def retrieve(self, run_id: str) -> Any:
        async with translate_errors("responses.retrieve"):
            return await self._client.responses.retrieve(run_id, include=_INCLUDE)  # type: ignore[arg-type]

    async def open_events(self, run_id: str, cursor: int | None) -> Any:
        """The raw event stream of a response, after ``cursor``."""
        extra: dict[str, Any] = {}
        if cursor is not None:
            extra["starting_after"] = cursor
        return await self._client.responses.retrieve(
            run_id,
            stream=True,
            include=_INCLUDE,  # type: ignore[arg-type]
            **extra,
        )

    # -- files -----------------------------------------------------------------------------

    async def upload_file(self, filename: str, content: bytes) -> str:
        # Pictures for input_image are "vision" files; documents and data are "user_data".
        is_image = filename.lower().endswith((".png", ".jpg", ".jpeg", ".gif", ".webp"))
        async with translate_errors("files.create"):
            uploaded = await self._client.files.create(
                file=(filename, content), purpose="vision" if is_image else "user_data"
            )
        return uploaded.id

    async def download_file(self, file: GeneratedFile) -> bytes:
        if file.content is not None:
            return file.content
        async with translate_errors("files.content"):
            if file.container_id:
                body = await self._client.containers.files.content.retrieve(
                    file.file_id, container_id=file.container_id
                )
            else:
                body = await self._client.files.content(file.file_id)
        return body.content


_RECOVERED = "conv-item:"


def _code(exc: openai.APIStatusError) -> str | None:
    return getattr(exc, "code", None)


def _refuses_streaming(exc: openai.APIStatusError) -> bool:
    return "stream" in str(exc).lower()


def _last_output_call(items: list[dict[str, Any]]) -> str | None:
    calls = [i.get("call_id") for i in items if i.get("type") == "function_call_output"]
    return str(calls[-1]) if calls and calls[-1] else None


def _user_text(items: list[dict[str, Any]]) -> str:
    for item in reversed(items):
        if item.get("role") == "user":
            return "".join(
                part.get("text", "")
                for part in item.get("content") or []
                if part.get("type") == "input_text"
            )
    return ""


class _ResponseStream:
    """A response's server-sent events as ``RunEvent``s, resumed after drops."""

    def __init__(
        self,
        runtime: ResponsesRuntime,
        conversation: str,
        run_id: str,
        *,
        raw: Any = None,
        cursor: int | None = None,
    ) -> None:
        self._runtime = runtime
        self.thread_id = conversation
        self.run_id = run_id
        self._raw = raw
        self._cursor = cursor
        self._first: dict[str, Any] | None = None
        self._events_iter: AsyncIterator[dict[str, Any]] | None = None
        self._status = "queued"
        self._queued_since = time.monotonic()
        self._messages: dict[str, int] = {}

    async def begin(self) -> None:
        """Read up to the event that names the response (a create's stream)."""
        content_type = str(self._raw.response.headers.get("content-type", ""))
        if not content_type.startswith("text/event-stream"):
            # A server that ignores stream=true answers with the response object.
            body = json.loads(await self._raw.response.aread())
            self.run_id = str(body["id"])
            self._runtime.streaming = False
            log.warning("the model service answered a stream request without streaming")
            self._raw = None
            return
        self._events_iter = self._read(self._raw)
        try:
            self._first = await self._events_iter.__anext__()
        except StopAsyncIteration:
            raise _Dropped() from None
        response = self._first.get("response")
        if not isinstance(response, dict):
            raise ModelServiceError(f"unexpected first event {self._first.get('type')!r}")
        self.run_id = str(response["id"])
        self._status = str(response.get("status") or "queued")

    async def aclose(self) -> None:
        if self._raw is not None:
            await self._raw.close()
            self._raw = None
            self._events_iter = None

    @staticmethod
    async def _read(raw: Any) -> AsyncIterator[dict[str, Any]]:
        async for _, data in sse_events(raw.response):
            if isinstance(data, dict):
                yield data

    async def __aiter__(self) -> AsyncIterator[RunEvent]:
        if self._runtime.streaming is False and self._raw is None and self._first is None:
            async for polled in _PolledResponse(self._runtime, self.thread_id, self.run_id):
                yield polled
            return
        attempts = 0
        while True:
            try:
                if self._raw is None:
                    self._raw = await self._runtime.open_events(self.run_id, self._cursor)
                    self._events_iter = self._read(self._raw)
                async for event in self._events():
                    attempts = 0
                    mapped = self._map(event)
                    if mapped is not None:
                        yield mapped
                        if isinstance(mapped, Finished):
                            return
                raise _Dropped()
            except (openai.APIConnectionError, openai.APITimeoutError, _Dropped) as exc:
                await self.aclose()
                attempts += 1
                finished = await self._look_after_drop(attempts, exc)
                if finished is not None:
                    yield finished
                    return
            except openai.APIStatusError as exc:
                await self.aclose()
                async with translate_errors("responses.stream"):
                    raise exc from None
            except BaseException:
                await self.aclose()
                raise

    async def _events(self) -> AsyncIterator[dict[str, Any]]:
        if self._first is not None:
            first, self._first = self._first, None
            yield first
        iterator = self._events_iter
        assert iterator is not None
        while True:
            if self._status == "queued":
                # Queued responses show nothing; look at them now and then (see QUEUED_LIMIT).
                try:
                    async with asyncio.timeout(_QUEUED_LOOK_EVERY):
                        event = await iterator.__anext__()
                except TimeoutError:
                    await self._check_queued()
                    continue
                except StopAsyncIteration:
                    return
            else:
                try:
                    event = await iterator.__anext__()
                except StopAsyncIteration:
                    return
            yield event

    async def _check_queued(self) -> None:
        if time.monotonic() - self._queued_since < self._runtime.queued_limit:
            return
        response = await self._runtime.retrieve(self.run_id)
        if response.status == "queued":
            log.warning("response %s stuck in queued; cancelling it", self.run_id)
            await self._runtime.cancel(self.thread_id, self.run_id)
            raise RunStuck(f"response {self.run_id} stayed queued")
        self._status = str(response.status)

    async def _look_after_drop(self, attempts: int, exc: BaseException) -> Finished | None:
        """After a drop: the result if the response ended meanwhile; None to reconnect."""
        if attempts > RESUME_ATTEMPTS:
            raise ModelServiceError(f"response {self.run_id}: stream kept dropping") from exc
        log.info("stream of %s dropped after event %s; resuming", self.run_id, self._cursor)
        await asyncio.sleep(min(0.2 * 2 ** (attempts - 1), 5.0))
        if attempts > 1 or self._status == "queued":
            response = await self._runtime.retrieve(self.run_id)
            self._status = str(response.status)
            if response.status not in _ACTIVE:
                return Finished(result_from_response(response))
            if response.status == "queued":
                await self._check_queued()
        return None

    def _map(self, event: dict[str, Any]) -> RunEvent | None:
        kind = event.get("type")
        sequence = event.get("sequence_number")
        if sequence is not None:
            self._cursor = sequence
        if kind == "response.output_text.delta":
            message = self._messages.get(event.get("item_id", ""), 0)
            return TextDelta(event.get("delta") or "", message=message, cursor=sequence)
        if kind in ("response.created", "response.queued", "response.in_progress"):
            self._status = str((event.get("response") or {}).get("status") or self._status)
            if self._status != "queued":
                self._queued_since = time.monotonic()
            return None
        if self._status == "queued":
            self._status = "in_progress"
        if kind == "response.output_item.added":
            item = event.get("item") or {}
            if item.get("type") == "message":
                self._messages.setdefault(item.get("id", ""), len(self._messages))
                return None
            step = _STEP_KINDS.get(item.get("type", ""))
            if step is not None:
                return StepUpdate(item.get("id", ""), step[0], step[1], cursor=sequence)
            return None
        if kind == "response.code_interpreter_call.interpreting":
            item_id = event.get("item_id", "")
            return StepUpdate(item_id, StepKind.CODE, StepState.RUNNING, cursor=sequence)
        if kind == "response.output_item.done":
            item = event.get("item") or {}
            step = _STEP_KINDS.get(item.get("type", ""))
            if step is None:
                return None
            ok = item.get("status") in (None, "completed", "interpreting")
            state = StepState.DONE if ok else StepState.FAILED
            return StepUpdate(item.get("id", ""), step[0], state, cursor=sequence)
        if kind in ("response.completed", "response.failed", "response.incomplete"):
            return Finished(result_from_response(wrap(event.get("response") or {})))
        if kind == "error":
            raise ModelServiceError(f"response stream error: {event.get('code')}")
        return None


class _PolledResponse:
    """A response awaited by polling (a server that cannot stream)."""

    def __init__(self, runtime: ResponsesRuntime, conversation: str, run_id: str) -> None:
        self._runtime = runtime
        self.thread_id = conversation
        self.run_id = run_id

    async def aclose(self) -> None:
        return None

    async def __aiter__(self) -> AsyncIterator[RunEvent]:
        shown: dict[str, StepState] = {}
        updates: list[StepUpdate] = []

        async def steps(response: Any) -> None:
            for item in response.output or []:
                step = _STEP_KINDS.get(getattr(item, "type", ""))
                if step is not None and shown.get(item.id) is None:
                    shown[item.id] = step[1]
                    updates.append(StepUpdate(item.id, step[0], step[1]))

        queued_since = time.monotonic()

        def done(response: Any) -> bool:
            if response.status == "queued":
                return time.monotonic() - queued_since > self._runtime.queued_limit
            return response.status not in _ACTIVE

        while True:
            response = await poll_until(
                lambda: self._runtime.retrieve(self.run_id), done, timeout=5.0, on_each=steps
            )
            for update in updates:
                yield update
            updates.clear()
            if response is None:
                continue
            if response.status == "queued":
                await self._runtime.cancel(self.thread_id, self.run_id)
                raise RunStuck(f"response {self.run_id} stayed queued")
            for item_id, state in shown.items():
                if state is not StepState.DONE:
                    kind = next(
                        (
                            _STEP_KINDS[i.type][0]
                            for i in response.output or []
                            if i.id == item_id and i.type in _STEP_KINDS
                        ),
                        StepKind.CODE,
                    )
                    yield StepUpdate(item_id, kind, StepState.DONE)
            yield Finished(result_from_response(response))
            return


class _RecoveredResponse:
    """The answer to an input that reached the conversation although its create failed.

    The response's id was lost with the create's answer; its output items appear in the
    conversation after our message when it completes.
    """

    def __init__(self, runtime: ResponsesRuntime, conversation: str, user_item: str) -> None:
        self._runtime = runtime
        self.thread_id = conversation
        self._user_item = user_item
        self.run_id = _RECOVERED + user_item

    async def aclose(self) -> None:
        return None

    async def __aiter__(self) -> AsyncIterator[RunEvent]:
        client = self._runtime._client
        while True:
            async with translate_errors("conversations.items.list", thread_id=self.thread_id):
                page = await client.conversations.items.list(
                    self.thread_id, after=self._user_item, order="asc", limit=100
                )
            output = [i for i in page.data if getattr(i, "role", "assistant") != "user"]
            if output and all(
                getattr(i, "status", "completed") in (None, "completed") for i in output
            ):
                status = "completed"
                yield Finished(result_from_output(self.run_id, status, output))
                return
            await asyncio.sleep(RECOVER_POLL)
