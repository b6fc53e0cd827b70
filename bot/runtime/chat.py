"""The ``chat`` runtime: plain Chat Completions, so any OpenAI-compatible server works
(vLLM, Ollama, llama.cpp's server, LiteLLM, OpenAI itself) through ``OPENAI_BASE_URL``.

Such a server keeps nothing, so the conversation lives in our store (``chat_messages``):
the student's messages, the assistant's (with its tool calls) and the tool results, each
under the run that added it. A run is one model call, named by us (``chatrun_…``); a
conversation is named by us too (``chat_…``) and becomes the thread's remote id.

What a run adds is stored *before* the model is called (the user message, the outputs
that close open calls), and its answer once the stream ends, so a process that stops at
any point can carry on: ``resume`` yields a stored answer, or asks the model again from
the stored history (the core rewrites the answer's message whole, so nothing doubles).
A thread's turns are serialized by the core's lease, so one writer per conversation.

What such a server lacks is switched off: there is no code interpreter (the instructions
say so) and no file store (the bot reads PDFs and text files itself, see
``bot.documents``, and puts their text in the student's message). ``MODEL_STREAMING`` is
ignored: every request streams.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import openai

from bot.documents import DocumentText, read_document
from bot.quiz.schema import assistants_tool
from bot.runtime._chat_history import trim_history
from bot.runtime._chat_messages import (
    answer_of,
    assistant_message,
    awaiting,
    outputs_in_call_order,
    result_of,
    run_taking_outputs,
    unique_call_ids,
    user_message,
    wire_messages,
)
from bot.runtime._openai import retry_delay, translate_errors
from bot.runtime._tool_call_stream import ToolCallAccumulator
from bot.runtime.base import (
    Finished,
    GeneratedFile,
    MissingToolOutputs,
    ModelServiceError,
    RunEvent,
    RunNotAwaitingOutputs,
    RunStream,
    StepKind,
    StepState,
    StepUpdate,
    TextDelta,
    ThreadCreated,
    ToolOutput,
    UserInput,
)
from store.base import ChatRecord, Store, StoreError

log = logging.getLogger(__name__)

NO_CODE = (
    "You cannot run code here: work calculations out yourself, step by step, and never say "
    "that you ran code. Files the student shares reach you as text inside their message; "
    "you cannot see pictures."
)
GONE_FILE = "it is no longer available here"
# A stream whose connection drops before anything was shown is asked again, once.
STREAM_ATTEMPTS = 2
_OPENAI_HOSTS = ("api.openai.com",)


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def document_id(filename: str, content: bytes) -> str:
    """Same file, same id: a re-shared file is read once."""
    digest = hashlib.sha256(filename.encode() + b"\0" + content).hexdigest()
    return f"doc_{digest[:32]}"


class ChatRuntime:
    name = "chat"

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        store: Store,
        *,
        model: str,
        instructions: str,
        tools: Sequence[str],
        history_tokens: int,
        base_url: str | None = None,
    ) -> None:
        self._client = client
        self._store = store
        self.model = model
        self.instructions = f"{instructions}\n\n{NO_CODE}"
        self._tools = tuple(tools)
        self._tool_specs = [assistants_tool()] if "display_quiz" in self._tools else []
        self.history_tokens = history_tokens
        self._base_url = base_url
        # prompt_cache_key helps OpenAI's prompt caching; other servers may refuse unknown
        # fields (vLLM before 0.6.4 answers 400, LiteLLM for some providers), so only there.
        host = urlsplit(base_url).hostname if base_url else "api.openai.com"
        self._send_cache_key = host in _OPENAI_HOSTS
        # Runs being streamed by this process, for ``cancel`` to keep what was said.
        self._live: dict[str, _ChatRun] = {}
        # Answers written whose storing failed (the database was away): the turn resumed in
        # this process stores them then, rather than asking the model anew.
        self._unsaved: dict[str, dict[str, Any]] = {}

    async def start(self) -> None:
        ignored = [t for t in ("code_interpreter", "file_search") if t in self._tools]
        log.info(
            "chat runtime: %s at %s; off here: code interpreter (the assistant is told), "
            "file store (the bot reads PDFs and text files itself), pictures%s",
            self.model,
            self._base_url or "api.openai.com",
            f"; ASSISTANT_TOOLS {', '.join(ignored)} ignored" if ignored else "",
        )

    async def aclose(self) -> None:
        await self._client.close()

    # -- starting ------------------------------------------------------------------------

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
        # The conversation lives in our own store: nothing at a service to find again.
        conversation = thread_id or _new_id("chat")
        records = await self._history(conversation) if thread_id else []
        stored: list[dict[str, Any]] = []
        open_calls = awaiting(records)
        if open_calls is not None:
            given = {o.call_id: o.output for o in pending_outputs}
            stored, missing = outputs_in_call_order(open_calls.call_ids, given)
            if missing:
                raise MissingToolOutputs(f"{conversation}: calls without outputs", missing)
        stored.append(await self._user_message(user_input))
        run_id = _new_id("chatrun")
        await self._append(conversation, run_id, stored)
        return _ChatRun(self, conversation, run_id)

    async def _user_message(self, user_input: UserInput) -> dict[str, Any]:
        documents = []
        for file in user_input.files:
            text = await self._store.get_chat_document(file.file_id)
            documents.append(text or DocumentText(file.filename, None, GONE_FILE).for_model())
        return user_message(user_input.text, documents)

    async def find_submitted(
        self, thread_id: str, run_id: str, outputs: Sequence[ToolOutput]
    ) -> RunStream | None:
        # Outputs go into our own store with the run that uses them: nothing in between.
        return None

    async def find_run(self, thread_id: str, user_input: UserInput) -> RunStream | None:
        records = await self._history(thread_id)
        last = next((r for r in reversed(records) if r.message.get("role") == "user"), None)
        if last is None:
            return None
        wanted = await self._user_message(user_input)
        if last.message.get("content") != wanted["content"]:
            return None
        log.info("run %s already has this message; resuming it", last.run_id)
        return _ChatRun(self, thread_id, last.run_id)

    # -- tool outputs, resuming, ending ----------------------------------------------------

    async def submit_tool_outputs(
        self, thread_id: str, run_id: str, outputs: Sequence[ToolOutput]
    ) -> RunStream:
        records = await self._history(thread_id)
        open_calls = awaiting(records)
        if open_calls is None or open_calls.run_id != run_id:
            started = run_taking_outputs(records, run_id)
            if started is not None:
                # An earlier attempt stored these outputs and stopped before it was recorded.
                return _ChatRun(self, thread_id, started)
            raise RunNotAwaitingOutputs(f"run {run_id} is not waiting for tool outputs")
        given = {o.call_id: o.output for o in outputs}
        stored, missing = outputs_in_call_order(open_calls.call_ids, given)
        if missing:
            log.warning("run %s: no outputs given for %s; sent as errors", run_id, missing)
        next_run = _new_id("chatrun")
        await self._append(thread_id, next_run, stored)
        return _ChatRun(self, thread_id, next_run)

    async def resume(self, thread_id: str, run_id: str, *, cursor: int | None) -> RunStream:
        run = _ChatRun(self, thread_id, run_id)
        # The server kept nothing: an answer not stored yet (nor kept here) is written
        # anew, and may differ.
        run.regenerates = (
            run_id not in self._unsaved
            and answer_of(await self._history(thread_id), run_id) is None
        )
        return run

    async def cancel(self, thread_id: str, run_id: str) -> None:
        """The answer stops here: what was already said joins the history (the student saw
        it); the server stopped generating when the stream was closed."""
        run = self._live.pop(run_id, None)
        if run is None or not run.text:
            return
        try:
            if answer_of(await self._store.chat_messages(thread_id), run_id) is None:
                message = assistant_message(run.text, (), "cancelled")
                await self._store.append_chat_messages(thread_id, run_id, [message])
        except StoreError as exc:
            log.warning("could not keep the stopped answer of %s: %s", run_id, exc)

    # -- files -------------------------------------------------------------------------

    async def upload_file(self, filename: str, content: bytes) -> str:
        """Read the file here (the server has no file store) and keep its text."""
        document = await read_document(filename, content)
        file_id = document_id(filename, content)
        await self._store.put_chat_document(file_id, document.for_model())
        return file_id

    async def download_file(self, file: GeneratedFile) -> bytes:
        raise ModelServiceError("the chat runtime produces no files")

    # -- for runs ----------------------------------------------------------------------

    async def _history(self, conversation: str) -> list[ChatRecord]:
        return await self._store.chat_messages(conversation)

    async def _append(self, conversation: str, run_id: str, messages: list[dict[str, Any]]) -> None:
        await self._store.append_chat_messages(conversation, run_id, messages)

    def request(self, records: Sequence[ChatRecord], conversation: str) -> dict[str, Any]:
        """The body of a model call on the stored conversation, trimmed to the budget."""
        system = {"role": "system", "content": self.instructions}
        trimmed = trim_history([system, *wire_messages(records)], self.history_tokens)
        if trimmed.dropped or trimmed.cut_chars:
            log.info(
                "%s: %d older messages left out, %d characters cut, to fit %d tokens",
                conversation,
                trimmed.dropped,
                trimmed.cut_chars,
                self.history_tokens,
            )
        body: dict[str, Any] = {"model": self.model, "messages": trimmed.messages}
        if self._tool_specs:
            body["tools"] = self._tool_specs
        if self._send_cache_key:
            body["prompt_cache_key"] = conversation
        return body

    async def open_stream(self, body: dict[str, Any]) -> Any:
        # The body goes as extra_body (it wins over the required arguments' stand-ins): the
        # SDK would otherwise walk its TypedDict schemas over the whole history and the
        # tools on every call (about 4 % of the CPU of a turn, bench/load.py --profile).
        return await self._client.chat.completions.create(
            model=body["model"], messages=[], stream=True, extra_body=body
        )

    async def store_answer(self, conversation: str, run_id: str, message: dict[str, Any]) -> None:
        try:
            await self._append(conversation, run_id, [message])
        except StoreError:
            self._unsaved[run_id] = message
            raise
        self._unsaved.pop(run_id, None)


class _ChatRun:
    """One model call on a stored conversation, as ``RunEvent``s.

    Iterating it first looks whether the run has ended (its answer is stored); if not, it
    asks the model with the stored history, streams the answer, stores it, and ends with
    its result."""

    def __init__(self, runtime: ChatRuntime, conversation: str, run_id: str) -> None:
        self._runtime = runtime
        self.thread_id = conversation
        self.run_id = run_id
        self._raw: Any = None
        self._texts: list[str] = []
        self._calls = ToolCallAccumulator(run_id)
        self._finish: str | None = None
        self.regenerates = False

    @property
    def text(self) -> str:
        """What the model has written so far."""
        return "".join(self._texts)

    async def aclose(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            await raw.close()

    async def __aiter__(self) -> AsyncIterator[RunEvent]:
        runtime = self._runtime
        records = await runtime._history(self.thread_id)
        stored = answer_of(records, self.run_id)
        if stored is None and self.run_id in runtime._unsaved:
            stored = runtime._unsaved[self.run_id]
            await runtime.store_answer(self.thread_id, self.run_id, stored)
        if stored is not None:
            yield Finished(result_of(self.run_id, stored))
            return
        _check_latest(records, self.run_id, self.thread_id)
        body = runtime.request(records, self.thread_id)
        used = {str(c.get("id")) for r in records for c in r.message.get("tool_calls") or ()}
        runtime._live[self.run_id] = self
        attempt = 0
        while True:
            attempt += 1
            shown = False
            try:
                async with translate_errors("chat.completions.create"):
                    async for event in self._call(body):
                        shown = True
                        yield event
                break
            except (ModelServiceError, _EndedEarly) as exc:
                cause = exc if isinstance(exc, _EndedEarly) else exc.__cause__
                if shown or attempt >= STREAM_ATTEMPTS or not _dropped(cause):
                    runtime._live.pop(self.run_id, None)
                    if isinstance(exc, _EndedEarly):
                        raise ModelServiceError(f"{self.run_id}: the answer broke off") from exc
                    raise
                log.warning("the answer of %s broke off before it began; asking again", self.run_id)
                await asyncio.sleep(retry_delay(exc, attempt))
        calls = unique_call_ids(self._calls.calls, used, self.run_id)
        for n in range(len(calls)):
            yield StepUpdate(self._step(n), StepKind.QUIZ, StepState.DONE)
        message = assistant_message(self.text, calls, self._finish)
        await runtime.store_answer(self.thread_id, self.run_id, message)
        runtime._live.pop(self.run_id, None)
        yield Finished(result_of(self.run_id, message))

    def _step(self, n: int) -> str:
        return f"{self.run_id}:call{n}"

    async def _call(self, body: dict[str, Any]) -> AsyncIterator[RunEvent]:
        """One streamed completion: text as it comes, a step per tool call as it starts."""
        self._texts = []
        self._calls = ToolCallAccumulator(self.run_id)
        self._finish = None
        raw = await self._runtime.open_stream(body)
        self._raw = raw
        announced = 0
        try:
            async for chunk in raw:
                for choice in chunk.choices or ():
                    if choice.index != 0:
                        continue
                    delta = choice.delta
                    if delta is not None and delta.content:
                        self._texts.append(delta.content)
                        yield TextDelta(delta.content)
                    if delta is not None and delta.tool_calls:
                        self._calls.feed(delta.tool_calls)
                        while announced < len(self._calls.calls):
                            yield StepUpdate(
                                self._step(announced), StepKind.QUIZ, StepState.WRITING
                            )
                            announced += 1
                    if choice.finish_reason:
                        self._finish = choice.finish_reason
        finally:
            await self.aclose()
        if self._finish is None:
            # Every server ends an answer with a finish reason: without it, the connection
            # was closed early (a proxy, a restart) and the answer is not whole.
            raise _EndedEarly()


class _EndedEarly(Exception):
    """The answer's stream ended without a finish reason."""


def _dropped(exc: BaseException | None) -> bool:
    """The connection broke (a server restarting, a proxy): worth asking again. A timeout
    (a stalled server) or an error event from the server is not."""
    if isinstance(exc, _EndedEarly):
        return True
    return isinstance(exc, openai.APIConnectionError) and not isinstance(
        exc, openai.APITimeoutError
    )


def _check_latest(records: Sequence[ChatRecord], run_id: str, conversation: str) -> None:
    """Only the conversation's latest run can be asked (again): an older one would answer
    a later message under the wrong turn."""
    if not records or records[-1].run_id != run_id:
        raise ModelServiceError(f"run {run_id} is not the latest of {conversation}")
