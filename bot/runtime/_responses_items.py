"""Responses output items -> the runtime-neutral ``RunResult``: pure, table-tested.

Used for a finished response (its ``output``) and for items read back from a conversation
(a create whose answer was lost in transit but whose response ran anyway).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from bot.runtime.base import (
    AssistantMessage,
    Citation,
    CodeStep,
    GeneratedFile,
    RunResult,
    RunStatus,
    ToolCall,
    ToolOutput,
    UserInput,
)

FINAL_STATUS = {
    "completed": RunStatus.COMPLETED,
    "failed": RunStatus.FAILED,
    "cancelled": RunStatus.CANCELLED,
    "incomplete": RunStatus.INCOMPLETE,
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp")


def input_items(
    user_input: UserInput, pending_outputs: Sequence[ToolOutput], *, code_interpreter: bool
) -> tuple[list[dict[str, Any]], list[str]]:
    """The input items of a user's message (after the outputs that close open calls, which
    the conversation requires first) and the files for the code interpreter's container."""
    items = [output_item(o) for o in pending_outputs]
    content: list[dict[str, Any]] = [{"type": "input_text", "text": user_input.text}]
    code_files: list[str] = []
    for f in user_input.files:
        if f.use == "image":
            content.append({"type": "input_image", "file_id": f.file_id, "detail": "auto"})
        elif f.use == "code_interpreter" and code_interpreter:
            code_files.append(f.file_id)
        else:
            content.append({"type": "input_file", "file_id": f.file_id})
    items.append({"role": "user", "content": content})
    return items, code_files


def output_item(output: ToolOutput) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": output.call_id, "output": output.output}


def result_from_response(response: Any) -> RunResult:
    """Map a finished response's output items onto the runtime-neutral ``RunResult``."""
    result = result_from_output(response.id, response.status, response.output or [])
    if response.status == "failed" and response.error is not None:
        result.error = f"{response.error.code}: {response.error.message}"
    elif response.status == "incomplete" and response.incomplete_details is not None:
        result.error = f"incomplete: {response.incomplete_details.reason}"
    return result


def result_from_output(run_id: str, status: str, output: Sequence[Any]) -> RunResult:
    """A run's result from its output items (a response's, or a conversation's items)."""
    result = RunResult(run_id=run_id, status=FINAL_STATUS.get(status, RunStatus.FAILED))
    seen_files: set[str] = set()
    inline_images: list[GeneratedFile] = []
    for item in output:
        kind = getattr(item, "type", None)
        if kind == "message":
            if getattr(item, "role", "assistant") != "assistant":
                continue
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
    if not any(f.filename.lower().endswith(IMAGE_SUFFIXES) for f in result.files):
        result.files += inline_images
    if result.status is RunStatus.COMPLETED and result.tool_calls:
        result.status = RunStatus.REQUIRES_ACTION
    return result


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
