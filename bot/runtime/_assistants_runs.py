"""An Assistants v2 run as a stream of ``RunEvent``s: streamed, or polled when it cannot be.

A streamed run (``runs.create(stream=True)``, ``submit_tool_outputs(stream=True)``)
carries everything the result needs: message deltas for the live answer, the completed
messages (with their annotations) and the completed code steps. A polled run (a restart
mid-answer, or a server that cannot stream) reads its messages and steps at the end.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import openai

from bot.runtime._openai import poll_until, translate_errors
from bot.runtime._sse import Obj, sse_events, wrap
from bot.runtime.base import (
    AssistantMessage,
    Citation,
    CodeStep,
    Finished,
    GeneratedFile,
    ModelServiceError,
    RunEvent,
    RunResult,
    RunStatus,
    StepKind,
    StepState,
    StepUpdate,
    TextDelta,
    ToolCall,
)

log = logging.getLogger(__name__)

ACTIVE = ("queued", "in_progress", "cancelling")
WAITING = (*ACTIVE, "requires_action")
STATUS = {
    "completed": RunStatus.COMPLETED,
    "requires_action": RunStatus.REQUIRES_ACTION,
    "failed": RunStatus.FAILED,
    "cancelled": RunStatus.CANCELLED,
    "expired": RunStatus.EXPIRED,
    "incomplete": RunStatus.INCOMPLETE,
}
_TOOL_STEPS = {
    "code_interpreter": (StepKind.CODE, StepState.WRITING),
    "file_search": (StepKind.FILE_SEARCH, StepState.RUNNING),
    "function": (StepKind.QUIZ, StepState.WRITING),
}
_STEP_EVENTS = ("thread.run.step.created", "thread.run.step.completed", "thread.run.step.failed")
_END_EVENTS = {
    "thread.run.completed",
    "thread.run.failed",
    "thread.run.cancelled",
    "thread.run.expired",
    "thread.run.incomplete",
    "thread.run.requires_action",
}


class RunsHost(Protocol):
    """What a run stream needs from its runtime."""

    client: openai.AsyncOpenAI

    async def filename(self, file_id: str) -> str: ...


def result_of_run(run: Any) -> RunResult:
    """Status, tool calls and error of a run object (messages and steps come separately)."""
    result = RunResult(run_id=run.id, status=STATUS.get(run.status, RunStatus.FAILED))
    if run.status == "requires_action" and run.required_action is not None:
        for call in run.required_action.submit_tool_outputs.tool_calls:
            arguments = call.function.arguments or ""
            result.tool_calls.append(
                ToolCall(call_id=call.id, name=call.function.name, arguments=arguments)
            )
    if run.last_error is not None:
        result.error = f"{run.last_error.code}: {run.last_error.message}"
    elif run.incomplete_details is not None:
        result.error = f"incomplete: {run.incomplete_details.reason}"
    return result


def code_step(step: Any) -> CodeStep | None:
    """The code interpreter call of a completed tool step, or None."""
    details = step.step_details
    if getattr(details, "type", None) != "tool_calls":
        return None
    for call in details.tool_calls:
        ci: Any = getattr(call, "code_interpreter", None)
        if getattr(call, "type", None) != "code_interpreter" or ci is None:
            continue
        logs: list[str] = []
        files: list[GeneratedFile] = []
        for out in ci.outputs or []:
            if out.type == "logs" and getattr(out, "logs", None):
                logs.append(out.logs)
            elif out.type == "image" and getattr(out, "image", None) is not None:
                file_id = out.image.file_id
                files.append(GeneratedFile(file_id=file_id, filename=f"{file_id}.png"))
        return CodeStep(code=ci.input or "", logs="\n".join(logs), files=files)
    return None


async def add_message(host: RunsHost, message: Any, result: RunResult) -> None:
    """Add a completed assistant message (text, citations, files) to ``result``."""
    seen = {f.file_id for f in result.files}
    texts: list[str] = []
    citations: list[Citation] = []
    for part in message.content:
        if part.type == "text":
            texts.append(part.text.value)
            for ann in part.text.annotations or []:
                if ann.type == "file_citation":
                    file_id = ann.file_citation.file_id
                    citations.append(
                        Citation(
                            marker=ann.text, filename=await host.filename(file_id), file_id=file_id
                        )
                    )
                elif ann.type == "file_path" and ann.file_path.file_id not in seen:
                    seen.add(ann.file_path.file_id)
                    name = ann.text.rsplit("/", 1)[-1] or ann.file_path.file_id
                    result.files.append(GeneratedFile(file_id=ann.file_path.file_id, filename=name))
        elif part.type == "image_file" and part.image_file.file_id not in seen:
            seen.add(part.image_file.file_id)
            result.files.append(
                GeneratedFile(
                    file_id=part.image_file.file_id, filename=f"{part.image_file.file_id}.png"
                )
            )
    result.messages.append(AssistantMessage(text="\n\n".join(texts), citations=tuple(citations)))


def add_step_files(result: RunResult) -> None:
    """Files the code wrote (plots) join the result's files, each once."""
    seen = {f.file_id for f in result.files}
    for step in result.steps:
        for f in step.files:
            if f.file_id not in seen:
                seen.add(f.file_id)
                result.files.append(f)


