"""Chat Completions (``POST /v1/chat/completions``) for the fake OpenAI server.

A chat server keeps nothing between requests: every request carries the whole conversation
in ``messages``, and the scripted model sees it through a ``ModelContext`` built from them.
The server is one of two flavours, ``fake.chat.flavour``:

- ``"vllm"`` (default): streamed tool calls as vLLM (and OpenAI) send them: the first delta
  of a call carries ``index``, ``id``, ``type`` and ``function.name`` with empty arguments,
  later deltas only argument fragments (with ``id: ""``, as vLLM sends them).
- ``"ollama"``: every parallel call has ``index: 0`` and its own id, each call whole in one
  chunk; every delta repeats ``role: "assistant"``.

Requests are checked the way OpenAI checks them (every ``tool_calls`` id answered by a
``tool`` message, no answer for an unknown call, a non-empty ``messages``, valid function
tools) plus what both servers need to render a prompt (assistant tool call ``arguments`` that
parse as JSON). Every rejection is a 400 in OpenAI's error shape and a violation on the fake.

Knobs (on ``fake.chat``): ``flavour``; ``max_chunks`` (text and arguments are cut into at
most this many pieces); ``chunk_interval`` (seconds between chunks; ``Reply.latency`` passes
before the first one); ``break_next_stream(...)`` (cut, in-band error or stall mid-stream).
``fake.fail_next("/chat/completions", after_processing=True)`` on a streamed request cuts
the stream halfway (the model turn is spent, the answer lost). ``requests`` holds every
request body received; ``aborted`` the completions whose client went away mid-answer.

Conversations have no id on the wire: ``ModelContext.thread_id`` is the request's
``prompt_cache_key`` (or ``user``) when given, else derived from the first user message.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
import math
import re
import secrets
import string
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fakes.openai_model import REC, ApiError, ModelContext, Reply, approx_tokens

if TYPE_CHECKING:
    from tests.fakes.openai_server import FakeOpenAI

PATH = "/v1/chat/completions"
FLAVOURS = ("vllm", "ollama")

# Set by the server's middleware when an injected fault is due after processing: a stream
# has sent its headers by then, so the handler cuts it instead of answering an error.
CUT_STREAM = web.RequestKey("fake_openai_cut_stream", bool)

_ROLES = ("system", "developer", "user", "assistant", "tool")
_ROLES_TEXT = "'system', 'assistant', 'user', 'tool', 'function' and 'developer'"
_USER_PARTS = ("text", "image_url", "input_audio", "file")
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_MIN_PIECE = 4
_LOWER_ALNUM = string.ascii_lowercase + string.digits
_SERVER_ERROR = "The server had an error while processing your request."


@dataclass
class _StreamBreak:
    after_chunks: int
    how: str  # "cut" | "error" | "stall"
    seconds: float


def _invalid(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code, violation=f"chat: {message}")


def content_text(content: Any) -> str:
    """The text of a message's ``content`` (a string, or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return "\n".join(str(p.get("text", "")) for p in parts)
    return ""


# --- request validation --------------------------------------------------------------------


