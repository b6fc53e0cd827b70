"""The Assistants v2 protocol runtime, for servers that still speak it and for migrations.

The assistant is created once (name, instructions, model, tools) and its id remembered in
the store, unless ``OPENAI_ASSISTANT_ID`` names one. Threads, messages and runs map 1:1 onto
the domain; only the assistant messages of the awaited run are returned.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from collections.abc import Sequence
from typing import Any

import openai

from bot.quiz.schema import assistants_tool
from bot.runtime._openai import poll_until, translate_errors
from bot.runtime.base import (
    AssistantMessage,
    Citation,
    CodeStep,
    GeneratedFile,
    InputFile,
    ModelServiceError,
    ProgressCallback,
    RunNotAwaitingOutputs,
    RunResult,
    RunStatus,
    RunTimedOut,
    ToolCall,
    ToolOutput,
    UserInput,
)
from store.base import Store

log = logging.getLogger(__name__)

# openai 3.x marks every beta.threads call deprecated; we use this protocol on purpose.
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"openai\..*")
warnings.filterwarnings("ignore", message=r".*Assistants API is deprecated.*")

ASSISTANT_NAME = "Math Tutor"
_ACTIVE = ("queued", "in_progress", "cancelling")
_WAITING = (*_ACTIVE, "requires_action")
_STATUS = {
    "completed": RunStatus.COMPLETED,
    "requires_action": RunStatus.REQUIRES_ACTION,
    "failed": RunStatus.FAILED,
    "cancelled": RunStatus.CANCELLED,
    "expired": RunStatus.EXPIRED,
    "incomplete": RunStatus.INCOMPLETE,
}
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


def _is_active_run_error(exc: ModelServiceError) -> bool:
    cause = exc.__cause__
    return isinstance(cause, openai.BadRequestError) and "active run" in str(cause).lower()


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
    ) -> None:
        self._client = client
        self._store = store
        self._model = model
        self.model = model
        self._instructions = instructions
        self._tools = tuple(tools)
        self._configured_id = assistant_id
        self.assistant_id: str | None = assistant_id
        self._filenames: dict[str, str] = {}
        # A run continued after tool outputs lists its earlier messages again; return each
        # message (and code step) once per run. In memory: after a restart, at worst a
        # pre-quiz line is repeated.
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
            "model": self._model,
            "tools": self._tool_specs(),
        }
        fingerprint = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
        known = await self._store.get_setting(_SETTING_ID)
        if known is not None:
            self.assistant_id = known
            if await self._store.get_setting(_SETTING_FINGERPRINT) != fingerprint:
                async with translate_errors("assistants.update"):
                    await self._client.beta.assistants.update(known, **spec)  # type: ignore[arg-type]
                await self._store.set_setting(_SETTING_FINGERPRINT, fingerprint)
            return
        async with translate_errors("assistants.create"):
            assistant = await self._client.beta.assistants.create(**spec)  # type: ignore[arg-type]
        self.assistant_id = assistant.id
        await self._store.set_setting(_SETTING_ID, assistant.id)
        await self._store.set_setting(_SETTING_FINGERPRINT, fingerprint)
        log.info("created assistant %s", assistant.id)

    async def aclose(self) -> None:
        await self._client.close()

    async def create_thread(self, metadata: dict[str, str]) -> str:
        async with translate_errors("threads.create"):
            thread = await self._client.beta.threads.create(metadata=metadata)
        return thread.id

    async def start_run(
        self,
        thread_id: str,
        user_input: UserInput,
        *,
        pending_run_id: str | None = None,
        pending_outputs: Sequence[ToolOutput] = (),
    ) -> str:
        if pending_run_id is not None and pending_outputs:
            await self._close_pending_run(thread_id, pending_run_id, pending_outputs)
        await self._cancel_active_runs(thread_id)
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
        async with translate_errors("threads.messages.create", thread_id=thread_id):
            await self._client.beta.threads.messages.create(
                thread_id,
                role="user",
                content=content,  # type: ignore[arg-type]
                attachments=attachments or openai.omit,  # type: ignore[arg-type]
            )
        try:
            async with translate_errors("threads.runs.create", thread_id=thread_id):
                run = await self._client.beta.threads.runs.create(
                    thread_id, assistant_id=self._require_assistant()
                )
        except ModelServiceError as exc:
            # The SDK retried a create that had gone through (no idempotency keys): the
            # active run it reports is the one we asked for.
            active = await self._active_run(thread_id) if _is_active_run_error(exc) else None
            if active is None:
                raise
            log.info("run create was retried after it succeeded; awaiting %s", active)
            return active
        return run.id

    async def _active_run(self, thread_id: str) -> str | None:
        async with translate_errors("threads.runs.list", thread_id=thread_id):
            page = await self._client.beta.threads.runs.list(thread_id, limit=1, order="desc")
        return next((r.id for r in page.data if r.status in _ACTIVE), None)

    def _require_assistant(self) -> str:
        if self.assistant_id is None:
            raise RuntimeError("AssistantsRuntime.start() was not awaited")
        return self.assistant_id

    async def _close_pending_run(
        self, thread_id: str, run_id: str, outputs: Sequence[ToolOutput]
    ) -> None:
        """Answer a run's open calls (the student moved on) and let it finish unposted."""
        try:
            await self.submit_tool_outputs(thread_id, run_id, outputs)
        except RunNotAwaitingOutputs:
            return
        result = await self._wait_raw(thread_id, run_id, timeout=120)
        if result is None or result.status in _WAITING:
            await self.cancel(thread_id, run_id)

    async def _cancel_active_runs(self, thread_id: str) -> None:
        """A thread takes no message while a run is active (e.g. left over from a crash).

        Best effort: a server without the runs list still gets the message.
        """
        try:
            async with translate_errors("threads.runs.list"):
                page = await self._client.beta.threads.runs.list(thread_id, limit=5, order="desc")
        except ModelServiceError:
            return
        for run in page.data:
            if run.status in _WAITING:
                log.info("cancelling leftover run %s on %s", run.id, thread_id)
                await self.cancel(thread_id, run.id)
                await self._wait_raw(thread_id, run.id, timeout=60, stop_on_action=False)

    async def submit_tool_outputs(
        self, thread_id: str, run_id: str, outputs: Sequence[ToolOutput]
    ) -> str:
        async with translate_errors("threads.runs.retrieve", thread_id=thread_id):
            run = await self._client.beta.threads.runs.retrieve(run_id, thread_id=thread_id)
        if run.status != "requires_action":
            raise RunNotAwaitingOutputs(f"run {run_id} is {run.status}")
        try:
            async with translate_errors("threads.runs.submit_tool_outputs"):
                await self._client.beta.threads.runs.submit_tool_outputs(
                    run_id,
                    thread_id=thread_id,
                    tool_outputs=[{"tool_call_id": o.call_id, "output": o.output} for o in outputs],
                )
        except Exception as exc:
            # The run expired (or was cancelled) between our look and the submission.
            cause = exc.__cause__
            if isinstance(cause, openai.BadRequestError):
                raise RunNotAwaitingOutputs(f"run {run_id} refused tool outputs") from exc
            raise
        return run_id

    async def _wait_raw(
        self,
        thread_id: str,
        run_id: str,
        *,
        timeout: float,
        stop_on_action: bool = True,
        on_progress: ProgressCallback | None = None,
    ) -> Any:
        waiting = _ACTIVE if stop_on_action else _WAITING

        async def fetch() -> Any:
            async with translate_errors("threads.runs.retrieve", thread_id=thread_id):
                return await self._client.beta.threads.runs.retrieve(run_id, thread_id=thread_id)

        async def progress(run: Any) -> None:
            if on_progress is not None:
                await on_progress(await self._progress_label(thread_id, run_id))

        return await poll_until(
            fetch,
            lambda r: r.status not in waiting,
            timeout=timeout,
            on_each=progress if on_progress is not None else None,
        )

    async def _progress_label(self, thread_id: str, run_id: str) -> str:
        try:
            async with translate_errors("threads.runs.steps.list"):
                steps = await self._client.beta.threads.runs.steps.list(
                    run_id, thread_id=thread_id, limit=1, order="desc"
                )
        except Exception:
            return "Thinking…"
        for step in steps.data:
            details = step.step_details
            if details.type == "tool_calls":
                kinds = {getattr(c, "type", "") for c in details.tool_calls}
                if "code_interpreter" in kinds:
                    return "Writing and running code…"
                if "file_search" in kinds:
                    return "Reading files…"
                return "Preparing a quiz…"
            return "Writing the answer…"
        return "Thinking…"

    async def wait(
        self,
        thread_id: str,
        run_id: str,
        *,
        on_progress: ProgressCallback | None = None,
        timeout: float = 600.0,
    ) -> RunResult:
        run = await self._wait_raw(thread_id, run_id, timeout=timeout, on_progress=on_progress)
        if run is None:
            await self.cancel(thread_id, run_id)
            raise RunTimedOut(f"run {run_id} still running after {timeout:.0f}s")
        result = RunResult(run_id=run_id, status=_STATUS.get(run.status, RunStatus.FAILED))
        if run.status == "requires_action" and run.required_action is not None:
            for call in run.required_action.submit_tool_outputs.tool_calls:
                result.tool_calls.append(
                    ToolCall(
                        call_id=call.id,
                        name=call.function.name,
                        arguments=call.function.arguments or "",
                    )
                )
        if run.last_error is not None:
            result.error = f"{run.last_error.code}: {run.last_error.message}"
        elif run.incomplete_details is not None:
            result.error = f"incomplete: {run.incomplete_details.reason}"
        await self._collect_steps(thread_id, run_id, result)
        await self._collect_messages(thread_id, run_id, result)
        if result.status is not RunStatus.REQUIRES_ACTION:
            self._returned.pop(run_id, None)
        return result

    async def _collect_steps(self, thread_id: str, run_id: str, result: RunResult) -> None:
        """The run's code steps, for the work view. Best effort: the answer matters more."""
        try:
            async with translate_errors("threads.runs.steps.list"):
                page = await self._client.beta.threads.runs.steps.list(
                    run_id, thread_id=thread_id, order="asc", limit=100
                )
        except ModelServiceError:
            return
        returned = self._returned.setdefault(run_id, set())
        for step in page.data:
            details = step.step_details
            if details.type != "tool_calls" or step.status != "completed" or step.id in returned:
                continue
            returned.add(step.id)
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
                result.steps.append(
                    CodeStep(code=ci.input or "", logs="\n".join(logs), files=files)
                )

    async def _collect_messages(self, thread_id: str, run_id: str, result: RunResult) -> None:
        async with translate_errors("threads.messages.list"):
            page = await self._client.beta.threads.messages.list(
                thread_id, run_id=run_id, order="asc", limit=100
            )
        seen = {f.file_id for f in result.files}
        for step in result.steps:
            for f in step.files:
                if f.file_id not in seen:
                    seen.add(f.file_id)
                    result.files.append(f)
        returned = self._returned.setdefault(run_id, set())
        for message in page.data:
            if message.role != "assistant" or message.id in returned:
                continue
            returned.add(message.id)
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
                                    marker=ann.text,
                                    filename=await self._filename(file_id),
                                    file_id=file_id,
                                )
                            )
                        elif ann.type == "file_path" and ann.file_path.file_id not in seen:
                            seen.add(ann.file_path.file_id)
                            name = ann.text.rsplit("/", 1)[-1] or ann.file_path.file_id
                            result.files.append(
                                GeneratedFile(file_id=ann.file_path.file_id, filename=name)
                            )
                elif part.type == "image_file" and part.image_file.file_id not in seen:
                    seen.add(part.image_file.file_id)
                    result.files.append(
                        GeneratedFile(
                            file_id=part.image_file.file_id,
                            filename=f"{part.image_file.file_id}.png",
                        )
                    )
            result.messages.append(
                AssistantMessage(text="\n\n".join(texts), citations=tuple(citations))
            )

    async def _filename(self, file_id: str) -> str:
        if file_id not in self._filenames:
            try:
                async with translate_errors("files.retrieve"):
                    info = await self._client.files.retrieve(file_id)
                self._filenames[file_id] = info.filename
            except Exception:
                return file_id
        return self._filenames[file_id]

    async def cancel(self, thread_id: str, run_id: str) -> None:
        try:
            async with translate_errors("threads.runs.cancel"):
                await self._client.beta.threads.runs.cancel(run_id, thread_id=thread_id)
        except Exception:  # best effort: the run may already be over
            log.info("could not cancel run %s", run_id)

    async def upload_file(self, filename: str, content: bytes) -> str:
        async with translate_errors("files.create"):
            uploaded = await self._client.files.create(
                file=(filename, content), purpose="assistants"
            )
        self._filenames[uploaded.id] = filename
        return uploaded.id

    async def download_file(self, file: GeneratedFile) -> bytes:
        async with translate_errors("files.content"):
            body = await self._client.files.content(file.file_id)
        return body.content