class _Event:
    """One server-sent event of a run: its name and its data (as SDK-like ``Obj``)."""

    __slots__ = ("data", "event")

    def __init__(self, event: str, data: Obj) -> None:
        self.event = event
        self.data: Any = data


class StreamedRun:
    """A run's server-sent events (the SDK parses them) as ``RunEvent``s."""

    def __init__(self, host: RunsHost, raw: Any, thread_id: str | None) -> None:
        self._host = host
        self._raw = raw
        self.thread_id = thread_id or ""
        self.run_id = ""
        self._first: list[_Event] = []
        self._events_iter: AsyncIterator[_Event] | None = None
        self._messages: dict[str, int] = {}
        self._result: RunResult | None = None
        self._steps: list[CodeStep] = []
        self._completed: list[Any] = []
        self._said: dict[int, str] = {}  # message index -> text yielded so far
        self._kinds: dict[str, str] = {}  # step id -> its tool call type
        self._states: dict[str, StepState] = {}

    async def _read(self) -> AsyncIterator[_Event]:
        async for name, data in sse_events(self._raw.response):
            if name == "error":
                message = data.get("message") if isinstance(data, dict) else data
                raise ModelServiceError(f"run stream error: {message}")
            if name and isinstance(data, dict):
                yield _Event(name, wrap(data))

    async def begin(self) -> None:
        """Read up to the event that names the run (and its thread)."""
        self._events_iter = self._read()
        async for event in self._events_iter:
            self._first.append(event)
            if event.event.startswith("thread.run.") and not event.event.startswith(
                "thread.run.step"
            ):
                self.run_id = event.data.id
                self.thread_id = event.data.thread_id
                return
        raise ModelServiceError("the run's stream ended before the run was created")

    async def aclose(self) -> None:
        await self._raw.close()

    async def __aiter__(self) -> AsyncIterator[RunEvent]:
        try:
            async for mapped in self._events():
                yield mapped
        except (openai.APIConnectionError, openai.APITimeoutError):
            log.info("stream of run %s broke off; polling it", self.run_id)
        except openai.APIError as exc:
            async with translate_errors("runs.stream", thread_id=self.thread_id):
                raise exc from None
        finally:
            await self.aclose()
        if self._result is None:
            # The run goes on server-side: await it by polling, and say what the stream
            # had not said yet.
            async for event in PolledRun(self._host, self.thread_id, self.run_id):
                if isinstance(event, Finished):
                    for delta in self._missing_text(event.result):
                        yield delta
                yield event
            return
        result = self._result
        result.steps = self._steps
        for message in self._completed:
            await add_message(self._host, message, result)
        add_step_files(result)
        yield Finished(result)

    async def _events(self) -> AsyncIterator[RunEvent]:
        for event in self._first:
            mapped = await self._map(event)
            if mapped is not None:
                yield mapped
        self._first.clear()
        if self._result is not None:
            return
        assert self._events_iter is not None
        async for event in self._events_iter:
            mapped = await self._map(event)
            if mapped is not None:
                yield mapped
            if self._result is not None:
                return

    def _missing_text(self, result: RunResult) -> list[TextDelta]:
        """The text of a polled result beyond what the broken stream had yielded."""
        deltas = []
        for index, message in enumerate(result.messages):
            said = self._said.get(index, "")
            if message.text.startswith(said) and len(message.text) > len(said):
                deltas.append(TextDelta(message.text[len(said) :], message=index))
        return deltas

    def _step_kind(self, step_id: str, calls: Any) -> StepKind | None:
        """The kind of a tool step, once a call in it says (creation may list none yet)."""
        if step_id not in self._kinds:
            for call in calls or []:
                if getattr(call, "type", "") in _TOOL_STEPS:
                    self._kinds[step_id] = call.type
                    break
            else:
                return None
        return _TOOL_STEPS[self._kinds[step_id]][0]

    def _step(self, step_id: str, kind: StepKind, state: StepState) -> StepUpdate | None:
        """A step update, only when the step's state changed."""
        if self._states.get(step_id) is state:
            return None
        self._states[step_id] = state
        return StepUpdate(step_id, kind, state)

    async def _map(self, event: _Event) -> RunEvent | None:
        kind = event.event
        data = event.data
        if kind == "thread.message.created":
            if getattr(data, "role", "assistant") == "assistant":
                self._messages.setdefault(data.id, len(self._messages))
            return None
        if kind == "thread.message.delta":
            text = "".join(
                part.text.value or ""
                for part in data.delta.content or []
                if part.type == "text" and part.text is not None
            )
            if not text:
                return None
            index = self._messages.setdefault(data.id, len(self._messages))
            self._said[index] = self._said.get(index, "") + text
            return TextDelta(text, message=index)
        if kind == "thread.message.completed":
            if getattr(data, "role", "assistant") == "assistant":
                self._completed.append(data)
            return None
        if kind in _STEP_EVENTS:
            details = data.step_details
            if getattr(details, "type", None) != "tool_calls":
                return None
            step = self._step_kind(data.id, details.tool_calls)
            if step is None:
                return None
            if kind == "thread.run.step.completed":
                found = code_step(data)
                if found is not None:
                    self._steps.append(found)
                return self._step(data.id, step, StepState.DONE)
            if kind == "thread.run.step.failed":
                return self._step(data.id, step, StepState.FAILED)
            return self._step(data.id, step, _TOOL_STEPS[self._kinds[data.id]][1])
        if kind == "thread.run.step.delta":
            calls = getattr(data.delta.step_details, "tool_calls", None) or []
            step = self._step_kind(data.id, calls)
            if step is None:
                return None
            state = _TOOL_STEPS[self._kinds[data.id]][1]
            for call in calls:
                outputs = getattr(getattr(call, "code_interpreter", None), "outputs", None)
                if outputs:
                    state = StepState.RUNNING
            return self._step(data.id, step, state)
        if kind in _END_EVENTS:
            self._result = result_of_run(data)
            return None
        if kind == "error":
            raise ModelServiceError(f"run stream error: {getattr(data, 'message', data)}")
        return None


