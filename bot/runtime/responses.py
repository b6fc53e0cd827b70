"""The default runtime: OpenAI Conversations + Responses, run in background mode and polled.

thread -> conversation, run -> response, requires_action -> ``function_call`` output items
answered by ``function_call_output`` input items in the next response on the conversation.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Sequence
from typing import Any

import openai

from bot.quiz.schema import responses_tool
from bot.runtime._openai import poll_until, translate_errors
from bot.runtime.base import (
    AssistantMessage,
    Citation,
    CodeStep,
    GeneratedFile,
    ModelServiceError,
    ProgressCallback,
    RunResult,
    RunStatus,
    RunTimedOut,
    ToolCall,
    ToolOutput,
    UserInput,
)

log = logging.getLogger(__name__)

_ACTIVE = ("queued", "in_progress")
LOCKED_WAIT_LIMIT = 60.0
_FINAL_STATUS = {
    "completed": RunStatus.COMPLETED,
    "failed": RunStatus.FAILED,
    "cancelled": RunStatus.CANCELLED,
    "incomplete": RunStatus.INCOMPLETE,
}
PROGRESS_LABELS = {
    "code_interpreter_call": "Writing and running code…",
    "file_search_call": "Reading files…",
    "function_call": "Preparing a quiz…",
    "reasoning": "Thinking…",
    "message": "Writing the answer…",
}


class ResponsesRuntime:
    name = "responses"

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        *,
        model: str,
        instructions: str,
        tools: Sequence[str],
    ) -> None:
        self._client = client
        self._model = model
        self.model = model
        self._instructions = instructions
        self._tools = tuple(tools)

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        await self._client.close()

    async def create_thread(self, metadata: dict[str, str]) -> str:
        async with translate_errors("conversations.create"):
            conversation = await self._client.conversations.create(metadata=metadata)
        return conversation.id

    def _tool_specs(self, code_files: Sequence[str] = ()) -> list[dict[str, Any]]:
        specs: list[dict[str, Any]] = []
        if "code_interpreter" in self._tools:
            container: dict[str, Any] = {"type": "auto"}
            if code_files:
                container["file_ids"] = list(code_files)
            specs.append({"type": "code_interpreter", "container": container})
        if "display_quiz" in self._tools:
            specs.append(responses_tool())
        return specs

    async def _create(
        self, conversation: str, items: list[dict[str, Any]], code_files: Sequence[str] = ()
    ) -> str:
        waited = 0.0
        while True:
            try:
                async with translate_errors("responses.create", thread_id=conversation):
                    response = await self._client.responses.create(
                        model=self._model,
                        instructions=self._instructions,
                        tools=self._tool_specs(code_files),  # type: ignore[arg-type]
                        conversation=conversation,
                        input=items,  # type: ignore[arg-type]
                        background=True,
                        store=True,
                        include=["code_interpreter_call.outputs"],
                    )
                return response.id
            except ModelServiceError as exc:
                # Busy conversation: the one way we get here is an earlier create that the
                # SDK retried after it had in fact gone through (no idempotency keys).
                # That response finishes on its own; wait for it, bounded, and go again.
                if not _is_locked(exc) or waited >= LOCKED_WAIT_LIMIT:
                    raise
                log.warning("conversation %s is busy; retrying in 2 s", conversation)
                await asyncio.sleep(2.0)
                waited += 2.0

    async def start_run(
        self,
        thread_id: str,
        user_input: UserInput,
        *,
        pending_run_id: str | None = None,
        pending_outputs: Sequence[ToolOutput] = (),
    ) -> str:
        # Outputs for unanswered calls go first: the conversation takes nothing else until
        # every function call has its output.
        items = [_output_item(o) for o in pending_outputs]
        content: list[dict[str, Any]] = [{"type": "input_text", "text": user_input.text}]
        code_files: list[str] = []
        for f in user_input.files:
            if f.use == "image":
                content.append({"type": "input_image", "file_id": f.file_id, "detail": "auto"})
            elif f.use == "code_interpreter" and "code_interpreter" in self._tools:
                code_files.append(f.file_id)
            else:
                content.append({"type": "input_file", "file_id": f.file_id})
        items.append({"role": "user", "content": content})
        return await self._create(thread_id, items, code_files)

    async def submit_tool_outputs(
        self, thread_id: str, run_id: str, outputs: Sequence[ToolOutput]
    ) -> str:
        # Function calls on a conversation never expire: the outputs start the next response.
        return await self._create(thread_id, [_output_item(o) for o in outputs])

    async def wait(
        self,
        thread_id: str,
        run_id: str,
        *,
        on_progress: ProgressCallback | None = None,
        timeout: float = 600.0,
    ) -> RunResult:
        async def fetch() -> Any:
            async with translate_errors("responses.retrieve"):
                return await self._client.responses.retrieve(
                    run_id, include=["code_interpreter_call.outputs"]
                )

        async def progress(response: Any) -> None:
            if on_progress is not None:
                await on_progress(progress_label(response.output or []))

        response = await poll_until(
            fetch, lambda r: r.status not in _ACTIVE, timeout=timeout, on_each=progress
        )
        if response is None:
            await self.cancel(thread_id, run_id)
            raise RunTimedOut(f"response {run_id} still running after {timeout:.0f}s")
        return result_from_response(response)

    async def cancel(self, thread_id: str, run_id: str) -> None:
        try:
            async with translate_errors("responses.cancel"):
                await self._client.responses.cancel(run_id)
        except Exception:  # best effort: the response may already have finished
            log.info("could not cancel response %s", run_id)

    async def upload_file(self, filename: str, content: bytes) -> str:
        # Pictures for input_image are "vision" files; documents and data are "user_data".
        is_image = filename.lower().endswith(_IMAGE_SUFFIXES)
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


def _is_locked(exc: ModelServiceError) -> bool:
    cause = exc.__cause__
    return isinstance(cause, openai.BadRequestError) and (
        getattr(cause, "code", None) == "conversation_locked"
    )


def _output_item(output: ToolOutput) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": output.call_id, "output": output.output}


def progress_label(output: Sequence[Any]) -> str:
    """What the user sees while a response works: its latest output item, in words."""
    for item in reversed(output):
        label = PROGRESS_LABELS.get(getattr(item, "type", ""))
        if label:
            return label
    return "Thinking…"


def result_from_response(response: Any) -> RunResult:
    """Map a finished response's output items onto the runtime-neutral ``RunResult``."""
    result = RunResult(
        run_id=response.id, status=_FINAL_STATUS.get(response.status, RunStatus.FAILED)
    )
    seen_files: set[str] = set()
    inline_images: list[GeneratedFile] = []
    for item in response.output or []:
        kind = getattr(item, "type", None)
        if kind == "message":
            result.messages.append(_message(item, result, seen_files))
        elif kind == "function_call":
            result.tool_calls.append(
                ToolCall(call_id=item.call_id, name=item.name, arguments=item.arguments or "")
            )
        elif kind == "code_interpreter_call":
            logs = [
                o.logs
                for o in (item.outputs or [])
                if getattr(o, "type", None) == "logs" and getattr(o, "logs", None)
            ]
            result.steps.append(CodeStep(code=item.code or "", logs="\n".join(logs)))
            inline_images += [
                image
                for o in (item.outputs or [])
                if getattr(o, "type", None) == "image"
                and (image := _inline_image(getattr(o, "url", None), len(inline_images)))
            ]
    # Plots come back as container files the answer cites; an image output that no
    # citation covers (only a data: URL) is shared from its inline bytes instead.
    if not any(f.filename.lower().endswith(_IMAGE_SUFFIXES) for f in result.files):
        result.files += inline_images
    if result.status is RunStatus.COMPLETED and result.tool_calls:
        result.status = RunStatus.REQUIRES_ACTION
    if response.status == "failed" and response.error is not None:
        result.error = f"{response.error.code}: {response.error.message}"
    elif response.status == "incomplete" and response.incomplete_details is not None:
        result.error = f"incomplete: {response.incomplete_details.reason}"
    return result


