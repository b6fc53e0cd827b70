"""The Assistants v2 protocol runtime, for servers that still speak it and for migrations.

The assistant is created once (name, instructions, model, tools) and its id remembered in
the store, unless ``OPENAI_ASSISTANT_ID`` names one. Threads, messages and runs map 1:1 onto
the domain; only the assistant messages of the awaited run are returned.

A turn is one request, ``runs.create`` with the message in ``additional_messages``,
streamed (see ``_assistants_runs``); a new thread is created first. Creates are not retried
blindly (no idempotency keys): after a failure that may have gone through, the thread's
newest message tells whether the run exists.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import warnings
from collections.abc import Sequence
from typing import Any

import openai

from bot.quiz.schema import assistants_tool
from bot.runtime._assistants_runs import WAITING, PolledRun, StreamedRun, wait_for_run
from bot.runtime._openai import retry_delay, translate_errors
from bot.runtime.base import (
    GeneratedFile,
    InputFile,
    ModelServiceError,
    RunNotAwaitingOutputs,
    RunStream,
    ThreadCreated,
    ToolOutput,
    UserInput,
)
from store.base import Store

log = logging.getLogger(__name__)

# openai 3.x marks every beta.threads call deprecated; we use this protocol on purpose.
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"openai\..*")
warnings.filterwarnings("ignore", message=r".*Assistants API is deprecated.*")

ASSISTANT_NAME = "Math Tutor"
CREATE_ATTEMPTS = 3
# Extensions file_search can index (OpenAI's list); anything else needs the code interpreter.
FILE_SEARCH_EXTENSIONS = frozenset(
    "c cpp cs css doc docx go html java js json md pdf php pptx py rb sh tex ts txt".split()
)
UNREADABLE_FILES = (
    "\n\n(The student also shared {names}, but none of the enabled tools can open that "
    "kind of file here; say so.)"
)
_SETTING_ID = "assistants.assistant_id"
_SETTING_FINGERPRINT = "assistants.fingerprint"


def attachment_tool(file: InputFile, tools: Sequence[str]) -> str | None:
    """The tool a message attachment goes to: the file's preferred one if enabled and able."""
    ext = file.filename.rsplit(".", 1)[-1].lower() if "." in file.filename else ""
    for tool in (file.use, "code_interpreter", "file_search"):
        if tool not in tools:
            continue
        if tool == "code_interpreter" or (tool == "file_search" and ext in FILE_SEARCH_EXTENSIONS):
            return tool
    return None