class PolledRun:
    """A run awaited by polling; its messages and code steps are read at the end.

    ``returned`` remembers, per run, which messages and steps were already handed out (a
    run continued after tool outputs lists its earlier ones again).
    """

    def __init__(
        self,
        host: RunsHost,
        thread_id: str,
        run_id: str,
        *,
        returned: dict[str, set[str]] | None = None,
        timeout: float = 3600.0,
    ) -> None:
        self._host = host
        self.thread_id = thread_id
        self.run_id = run_id
        self._returned = returned if returned is not None else {}
        self._timeout = timeout

    async def aclose(self) -> None:
        return None

    async def __aiter__(self) -> AsyncIterator[RunEvent]:
        run = await wait_for_run(self._host, self.thread_id, self.run_id, timeout=self._timeout)
        if run is None:
            raise ModelServiceError(f"run {self.run_id} did not finish")
        result = result_of_run(run)
        returned = self._returned.setdefault(self.run_id, set())
        await self._collect_steps(result, returned)
        await self._collect_messages(result, returned)
        if result.status is not RunStatus.REQUIRES_ACTION:
            self._returned.pop(self.run_id, None)
        yield Finished(result)

    async def _collect_steps(self, result: RunResult, returned: set[str]) -> None:
        """Best effort: the answer matters more than the work view."""
        client = self._host.client
        try:
            async with translate_errors("threads.runs.steps.list"):
                page = await client.beta.threads.runs.steps.list(
                    self.run_id, thread_id=self.thread_id, order="asc", limit=100
                )
        except ModelServiceError:
            return
        for step in page.data:
            if step.status != "completed" or step.id in returned:
                continue
            found = code_step(step)
            if found is not None:
                returned.add(step.id)
                result.steps.append(found)

    async def _collect_messages(self, result: RunResult, returned: set[str]) -> None:
        client = self._host.client
        async with translate_errors("threads.messages.list"):
            page = await client.beta.threads.messages.list(
                self.thread_id, run_id=self.run_id, order="asc", limit=100
            )
        add_step_files(result)
        for message in page.data:
            if message.role != "assistant" or message.id in returned:
                continue
            returned.add(message.id)
            await add_message(self._host, message, result)


async def wait_for_run(
    host: RunsHost,
    thread_id: str,
    run_id: str,
    *,
    timeout: float,
    stop_on_action: bool = True,
    on_each: Callable[[Any], Awaitable[None]] | None = None,
) -> Any:
    """Poll a run until it leaves the active states (None when ``timeout`` passes)."""
    waiting = ACTIVE if stop_on_action else WAITING

    async def fetch() -> Any:
        async with translate_errors("threads.runs.retrieve", thread_id=thread_id):
            return await host.client.beta.threads.runs.retrieve(run_id, thread_id=thread_id)

    return await poll_until(
        fetch, lambda r: r.status not in waiting, timeout=timeout, on_each=on_each
    )
