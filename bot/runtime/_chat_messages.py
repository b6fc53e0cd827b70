"""A chat-runtime conversation as stored messages: what a run added, what waits for tool
outputs, and what is sent to the server. Pure, table-tested.

The store keeps Chat Completions messages as the bot built them (with the run that added
each one; an assistant message also notes its ``finish_reason``). Before they go out they
are made into what every server accepts (``wire_messages``): only the standard keys, tool
call arguments that parse as JSON (vLLM and Ollama answer 400 to others), a tool message
for every call (OpenAI answers 400 to an assistant message with ``tool_calls`` not followed
by a tool message per call), and no two user messages in a row (some chat templates, e.g.
Gemma's and older Mistral ones, refuse them).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.runtime._tool_call_stream import StreamedToolCall, replayable_arguments
from bot.runtime.base import AssistantMessage, RunResult, RunStatus, ToolCall
from store.base import ChatRecord

# Between a user message that got no answer (the run failed, timed out or was stopped
# before it wrote anything; the student was told) and the next one.
UNANSWERED = "(No answer was given to this message: answering it was interrupted.)"
# For a call that has no recorded output (never expected; keeps the request valid).
NO_OUTPUT = json.dumps({"error": "No result was recorded for this call."})

_STATUS = {
    "length": RunStatus.INCOMPLETE,
    "content_filter": RunStatus.INCOMPLETE,
    "cancelled": RunStatus.CANCELLED,
}


@dataclass(frozen=True, slots=True)
class Awaiting:
    """The run whose function calls still wait for outputs, and those calls in order."""

    run_id: str
    call_ids: tuple[str, ...]


def user_message(text: str, documents: Sequence[str] = ()) -> dict[str, Any]:
    """The student's message with the text of their files after it."""
    return {"role": "user", "content": "\n\n".join([text, *documents])}


def tool_message(call_id: str, output: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": output}


def assistant_message(
    text: str, calls: Sequence[StreamedToolCall], finish_reason: str | None
) -> dict[str, Any]:
    """What the model wrote, as stored: arguments raw (the quiz validator judges them)."""
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        message["content"] = text or None
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in calls
        ]
    message["finish_reason"] = finish_reason or "stop"
    return message


def unique_call_ids(
    calls: Sequence[StreamedToolCall], used: set[str], run_id: str
) -> list[StreamedToolCall]:
    """The calls with ids that are new in the conversation: the quiz table and the tool
    messages tell calls apart by id, and a server may number them afresh each time
    (``call_0``…)."""
    unique = []
    for n, call in enumerate(calls):
        call_id = call.id
        if call_id in used:
            call_id = f"call_{run_id.rsplit('_', 1)[-1][:24]}_{n}"
        used.add(call_id)
        unique.append(StreamedToolCall(call_id, call.name, call.arguments))
    return unique


def answer_of(records: Sequence[ChatRecord], run_id: str) -> dict[str, Any] | None:
    """The assistant message a run ended with, if it has ended."""
    for record in records:
        if record.run_id == run_id and record.message.get("role") == "assistant":
            return record.message
    return None


def result_of(run_id: str, message: dict[str, Any]) -> RunResult:
    """A finished run's result from its stored assistant message.

    Calls make it REQUIRES_ACTION whatever the finish reason (older Ollama says ``stop``;
    a call cut off by ``length`` gets an error output the model can act on)."""
    text = message.get("content") or ""
    calls = [
        ToolCall(
            call_id=str(call.get("id") or ""),
            name=str((call.get("function") or {}).get("name") or ""),
            arguments=str((call.get("function") or {}).get("arguments") or ""),
        )
        for call in message.get("tool_calls") or ()
    ]
    finish = str(message.get("finish_reason") or "stop")
    status = RunStatus.REQUIRES_ACTION if calls else _STATUS.get(finish, RunStatus.COMPLETED)
    result = RunResult(run_id=run_id, status=status, tool_calls=calls)
    if text:
        result.messages.append(AssistantMessage(text=text))
    if status is RunStatus.INCOMPLETE:
        result.error = f"incomplete: {finish}"
    return result


def awaiting(records: Sequence[ChatRecord]) -> Awaiting | None:
    """The last assistant message's calls that have no tool message yet, if any."""
    pending: list[str] = []
    run_id = ""
    for record in records:
        message = record.message
        role = message.get("role")
        if role == "tool":
            answered = message.get("tool_call_id")
            pending = [c for c in pending if c != answered]
            continue
        pending = []
        if role == "assistant":
            run_id = record.run_id
            pending = [str(c.get("id")) for c in message.get("tool_calls") or ()]
    return Awaiting(run_id, tuple(pending)) if pending else None


def run_taking_outputs(records: Sequence[ChatRecord], run_id: str) -> str | None:
    """The run that took ``run_id``'s tool outputs, if it is the latest and has added
    nothing else yet (a submission that stopped between storing them and being recorded)."""
    if not records or records[-1].message.get("role") != "tool":
        return None
    latest = records[-1].run_id
    own = [r.message for r in records if r.run_id == latest]
    if any(m.get("role") != "tool" for m in own):
        return None
    asked = answer_of(records, run_id) or {}
    calls = {c.get("id") for c in asked.get("tool_calls") or ()}
    return latest if calls and {m.get("tool_call_id") for m in own} <= calls else None


def outputs_in_call_order(
    call_ids: Sequence[str], outputs: dict[str, str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """One tool message per call, in the calls' order, and the calls given no output (they
    get ``NO_OUTPUT``). Outputs for other calls are left out."""
    messages = []
    missing = []
    for call_id in call_ids:
        output = outputs.get(call_id)
        if output is None:
            missing.append(call_id)
            output = NO_OUTPUT
        messages.append(tool_message(call_id, output))
    return messages, missing


def wire_messages(records: Sequence[ChatRecord]) -> list[dict[str, Any]]:
    """The stored conversation as the server gets it (see the module docstring)."""
    wire: list[dict[str, Any]] = []
    open_calls: list[str] = []

    def close_calls() -> None:
        wire.extend(tool_message(call_id, NO_OUTPUT) for call_id in open_calls)
        open_calls.clear()

    for record in records:
        message = record.message
        role = message.get("role")
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id in open_calls:
                open_calls.remove(call_id)
                wire.append(tool_message(str(call_id), _text(message.get("content"))))
            continue
        close_calls()
        if role == "user":
            if wire and wire[-1]["role"] == "user":
                wire.append({"role": "assistant", "content": UNANSWERED})
            wire.append({"role": "user", "content": message.get("content") or ""})
        elif role == "assistant":
            wire.append(_wire_assistant(message))
            open_calls = [c["id"] for c in wire[-1].get("tool_calls") or ()]
        elif role in ("system", "developer"):
            wire.append({"role": role, "content": _text(message.get("content"))})
    close_calls()
    return wire


def _wire_assistant(message: dict[str, Any]) -> dict[str, Any]:
    calls = [
        {
            "id": str(call.get("id")),
            "type": "function",
            "function": {
                "name": str((call.get("function") or {}).get("name") or ""),
                "arguments": replayable_arguments(
                    str((call.get("function") or {}).get("arguments") or "")
                ),
            },
        }
        for call in message.get("tool_calls") or ()
    ]
    if calls:
        return {"role": "assistant", "content": message.get("content") or None, "tool_calls": calls}
    return {"role": "assistant", "content": _text(message.get("content"))}


def _text(content: Any) -> str:
    return content if isinstance(content, str) else ""