def validate_request(body: Any, flavour: str) -> None:
    """Raise the 400 OpenAI (or the flavour's server) answers for a malformed request."""
    if not isinstance(body, dict):
        raise _invalid("We could not parse the JSON body of your request.")
    if not body.get("model"):
        raise _invalid("you must provide a model parameter")
    if body.get("n") not in (None, 1):
        raise _invalid("FakeOpenAI supports only n=1.", param="n")
    if body.get("stream_options") is not None and not body.get("stream"):
        raise _invalid(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )
    _validate_tools(body)
    messages = body.get("messages")
    if messages is None:
        raise _invalid("Missing required parameter: 'messages'.", param="messages")
    if not isinstance(messages, list):
        raise _invalid("Invalid type for 'messages': expected an array.", param="messages")
    if not messages:
        raise _invalid(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    for i, message in enumerate(messages):
        _validate_message(i, message, flavour)
    _validate_pairing(messages)


def _validate_tools(body: dict) -> None:
    tools = body.get("tools")
    if tools is None:
        for name in ("tool_choice", "parallel_tool_calls"):
            if body.get(name) is not None:
                raise _invalid(
                    f"Invalid value for '{name}': '{name}' is only allowed when 'tools' "
                    "are specified.",
                    param=name,
                )
        return
    if not isinstance(tools, list):
        raise _invalid("Invalid type for 'tools': expected an array of objects.", param="tools")
    if not tools:
        raise _invalid(
            "Invalid 'tools': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param="tools",
            code="empty_array",
        )
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise _invalid(f"Invalid type for '{where}': expected an object.", param=where)
        if tool.get("type") != "function":
            raise _invalid(
                f"Invalid value: '{tool.get('type')}'. Supported values are: 'function' and "
                "'custom'.",
                param=f"{where}.type",
                code="invalid_value",
            )
        fn = tool.get("function")
        if not isinstance(fn, dict):
            raise _invalid(
                f"Missing required parameter: '{where}.function'.", param=f"{where}.function"
            )
        name = fn.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.match(name):
            raise _invalid(
                f"Invalid '{where}.function.name': string does not match pattern. Expected a "
                "string that matches the pattern '^[a-zA-Z0-9_-]+$'.",
                param=f"{where}.function.name",
                code="invalid_value",
            )
        params = fn.get("parameters")
        if params is not None:
            if not isinstance(params, dict):
                raise _invalid(
                    f"Invalid type for '{where}.function.parameters': expected an object.",
                    param=f"{where}.function.parameters",
                )
            if params.get("type", "object") != "object":
                raise _invalid(
                    f"Invalid schema for function '{name}': schema must be a JSON Schema of "
                    f"'type: \"object\"', got 'type: \"{params.get('type')}\"'.",
                    param=f"{where}.function.parameters",
                    code="invalid_function_parameters",
                )


def _validate_message(i: int, message: Any, flavour: str) -> None:
    where = f"messages[{i}]"
    if not isinstance(message, dict):
        raise _invalid(f"Invalid type for '{where}': expected an object.", param=where)
    role = message.get("role")
    if role not in _ROLES:
        raise _invalid(
            f"Invalid value: '{role}'. Supported values are: {_ROLES_TEXT}.",
            param=f"{where}.role",
            code="invalid_value",
        )
    content = message.get("content")
    if role == "assistant":
        calls = message.get("tool_calls")
        if content is None and not calls:
            raise _invalid(
                f"Invalid value for '{where}.content': expected a string, got null.",
                param=f"{where}.content",
            )
        if calls is not None:
            _validate_tool_calls(where, calls, flavour)
    elif content is None:
        raise _invalid(f"Missing required parameter: '{where}.content'.", param=f"{where}.content")
    if content is not None:
        allowed = _USER_PARTS if role == "user" else ("text",)
        _validate_content(where, content, allowed)
    if role == "tool" and not (
        isinstance(message.get("tool_call_id"), str) and message["tool_call_id"]
    ):
        raise _invalid(
            f"Missing required parameter: '{where}.tool_call_id'.",
            param=f"{where}.tool_call_id",
        )


def _validate_content(where: str, content: Any, allowed: tuple[str, ...]) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _invalid(
            f"Invalid type for '{where}.content': expected one of a string or array of objects.",
            param=f"{where}.content",
        )
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in allowed:
            raise _invalid(
                f"Invalid value: '{kind}'. Supported values are: "
                + ", ".join(f"'{a}'" for a in allowed)
                + ".",
                param=f"{where}.content[{j}].type",
                code="invalid_value",
            )
        if kind == "text" and not isinstance(part.get("text"), str):
            raise _invalid(
                f"Missing required parameter: '{where}.content[{j}].text'.",
                param=f"{where}.content[{j}].text",
            )


def _validate_tool_calls(where: str, calls: Any, flavour: str) -> None:
    if not isinstance(calls, list):
        raise _invalid(
            f"Invalid type for '{where}.tool_calls': expected an array.",
            param=f"{where}.tool_calls",
        )
    if not calls:
        raise _invalid(
            f"Invalid '{where}.tool_calls': empty array. Expected an array with minimum "
            "length 1, but got an empty array instead.",
            param=f"{where}.tool_calls",
            code="empty_array",
        )
    for k, call in enumerate(calls):
        at = f"{where}.tool_calls[{k}]"
        if not isinstance(call, dict):
            raise _invalid(f"Invalid type for '{at}': expected an object.", param=at)
        if not isinstance(call.get("id"), str) or not call["id"]:
            raise _invalid(f"Missing required parameter: '{at}.id'.", param=f"{at}.id")
        if call.get("type") != "function":
            raise _invalid(
                f"Invalid value: '{call.get('type')}'. Supported values are: 'function' and "
                "'custom'.",
                param=f"{at}.type",
                code="invalid_value",
            )
        fn = call.get("function")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _invalid(
                f"Missing required parameter: '{at}.function.name'.", param=f"{at}.function"
            )
        arguments = fn.get("arguments")
        if not isinstance(arguments, str):
            raise _invalid(
                f"Invalid type for '{at}.function.arguments': expected a string.",
                param=f"{at}.function.arguments",
            )
        # Both servers turn the arguments into an object to render the chat template
        # (vLLM json.loads them unless empty; Ollama unmarshals them): bad JSON is a 400.
        if arguments.strip():
            try:
                json.loads(arguments)
            except ValueError as e:
                message = (
                    "invalid tool call arguments"
                    if flavour == "ollama"
                    else f"{e} (in {at}.function.arguments)"
                )
                raise _invalid(message, param=f"{at}.function.arguments") from None


def _validate_pairing(messages: list[dict]) -> None:
    """Every tool call answered by a ``tool`` message right after it, and nothing else."""
    pending: dict[str, None] = {}
    pending_from = -1
    for i, message in enumerate(messages):
        role = message["role"]
        if role == "tool":
            call_id = message["tool_call_id"]
            if call_id not in pending:
                raise _invalid(
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",
                    param=f"messages.[{i}].role",
                )
            del pending[call_id]
            continue
        _check_answered(pending, pending_from)
        pending = {}
        if role == "assistant" and message.get("tool_calls"):
            pending = {call["id"]: None for call in message["tool_calls"]}
            pending_from = i
    _check_answered(pending, pending_from)


def _check_answered(pending: dict[str, None], index: int) -> None:
    if pending:
        raise _invalid(
            "An assistant message with 'tool_calls' must be followed by tool messages "
            "responding to each 'tool_call_id'. The following tool_call_ids did not have "
            f"response messages: {', '.join(pending)}",
            param=f"messages.[{index}].role",
        )


# --- what the scripted model sees ------------------------------------------------------------


def model_context(body: dict, thread_id: str) -> ModelContext:
    """The conversation in ``messages`` as the scripted model sees it."""
    messages: list[dict] = body["messages"]
    start = 0
    while start < len(messages) and messages[start]["role"] in ("system", "developer"):
        start += 1
    instructions = "\n\n".join(content_text(m.get("content")) for m in messages[:start])
    history: list[dict] = []
    for m in messages[start:]:
        if m["role"] == "tool":
            history.append(
                {
                    "type": "function_call_output",
                    "call_id": m["tool_call_id"],
                    "output": content_text(m.get("content")),
                }
            )
            continue
        text = content_text(m.get("content"))
        if text or m["role"] != "assistant":
            history.append({"role": m["role"], "text": text})
        for call in m.get("tool_calls") or []:
            history.append(
                {
                    "type": "function_call",
                    "call_id": call["id"],
                    "name": call["function"]["name"],
                    "arguments": call["function"]["arguments"],
                }
            )
    user_texts = [h["text"] for h in history if h.get("role") == "user"]
    return ModelContext(
        protocol="chat",
        thread_id=thread_id,
        instructions=instructions or None,
        model=body.get("model"),
        tools=copy.deepcopy(body.get("tools") or []),
        history=history,
        last_user_text=user_texts[-1] if user_texts else None,
        tool_outputs=[
            {"call_id": m["tool_call_id"], "output": content_text(m.get("content"))}
            for m in _new_input(messages)
            if m["role"] == "tool"
        ],
        files=[],
    )


def _new_input(messages: list[dict]) -> list[dict]:
    """The messages after the last assistant message: what this request adds."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i]["role"] == "assistant":
            return messages[i + 1 :]
    return [m for m in messages if m["role"] not in ("system", "developer")]


def thread_key(body: dict) -> str:
    """A stable name for the conversation a stateless request belongs to."""
    explicit = body.get("prompt_cache_key") or body.get("user")
    if isinstance(explicit, str) and explicit:
        return explicit
    first = next((m for m in body["messages"] if m["role"] == "user"), None)
    seed = json.dumps(first.get("content") if first else None, sort_keys=True)
    return "chat_" + hashlib.sha256(seed.encode()).hexdigest()[:24]


# --- what the server answers ----------------------------------------------------------------


def _paced(reply: Reply) -> bool:
    return reply.write_time is not None or reply.delta_interval > 0


def pieces(text: str, max_pieces: int) -> list[str]:
    """``text`` cut into at most ``max_pieces`` pieces (of at least a few characters)."""
    if not text:
        return []
    size = max(_MIN_PIECE, math.ceil(len(text) / max(1, max_pieces)))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _call_id(flavour: str) -> str:
    if flavour == "ollama":
        return "call_" + "".join(secrets.choice(_LOWER_ALNUM) for _ in range(8))
    return "chatcmpl-tool-" + secrets.token_hex(16)


@dataclass
class _Answer:
    """One model turn, shaped for the wire."""

    completion_id: str
    created: int
    model: str
    text: str
    calls: list[dict]  # {"id", "name", "arguments"}
    finish_reason: str
    usage: dict


class ChatCompletionsAPI:
    def __init__(self, fake: FakeOpenAI) -> None:
        self.fake = fake
        self.flavour = "vllm"
        self.max_chunks = 24
        self.chunk_interval = 0.005
        self.aborted: list[str] = []
        self._breaks: list[_StreamBreak] = []
        self._active: dict[str, str] = {}  # completion id -> thread
        self._seen_inputs: set[str] = set()
        self._stopping = asyncio.Event()

    def routes(self) -> list[tuple[str, str, Any]]:
        return [("POST", PATH, self.create)]

    # --- test controls ---------------------------------------------------------------------

    @property
    def requests(self) -> list[Any]:
        """The body of every chat completion request received, oldest first."""
        return [r.json for r in self.fake.requests if r.path == PATH and r.method == "POST"]

    def break_next_stream(
        self, *, after_chunks: int = 1, how: str = "cut", seconds: float = 30.0
    ) -> None:
        """The next streamed answer breaks after ``after_chunks`` chunks.

        ``how``: ``"cut"`` (the connection drops, no ``[DONE]``), ``"error"`` (an in-band
        ``data: {"error": …}`` event ends it, as vLLM reports engine errors; the SDK raises
        ``APIError``) or ``"stall"`` (nothing for ``seconds``, or until the fake stops, then
        the rest).
        """
        if how not in ("cut", "error", "stall"):
            raise ValueError(f"unknown stream break {how!r}")
        self._breaks.append(_StreamBreak(after_chunks, how, seconds))

    def busy(self) -> list[str]:
        return list(self._active)

    def shutdown(self) -> None:
        self._stopping.set()

    # --- the endpoint ------------------------------------------------------------------------

    async def create(self, request: web.Request) -> web.StreamResponse:
        if self.flavour not in FLAVOURS:
            raise ValueError(f"fake.chat.flavour must be one of {FLAVOURS}, not {self.flavour!r}")
        body = request[REC].json
        validate_request(body, self.flavour)
        thread = thread_key(body)
        ctx = model_context(body, thread)
        self._record_input(thread, body["messages"])
        reply = self.fake.model.next_reply(ctx)
        self._check_supported(reply)
        answer = self._answer(body, reply)
        self._active[answer.completion_id] = thread
        self.fake.activate(thread, answer.completion_id)
        try:
            if body.get("stream"):
                return await self._stream(request, body, reply, answer)
            await self._pause(reply.latency)
            if reply.fail:
                raise ApiError(
                    500,
                    f"The model failed to generate a response ({reply.fail}).",
                    type="server_error",
                    code=reply.fail,
                )
            return web.json_response(self._completion(answer))
        finally:
            del self._active[answer.completion_id]
            self.fake.deactivate(thread, answer.completion_id)

    def _record_input(self, thread: str, messages: list[dict]) -> None:
        """Record new user messages and tool outputs once, however often they are re-sent."""
        fresh = _new_input(messages)
        last_assistant = next((m for m in reversed(messages) if m["role"] == "assistant"), None)
        key = hashlib.sha256(
            json.dumps([thread, last_assistant, fresh], sort_keys=True).encode()
        ).hexdigest()
        if key in self._seen_inputs:
            return
        self._seen_inputs.add(key)
        for m in fresh:
            if m["role"] == "user":
                self.fake.record_user_message(thread, content_text(m.get("content")))
            elif m["role"] == "tool":
                self.fake.record_tool_output(
                    m["tool_call_id"], content_text(m.get("content")), "chat", thread
                )

    def _check_supported(self, reply: Reply) -> None:
        unsupported = []
        if reply.code:
            unsupported.append("CodeCall (chat servers have no code interpreter)")
        if reply.citations:
            unsupported.append("Citation (chat servers have no file search)")
        if reply.status not in (None, "incomplete"):
            unsupported.append(f"status={reply.status!r}")
        if unsupported:
            message = "test setup: the scripted reply has " + ", ".join(unsupported)
            raise ApiError(400, f"FakeOpenAI: {message}", violation=message)

    def _answer(self, body: dict, reply: Reply) -> _Answer:
        completion_id = (
            f"chatcmpl-{secrets.randbelow(999) + 1}"
            if self.flavour == "ollama"
            else "chatcmpl-" + secrets.token_hex(16)
        )
        calls = [
            {
                "id": fc.call_id or _call_id(self.flavour),
                "name": fc.name,
                "arguments": fc.arguments,
            }
            for fc in reply.function_calls
        ]
        text = reply.text or ""
        prompt = sum(approx_tokens(content_text(m.get("content"))) + 4 for m in body["messages"])
        completion = approx_tokens(text) + sum(approx_tokens(c["arguments"]) for c in calls)
        if reply.status == "incomplete":
            finish = "length"
        else:
            finish = "tool_calls" if calls else "stop"
        return _Answer(
            completion_id=completion_id,
            created=self.fake.now(),
            model=str(body["model"]),
            text=text,
            calls=calls,
            finish_reason=finish,
            usage={
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        )

    def _completion(self, a: _Answer) -> dict:
        message: dict[str, Any] = {"role": "assistant", "content": a.text or None}
        if self.flavour == "ollama":
            message["content"] = a.text
        else:
            message["refusal"] = None
        if a.calls:
            message["tool_calls"] = [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": c["arguments"]},
                }
                for c in a.calls
            ]
        obj: dict[str, Any] = {
            "id": a.completion_id,
            "object": "chat.completion",
            "created": a.created,
            "model": a.model,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": a.finish_reason}
            ],
            "usage": a.usage,
        }
        if self.flavour == "ollama":
            obj["system_fingerprint"] = "fp_ollama"
        return obj

    # --- streaming ------------------------------------------------------------------------------

    def chunks(self, a: _Answer, include_usage: bool, reply: Reply | None = None) -> list[dict]:
        """Every ``chat.completion.chunk`` of an answer, in order, as the flavour sends them.

        A reply that sets a pace (``write_time``, ``delta_interval``) is cut into deltas of
        its ``chunk_chars``, like the other protocols; otherwise into ``max_chunks`` pieces.
        """
        ollama = self.flavour == "ollama"
        deltas: list[dict] = []
        if not ollama:
            deltas.append({"role": "assistant", "content": ""})
        text_pieces = (
            reply.pieces(a.text)
            if reply is not None and _paced(reply)
            else pieces(a.text, self.max_chunks)
        )
        for piece in text_pieces:
            deltas.append({"role": "assistant", "content": piece} if ollama else {"content": piece})
        for i, call in enumerate(a.calls):
            if ollama:
                whole = {
                    "id": call["id"],
                    "index": 0,
                    "type": "function",
                    "function": {"name": call["name"], "arguments": call["arguments"]},
                }
                deltas.append({"role": "assistant", "content": "", "tool_calls": [whole]})
                continue
            first = {
                "index": i,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": ""},
            }
            deltas.append({"tool_calls": [first]})
            for fragment in pieces(call["arguments"], self.max_chunks):
                more = {"index": i, "id": "", "function": {"arguments": fragment}}
                deltas.append({"tool_calls": [more]})
        chunks = [self._chunk(a, delta, None, include_usage) for delta in deltas]
        last = {"role": "assistant", "content": ""} if ollama else {"content": ""}
        chunks.append(self._chunk(a, last, a.finish_reason, include_usage))
        if include_usage:
            usage_chunk = self._envelope(a)
            usage_chunk["choices"] = []
            usage_chunk["usage"] = a.usage
            chunks.append(usage_chunk)
        return chunks

    def _envelope(self, a: _Answer) -> dict:
        envelope: dict[str, Any] = {
            "id": a.completion_id,
            "object": "chat.completion.chunk",
            "created": a.created,
            "model": a.model,
        }
        if self.flavour == "ollama":
            envelope["system_fingerprint"] = "fp_ollama"
        return envelope

    def _chunk(self, a: _Answer, delta: dict, finish: str | None, include_usage: bool) -> dict:
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
        if self.flavour == "vllm":
            choice["logprobs"] = None
            if finish is not None:
                choice["stop_reason"] = None
        chunk = self._envelope(a)
        chunk["choices"] = [choice]
        if include_usage:
            chunk["usage"] = None
        return chunk

    async def _stream(
        self, request: web.Request, body: dict, reply: Reply, a: _Answer
    ) -> web.StreamResponse:
        options = body.get("stream_options") or {}
        chunks = self.chunks(a, bool(options.get("include_usage")), reply)
        paced = _paced(reply)
        text_chunks = sum(
            1 for c in chunks for ch in c.get("choices") or [] if ch["delta"].get("content")
        )
        interval = reply.text_interval(text_chunks) if paced else self.chunk_interval
        brk = self._breaks.pop(0) if self._breaks else None
        if request.get(CUT_STREAM):
            brk = _StreamBreak(len(chunks) // 2, "cut", 0.0)
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        try:
            await self._pause(reply.wait_before_output)
            if reply.hold is not None:
                await reply.hold.wait()
            if reply.fail:
                failed = f"The model failed to generate a response ({reply.fail})."
                await self._send_error(resp, failed, reply.fail)
                await resp.write_eof()
                return resp
            for n, chunk in enumerate(chunks):
                if brk is not None and n == brk.after_chunks:
                    if brk.how == "cut":
                        self._cut(request)
                        return resp
                    if brk.how == "error":
                        await self._send_error(resp, _SERVER_ERROR, "server_error")
                        await resp.write_eof()
                        return resp
                    await self._pause(brk.seconds)
                if n > 0:
                    await self._pause(interval)
                await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
        except ConnectionError:
            self.aborted.append(a.completion_id)
        return resp

    async def _send_error(self, resp: web.StreamResponse, message: str, code: str) -> None:
        error = {"message": message, "type": "server_error", "param": None, "code": code}
        await resp.write(b"data: " + json.dumps({"error": error}).encode() + b"\n\n")

    def _cut(self, request: web.Request) -> None:
        """Drop the connection mid-answer, as a crashing server does."""
        transport = request.transport
        if transport is not None:
            transport.abort()

    async def _pause(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