class AssistantsRuntime:
    name = "assistants"

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        store: Store,
        *,
        model: str,
        instructions: str,
        tools: Sequence[str],
        assistant_id: str | None = None,
        streaming: bool | None = None,
    ) -> None:
        self.client = client
        self._once = client.with_options(max_retries=0)
        self._store = store
        self.model = model
        self._instructions = instructions
        self._tools = tuple(tools)
        self._configured_id = assistant_id
        self.assistant_id: str | None = assistant_id
        self.streaming = streaming
        self._filenames: dict[str, str] = {}
        # Polled runs continued after tool outputs list their earlier messages again; each
        # is handed out once per run. In memory: after a restart, a pre-quiz line may repeat.
        self._returned: dict[str, set[str]] = {}

    def _tool_specs(self) -> list[dict[str, Any]]:
        specs: list[dict[str, Any]] = []
        if "code_interpreter" in self._tools:
            specs.append({"type": "code_interpreter"})
        if "file_search" in self._tools:
            specs.append({"type": "file_search"})
        if "display_quiz" in self._tools:
            specs.append(assistants_tool())
        return specs

    async def start(self) -> None:
        """Create the assistant once and remember it; update it when the config changed."""
        if self._configured_id is not None:
            return
        spec = {
            "name": ASSISTANT_NAME,
            "instructions": self._instructions,
            "model": self.model,
            "tools": self._tool_specs(),
        }
        fingerprint = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
        known = await self._store.get_setting(_SETTING_ID)
        if known is not None:
            self.assistant_id = known
            if await self._store.get_setting(_SETTING_FINGERPRINT) != fingerprint:
                async with translate_errors("assistants.update"):
                    await self.client.beta.assistants.update(known, **spec)  # type: ignore[arg-type]
                await self._store.set_setting(_SETTING_FINGERPRINT, fingerprint)
            return
        async with translate_errors("assistants.create"):
            assistant = await self.client.beta.assistants.create(**spec)  # type: ignore[arg-type]
        self.assistant_id = assistant.id
        await self._store.set_setting(_SETTING_ID, assistant.id)
        await self._store.set_setting(_SETTING_FINGERPRINT, fingerprint)
        log.info("created assistant %s", assistant.id)

    async def aclose(self) -> None:
        await self.client.close()

    def _require_assistant(self) -> str:
        if self.assistant_id is None:
            raise RuntimeError("AssistantsRuntime.start() was not awaited")
        return self.assistant_id

    # -- starting --------------------------------------------------------------------------

    def _message(self, user_input: UserInput) -> dict[str, Any]:
        text = user_input.text
        content: list[dict[str, Any]] = []
        attachments: list[dict[str, Any]] = []
        unreadable: list[str] = []
        for f in user_input.files:
            if f.use == "image":
                content.append({"type": "image_file", "image_file": {"file_id": f.file_id}})
                continue
            tool = attachment_tool(f, self._tools)
            if tool is None:
                unreadable.append(f.filename)
            else:
                attachments.append({"file_id": f.file_id, "tools": [{"type": tool}]})
        if unreadable:
            # Tell the model, so the student hears why the file is not part of the answer.
            text += UNREADABLE_FILES.format(names=", ".join(unreadable))
        content.insert(0, {"type": "text", "text": text})
        message: dict[str, Any] = {"role": "user", "content": content}
        if attachments:
            message["attachments"] = attachments
        return message

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
        if thread_id is not None and pending_run_id is not None and pending_outputs:
            await self._close_pending_run(thread_id, pending_run_id, pending_outputs)
        if thread_id is None:
            # Created on its own (not with createAndRun) so that a run create that fails in
            # transit can be looked for on a known thread before it is tried again.
            async with translate_errors("threads.create"):
                thread = await self.client.beta.threads.create(metadata=metadata)
            thread_id = thread.id
            if on_thread_created is not None:
                await on_thread_created(thread_id)
        message = self._message(user_input)
        cleared = False
        attempt = 0
        while True:
            attempt += 1
            streamed = self.streaming is not False
            try:
                return await self._create_once(thread_id, message)
            except openai.BadRequestError as exc:
                text = str(exc).lower()
                if "active run" in text and not cleared:
                    # A run left over (a crash, a stopped answer): the thread takes no
                    # message until it ends.
                    await self._cancel_active_runs(thread_id)
                    cleared = True
                    attempt -= 1
                    continue
                if streamed and self.streaming is not True and "stream" in text:
                    log.warning("the model service does not stream; polling from now on")
                    self.streaming = False
                    attempt -= 1
                    continue
                async with translate_errors("threads.runs.create", thread_id=thread_id):
                    raise
            except (openai.APIConnectionError, openai.InternalServerError) as exc:
                landed = await self._run_after_landed_message(thread_id, message)
                if landed is not None:
                    log.warning(
                        "runs.create failed (%s) but the run %s exists; awaiting it",
                        type(exc).__name__,
                        landed,
                    )
                    return self._polled(thread_id, landed)
                if attempt >= CREATE_ATTEMPTS:
                    async with translate_errors("threads.runs.create", thread_id=thread_id):
                        raise
                await asyncio.sleep(retry_delay(exc, attempt))
            except openai.RateLimitError as exc:
                if attempt >= CREATE_ATTEMPTS:
                    async with translate_errors("threads.runs.create", thread_id=thread_id):
                        raise
                await asyncio.sleep(retry_delay(exc, attempt))
            except openai.APIStatusError:
                async with translate_errors("threads.runs.create", thread_id=thread_id):
                    raise

    async def _create_once(self, thread_id: str, message: dict[str, Any]) -> RunStream:
        runs = self._once.beta.threads.runs
        assistant = self._require_assistant()
        if self.streaming is False:
            run = await runs.create(
                thread_id,
                assistant_id=assistant,
                additional_messages=[message],  # type: ignore[list-item]
            )
            return self._polled(thread_id, run.id)
        raw = await runs.create(
            thread_id,
            assistant_id=assistant,
            additional_messages=[message],  # type: ignore[list-item]
            stream=True,
        )
        stream = StreamedRun(self, raw, thread_id)
        await stream.begin()
        return stream

    def _polled(self, thread_id: str, run_id: str) -> RunStream:
        return PolledRun(self, thread_id, run_id, returned=self._returned)

    async def _run_after_landed_message(
        self, thread_id: str, message: dict[str, Any]
    ) -> str | None:
        """The run started for ``message`` if the thread already has it, else None: the
        newest user message is ours (the run may be under way or already answered)."""
        try:
            async with translate_errors("threads.messages.list", thread_id=thread_id):
                page = await self.client.beta.threads.messages.list(
                    thread_id, order="desc", limit=10
                )
        except ModelServiceError:
            return None
        wanted = message["content"][0]["text"]
        for index, item in enumerate(page.data):
            if item.role != "user":
                continue  # the answer to it, newer
            text = "".join(p.text.value for p in item.content if p.type == "text")
            if text != wanted:
                return None
            if item.run_id:
                return str(item.run_id)
            # Added with the run: the answer's messages (newer, listed first) name it.
            for newer in reversed(page.data[:index]):
                if newer.run_id:
                    return str(newer.run_id)
            return await self._active_run(thread_id)
        return None

    async def find_submitted(
        self, thread_id: str, run_id: str, outputs: Sequence[ToolOutput]
    ) -> RunStream | None:
        try:
            async with translate_errors("threads.runs.retrieve", thread_id=thread_id):
                run = await self.client.beta.threads.runs.retrieve(run_id, thread_id=thread_id)
        except ModelServiceError:
            return None
        # Past requires_action without failing: the run took its outputs and went on.
        if run.status in ("queued", "in_progress", "completed", "incomplete"):
            return self._polled(thread_id, run_id)
        return None

    async def find_run(self, thread_id: str, user_input: UserInput) -> RunStream | None:
        landed = await self._run_after_landed_message(thread_id, self._message(user_input))
        return self._polled(thread_id, landed) if landed is not None else None

    async def _active_run(self, thread_id: str) -> str | None:
        async with translate_errors("threads.runs.list", thread_id=thread_id):
            page = await self.client.beta.threads.runs.list(thread_id, limit=1, order="desc")
        return next((r.id for r in page.data if r.status in WAITING), None)

    async def _close_pending_run(
        self, thread_id: str, run_id: str, outputs: Sequence[ToolOutput]
    ) -> None:
        """Answer a run's open calls (the student moved on) and let it finish unposted."""
        try:
            await self._submit(thread_id, run_id, outputs, stream=False)
        except RunNotAwaitingOutputs:
            return
        run = await wait_for_run(self, thread_id, run_id, timeout=120)
        if run is None or run.status in WAITING:
            await self.cancel(thread_id, run_id)

    async def _cancel_active_runs(self, thread_id: str) -> None:
        """Best effort: cancel what keeps the thread busy, and wait until it stopped."""
        try:
            async with translate_errors("threads.runs.list"):
                page = await self.client.beta.threads.runs.list(thread_id, limit=5, order="desc")
        except ModelServiceError:
            return
        for run in page.data:
            if run.status in WAITING:
                log.info("cancelling leftover run %s on %s", run.id, thread_id)
                await self.cancel(thread_id, run.id)
                await wait_for_run(self, thread_id, run.id, timeout=60, stop_on_action=False)

    # -- tool outputs, resuming, ending ----------------------------------------------------

    async def submit_tool_outputs(
        self, thread_id: str, run_id: str, outputs: Sequence[ToolOutput]
    ) -> RunStream:
        raw = await self._submit(thread_id, run_id, outputs, stream=self.streaming is not False)
        if raw is None:
            return self._polled(thread_id, run_id)
        stream = StreamedRun(self, raw, thread_id)
        await stream.begin()
        return stream

    async def _submit(
        self, thread_id: str, run_id: str, outputs: Sequence[ToolOutput], *, stream: bool
    ) -> Any:
        async with translate_errors("threads.runs.retrieve", thread_id=thread_id):
            run = await self.client.beta.threads.runs.retrieve(run_id, thread_id=thread_id)
        if run.status != "requires_action":
            raise RunNotAwaitingOutputs(f"run {run_id} is {run.status}")
        tool_outputs = [{"tool_call_id": o.call_id, "output": o.output} for o in outputs]
        try:
            async with translate_errors("threads.runs.submit_tool_outputs"):
                if stream:
                    return await self.client.beta.threads.runs.submit_tool_outputs(
                        run_id,
                        thread_id=thread_id,
                        tool_outputs=tool_outputs,  # type: ignore[arg-type]
                        stream=True,
                    )
                await self.client.beta.threads.runs.submit_tool_outputs(
                    run_id,
                    thread_id=thread_id,
                    tool_outputs=tool_outputs,  # type: ignore[arg-type]
                )
                return None
        except ModelServiceError as exc:
            # The run expired (or was cancelled) between our look and the submission.
            if isinstance(exc.__cause__, openai.BadRequestError):
                raise RunNotAwaitingOutputs(f"run {run_id} refused tool outputs") from exc
            raise

    async def resume(self, thread_id: str, run_id: str, *, cursor: int | None) -> RunStream:
        # Assistants streams cannot be re-opened: poll the run to its end.
        return self._polled(thread_id, run_id)

    async def cancel(self, thread_id: str, run_id: str) -> None:
        try:
            async with translate_errors("threads.runs.cancel"):
                await self.client.beta.threads.runs.cancel(run_id, thread_id=thread_id)
        except Exception:  # best effort: the run may already be over
            log.info("could not cancel run %s", run_id)

    # -- files -----------------------------------------------------------------------------

    async def filename(self, file_id: str) -> str:
        if file_id not in self._filenames:
            try:
                async with translate_errors("files.retrieve"):
                    info = await self.client.files.retrieve(file_id)
                self._filenames[file_id] = info.filename
            except Exception:
                return file_id
        return self._filenames[file_id]

    async def upload_file(self, filename: str, content: bytes) -> str:
        async with translate_errors("files.create"):
            uploaded = await self.client.files.create(
                file=(filename, content), purpose="assistants"
            )
        self._filenames[uploaded.id] = filename
        return uploaded.id

    async def download_file(self, file: GeneratedFile) -> bytes:
        async with translate_errors("files.content"):
            body = await self.client.files.content(file.file_id)
        return body.content