_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp")


def _inline_image(url: Any, index: int) -> GeneratedFile | None:
    """An image output given as a ``data:image/…;base64,…`` URL, or None."""
    if not isinstance(url, str) or not url.startswith("data:image/") or ";base64," not in url:
        return None
    header, _, payload = url.partition(";base64,")
    try:
        content = base64.b64decode(payload, validate=True)
    except ValueError:
        return None
    extension = header.removeprefix("data:image/").split("+")[0] or "png"
    return GeneratedFile(
        file_id=f"inline-{index}", filename=f"plot-{index + 1}.{extension}", content=content
    )


def _message(item: Any, result: RunResult, seen_files: set[str]) -> AssistantMessage:
    texts: list[str] = []
    citations: list[Citation] = []
    for part in item.content or []:
        if getattr(part, "type", None) != "output_text":
            continue
        text = part.text or ""
        # Responses citations carry a position, not a marker: insert one marker per citation
        # (from the end, so earlier positions stay valid) for the renderer to footnote.
        inserts: list[tuple[int, str]] = []
        for ann in part.annotations or []:
            kind = getattr(ann, "type", None)
            if kind == "file_citation":
                marker = f"【{len(result.messages)}.{len(texts)}.{len(citations)}†】"
                citations.append(
                    Citation(
                        marker=marker, filename=ann.filename or ann.file_id, file_id=ann.file_id
                    )
                )
                inserts.append((ann.index, marker))
            elif kind == "container_file_citation" and ann.file_id not in seen_files:
                seen_files.add(ann.file_id)
                result.files.append(
                    GeneratedFile(
                        file_id=ann.file_id, filename=ann.filename, container_id=ann.container_id
                    )
                )
        for index, marker in sorted(inserts, reverse=True):
            index = max(0, min(index, len(text)))
            text = text[:index] + marker + text[index:]
        texts.append(text)
    return AssistantMessage(text="\n\n".join(texts), citations=tuple(citations))
