"""Responses + Conversations + container files for the fake OpenAI server."""

from __future__ import annotations

import asyncio
import base64
import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fakes.openai_model import (
    REC,
    ApiError,
    ModelContext,
    Reply,
    all_values,
    approx_tokens,
    first,
    new_id,
    not_found,
    paginate,
)
from tests.fakes.openai_response_stream import ResponseStream
from tests.fakes.openai_sse import EventLog, serve_log, stream_flag, streaming_unsupported

if TYPE_CHECKING:
    from tests.fakes.openai_server import FakeOpenAI

CI_OUTPUTS = "code_interpreter_call.outputs"
_TEXT_PARTS = ("input_text", "output_text", "text")


@dataclass
class _Conversation:
    id: str
    created_at: int
    metadata: dict
    items: list[dict] = field(default_factory=list)
    active: set[str] = field(default_factory=set)
    container_id: str | None = None

    def wire(self) -> dict:
        return {
            "id": self.id,
            "object": "conversation",
            "created_at": self.created_at,
            "metadata": self.metadata,
        }


@dataclass
class _Response:
    obj: dict
    conv_id: str | None
    thread: str  # conversation id, or the response id for conversation-less responses
    input_items: list[dict]
    reply: Reply
    include: set[str]
    tools: list[dict]
    query: str | None = None  # the last user text, shown as the file search query
    done: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None
    log: EventLog = field(default_factory=EventLog)  # every streaming event, for replay
    code_run_times: dict[str, float] = field(default_factory=dict)  # item id -> seconds


def message_text(item: dict) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    parts = [p.get("text", "") for p in content or [] if p.get("type") in _TEXT_PARTS]
    return "\n".join(parts)


def simple_item(item: dict) -> dict | None:
    """A conversation item as the scripted model sees it."""
    kind = item.get("type", "message")
    if kind == "message":
        return {"role": item.get("role"), "text": message_text(item)}
    if kind == "function_call":
        return {
            "type": "function_call",
            "call_id": item["call_id"],
            "name": item.get("name"),
            "arguments": item.get("arguments"),
        }
    if kind == "function_call_output":
        return {
            "type": "function_call_output",
            "call_id": item["call_id"],
            "output": item["output"],
        }
    return None


def render_item(item: dict, include: set[str]) -> dict:
    out = copy.deepcopy(item)
    if out.get("type") == "code_interpreter_call" and CI_OUTPUTS not in include:
        out["outputs"] = None
    return out


class ResponsesAPI:
    def __init__(self, fake: FakeOpenAI) -> None:
        self.fake = fake
        self.conversations: dict[str, _Conversation] = {}
        self.responses: dict[str, _Response] = {}

    def routes(self) -> list[tuple[str, str, Any]]:
        return [
            ("POST", "/v1/conversations", self.create_conversation),
            ("GET", "/v1/conversations/{cid}", self.get_conversation),
            ("POST", "/v1/conversations/{cid}", self.update_conversation),
            ("DELETE", "/v1/conversations/{cid}", self.delete_conversation),
            ("GET", "/v1/conversations/{cid}/items", self.list_items),
            ("POST", "/v1/conversations/{cid}/items", self.create_items),
            ("GET", "/v1/conversations/{cid}/items/{iid}", self.get_item),
            ("DELETE", "/v1/conversations/{cid}/items/{iid}", self.delete_item),
            ("POST", "/v1/responses", self.create_response),
            ("GET", "/v1/responses/{rid}", self.get_response),
            ("DELETE", "/v1/responses/{rid}", self.delete_response),
            ("POST", "/v1/responses/{rid}/cancel", self.cancel_response),
            ("GET", "/v1/responses/{rid}/input_items", self.list_input_items),
        ]

    # --- state access ----------------------------------------------------------------------

    def busy(self) -> list[str]:
        return [
            rid for rid, r in self.responses.items() if r.obj["status"] in ("queued", "in_progress")
        ]

    def shutdown(self) -> None:
        for r in self.responses.values():
            r.done.set()
            r.log.close()

    def snapshot(self, response_id: str) -> dict:
        r = self._response(response_id)
        return self._render(r, {CI_OUTPUTS})

    def items_snapshot(self, conv_id: str) -> list[dict]:
        return copy.deepcopy(self._conv(conv_id).items)

    def _conv(self, cid: str) -> _Conversation:
        conv = self.conversations.get(cid)
        if conv is None:
            raise not_found(f"Conversation with id '{cid}' not found.")
        return conv

    def _response(self, rid: str) -> _Response:
        r = self.responses.get(rid)
        if r is None:
            raise not_found(f"Response with id '{rid}' not found.")
        return r

    def _render(self, r: _Response, include: set[str]) -> dict:
        obj = copy.deepcopy(r.obj)
        obj["output"] = [render_item(it, include) for it in r.obj["output"]]
        return obj

    def rendered(self, r: _Response) -> dict:
        """A snapshot of the response as its creator sees it (the ``include`` it asked for).

        Shallow but safe: the response's own fields are replaced, never changed in place.
        """
        return {**r.obj, "output": [render_item(it, r.include) for it in r.obj["output"]]}

    def rendered_item(self, r: _Response, item: dict) -> dict:
        return render_item(item, r.include)

    def emit(self, r: _Response, type_: str, **fields: Any) -> None:
        """Append a streaming event; sequence numbers count from 0 per response."""
        event = {"type": type_, "sequence_number": len(r.log.events), **fields}
        r.log.append(type_, event)

    # --- input normalisation -----------------------------------------------------------------

    def _normalize(self, raw: Any) -> list[dict]:
        if raw is None:
            return []
        if isinstance(raw, str):
            raw = [{"role": "user", "content": raw}]
        if not isinstance(raw, list):
            raise ApiError(
                400, "Invalid type for 'input': expected a string or an array.", param="input"
            )
        items = []
        for i, el in enumerate(raw):
            if not isinstance(el, dict):
                raise ApiError(400, f"Invalid type for 'input[{i}]'.", param=f"input[{i}]")
            items.append(self._normalize_item(el, i))
        return items

    def _normalize_item(self, el: dict, i: int) -> dict:
        kind = el.get("type", "message")
        if kind == "message":
            role = el.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise ApiError(
                    400, f"Invalid value for 'input[{i}].role'.", param=f"input[{i}].role"
                )
            content = el.get("content")
            if isinstance(content, str):
                part_type = "output_text" if role == "assistant" else "input_text"
                part: dict = {"type": part_type, "text": content}
                if role == "assistant":
                    part["annotations"] = []
                parts = [part]
            elif isinstance(content, list):
                parts = copy.deepcopy(content)
            else:
                raise ApiError(
                    400, f"Invalid type for 'input[{i}].content'.", param=f"input[{i}].content"
                )
            for p in parts:
                if p.get("type") in ("input_file", "input_image") and p.get("file_id"):
                    self.fake.require_file(p["file_id"])
            return {
                "id": el.get("id") or new_id("msg_", hex_len=48),
                "type": "message",
                "role": role,
                "content": parts,
                "status": "completed",
            }
        if kind == "function_call_output":
            if not el.get("call_id"):
                raise ApiError(
                    400,
                    f"Missing required parameter: 'input[{i}].call_id'.",
                    param=f"input[{i}].call_id",
                )
            return {
                "id": el.get("id") or new_id("fco_", hex_len=48),
                "type": "function_call_output",
                "call_id": el["call_id"],
                "output": el.get("output", ""),
                "status": "completed",
            }
        item = copy.deepcopy(el)
        item.setdefault("id", new_id(kind[:2] + "_", hex_len=48))
        return item

    def _check_can_add(self, conv: _Conversation, items: list[dict]) -> None:
        """conversation_locked, and every open function call answered before anything else."""
        if conv.active:
            raise ApiError(
                400,
                "Another process is currently operating on this conversation. "
                "Please retry in a few seconds.",
                code="conversation_locked",
                violation=f"conversation_locked {conv.id}",
            )
        existing = conv.items
        calls = [it["call_id"] for it in existing if it.get("type") == "function_call"]
        answered = {it["call_id"] for it in existing if it.get("type") == "function_call_output"}
        new_calls = {it["call_id"] for it in items if it.get("type") == "function_call"}
        supplied = [it["call_id"] for it in items if it.get("type") == "function_call_output"]
        for call_id in supplied:
            if call_id not in calls and call_id not in new_calls:
                raise ApiError(
                    400,
                    f"No tool call found for function call output with call_id {call_id}.",
                    param="input",
                    violation=f"unknown tool output {call_id}",
                )
        for call_id in calls:
            if call_id not in answered and call_id not in supplied:
                raise ApiError(
                    400,
                    f"No tool output found for function call {call_id}.",
                    param="input",
                    violation=f"missing tool output {call_id}",
                )

    # --- conversations -------------------------------------------------------------------------

    async def create_conversation(self, request: web.Request) -> web.Response:
        body = request[REC].json or {}
        conv = _Conversation(
            id=new_id("conv_", hex_len=48),
            created_at=self.fake.now(),
            metadata=body.get("metadata") or {},
        )
        items = self._normalize(body.get("items"))
        self._check_can_add(conv, items)
        self.conversations[conv.id] = conv
        self._accept_items(conv.id, items)
        conv.items.extend(items)
        return web.json_response(conv.wire())

    async def get_conversation(self, request: web.Request) -> web.Response:
        return web.json_response(self._conv(request.match_info["cid"]).wire())

    async def update_conversation(self, request: web.Request) -> web.Response:
        conv = self._conv(request.match_info["cid"])
        body = request[REC].json or {}
        if "metadata" in body:
            conv.metadata = body["metadata"] or {}
        return web.json_response(conv.wire())

    async def delete_conversation(self, request: web.Request) -> web.Response:
        cid = request.match_info["cid"]
        self._conv(cid)
        del self.conversations[cid]
        return web.json_response({"id": cid, "object": "conversation.deleted", "deleted": True})

    async def list_items(self, request: web.Request) -> web.Response:
        conv = self._conv(request.match_info["cid"])
        query = request[REC].query
        include = set(all_values(query, "include"))
        page = paginate([render_item(it, include) for it in conv.items], query)
        return web.json_response(page)

    async def create_items(self, request: web.Request) -> web.Response:
        conv = self._conv(request.match_info["cid"])
        body = request[REC].json or {}
        items = self._normalize(body.get("items"))
        self._check_can_add(conv, items)
        self._accept_items(conv.id, items)
        conv.items.extend(items)
        return web.json_response(
            {
                "object": "list",
                "data": copy.deepcopy(items),
                "first_id": items[0]["id"] if items else None,
                "last_id": items[-1]["id"] if items else None,
                "has_more": False,
            }
        )

    async def get_item(self, request: web.Request) -> web.Response:
        conv = self._conv(request.match_info["cid"])
        iid = request.match_info["iid"]
        include = set(all_values(request[REC].query, "include"))
        for it in conv.items:
            if it["id"] == iid:
                return web.json_response(render_item(it, include))
        raise not_found(f"Item with id '{iid}' not found.")

    async def delete_item(self, request: web.Request) -> web.Response:
        conv = self._conv(request.match_info["cid"])
        iid = request.match_info["iid"]
        before = len(conv.items)
        conv.items = [it for it in conv.items if it["id"] != iid]
        if len(conv.items) == before:
            raise not_found(f"Item with id '{iid}' not found.")
        return web.json_response(conv.wire())

    def _accept_items(self, thread: str, items: list[dict]) -> None:
        for it in items:
            if it.get("type") == "message" and it.get("role") == "user":
                self.fake.record_user_message(thread, message_text(it))
            elif it.get("type") == "function_call_output":
                self.fake.record_tool_output(it["call_id"], it["output"], "responses", thread)

    # --- responses -----------------------------------------------------------------------------

    async def create_response(self, request: web.Request) -> web.StreamResponse:
        body = request[REC].json or {}
        stream = stream_flag(body.get("stream"))
        if stream and not self.fake.streaming_supported:
            raise streaming_unsupported()
        model = body.get("model")
        if not model:
            raise ApiError(400, "Missing required parameter: 'model'.", param="model")
        conv_ref = body.get("conversation")
        cid = conv_ref.get("id") if isinstance(conv_ref, dict) else conv_ref
        if cid and body.get("previous_response_id"):
            raise ApiError(
                400,
                "Parameters 'conversation' and 'previous_response_id' cannot be used together.",
                param="conversation",
            )
        conv = self._conv(cid) if cid else None
        items = self._normalize(body.get("input"))
        if conv is not None:
            self._check_can_add(conv, items)
        background = bool(body.get("background"))
        rid = new_id("resp_", hex_len=48)
        thread = cid or rid
        tools = body.get("tools") or []
        instructions = body.get("instructions")
        prior = [s for s in map(simple_item, conv.items if conv else []) if s is not None]
        history = prior + [s for s in map(simple_item, items) if s is not None]
        user_texts = [h["text"] for h in history if h.get("role") == "user"]
        ctx = ModelContext(
            protocol="responses",
            thread_id=thread,
            instructions=instructions,
            model=model,
            tools=copy.deepcopy(tools),
            history=history,
            last_user_text=user_texts[-1] if user_texts else None,
            tool_outputs=[
                {"call_id": it["call_id"], "output": it["output"]}
                for it in items
                if it.get("type") == "function_call_output"
            ],
            files=[
                p["file_id"]
                for it in items
                if it.get("type") == "message" and it.get("role") == "user"
                for p in it["content"]
                if p.get("type") in ("input_file", "input_image") and p.get("file_id")
            ],
        )
        self._accept_items(thread, items)
        reply = self.fake.model.next_reply(ctx)
        obj = {
            "id": rid,
            "object": "response",
            "created_at": self.fake.now(),
            "status": "queued" if background else "in_progress",
            "background": background,
            "completed_at": None,
            "conversation": {"id": cid} if cid else None,
            "error": None,
            "incomplete_details": None,
            "instructions": instructions,
            "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": body.get("max_tool_calls"),
            "metadata": body.get("metadata") or {},
            "model": model,
            "output": [],
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None},
            "service_tier": "default",
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": copy.deepcopy(tools),
            "top_p": body.get("top_p", 1.0),
            "truncation": body.get("truncation", "disabled"),
            "usage": None,
            "user": body.get("user"),
        }
        r = _Response(
            obj=obj,
            conv_id=cid,
            thread=thread,
            input_items=items,
            reply=reply,
            include=set(body.get("include") or []),
            tools=tools,
            query=ctx.last_user_text,
        )
        self.responses[rid] = r
        if conv is not None:
            conv.active.add(rid)
        self.fake.activate(thread, rid)
        self.emit(r, "response.created", response=self.rendered(r))
        if background:
            self.emit(r, "response.queued", response=self.rendered(r))
        stuck = stream and background and self.fake.take_stuck_in_queued()
        if not stuck:
            r.task = self.fake.spawn(self._progress(r))
        if stream and not self.fake.fault_pending(request):
            return await serve_log(
                self.fake,
                request,
                r.log,
                0,
                drop_after=1 if stuck else None,
                on_disconnect=None if background else lambda: self._abandon(r),
            )
        if background:
            return web.json_response(self._render(r, r.include))
        await r.done.wait()
        return web.json_response(self._render(r, r.include))

    def _abandon(self, r: _Response) -> None:
        """A foreground stream's client went away: the model stops, the turn is lost."""
        if r.obj["status"] in ("queued", "in_progress"):
            if r.task is not None:
                r.task.cancel()
            self._end(r, "cancelled", [])

    async def get_response(self, request: web.Request) -> web.StreamResponse:
        r = self._response(request.match_info["rid"])
        query = request[REC].query
        if stream_flag(first(query, "stream") or ""):
            return await self._resume(request, r, first(query, "starting_after"))
        include = r.include | set(all_values(query, "include"))
        return web.json_response(self._render(r, include))

    async def _resume(
        self, request: web.Request, r: _Response, starting_after: str | None
    ) -> web.StreamResponse:
        """``GET /responses/{id}?stream=true&starting_after=N``: replay after N, then live."""
        if not self.fake.streaming_supported:
            raise streaming_unsupported()
        if not r.obj["background"]:
            raise ApiError(
                400,
                "This response cannot be streamed because it was not created with background=true.",
                param="stream",
                violation=f"stream resume of foreground response {r.obj['id']}",
            )
        after = -1
        if starting_after not in (None, ""):
            try:
                after = int(starting_after)
            except ValueError as e:
                raise ApiError(
                    400, "Invalid 'starting_after': expected an integer.", param="starting_after"
                ) from e
            if after < -1:
                raise ApiError(
                    400, "Invalid 'starting_after': must be >= 0.", param="starting_after"
                )
        return await serve_log(self.fake, request, r.log, after + 1)

    async def list_input_items(self, request: web.Request) -> web.Response:
        r = self._response(request.match_info["rid"])
        query = request[REC].query
        include = set(all_values(query, "include"))
        return web.json_response(
            paginate([render_item(it, include) for it in r.input_items], query)
        )

    async def delete_response(self, request: web.Request) -> web.Response:
        rid = request.match_info["rid"]
        self._response(rid)
        del self.responses[rid]
        return web.json_response({"id": rid, "object": "response.deleted", "deleted": True})

    async def cancel_response(self, request: web.Request) -> web.Response:
        r = self._response(request.match_info["rid"])
        if not r.obj["background"]:
            raise ApiError(400, "Only responses created with background=true can be cancelled.")
        if r.obj["status"] in ("queued", "in_progress"):
            if r.task is not None:
                r.task.cancel()
            # No event: the SDK has no "response.cancelled"; open streams just end.
            self._end(r, "cancelled", [])
        return web.json_response(self._render(r, r.include))

    async def _progress(self, r: _Response) -> None:
        await ResponseStream(self, r).play()

    def fail(
        self, r: _Response, code: str, event: str | None, *, error_event: bool = False
    ) -> None:
        """The model failed: ``response.failed`` (``event``) or an ``error`` event."""
        message = f"The model failed to generate a response ({code})."
        r.obj["error"] = {"code": code, "message": message}
        if error_event:
            self.emit(r, "error", code=code, message=message, param=None)
        self._end(r, "failed", [], event)

    def settle(self, r: _Response, output: list[dict]) -> None:
        """Every output item was played: the response reaches its scripted end."""
        status = r.reply.status or "completed"
        if status == "incomplete":
            r.obj["incomplete_details"] = {"reason": "max_output_tokens"}
            for it in output:
                if it["type"] == "message":
                    it["status"] = "incomplete"
        elif status != "completed":
            output = []
        event = {"completed": "response.completed", "incomplete": "response.incomplete"}
        self._end(r, status, output, event.get(status))

    def _end(self, r: _Response, status: str, output: list[dict], event: str | None = None) -> None:
        r.obj["status"] = status
        r.obj["output"] = output
        if status == "completed":
            r.obj["completed_at"] = self.fake.now()
        if status in ("completed", "incomplete"):
            in_tokens = (
                sum(
                    approx_tokens(message_text(it))
                    for it in r.input_items
                    if it.get("type") == "message"
                )
                + 10
            )
            out_tokens = sum(
                approx_tokens(message_text(it)) for it in output if it.get("type") == "message"
            )
            r.obj["usage"] = {
                "input_tokens": in_tokens,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": out_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": in_tokens + out_tokens,
            }
            conv = self.conversations.get(r.conv_id) if r.conv_id else None
            if conv is not None:
                conv.items.extend(r.input_items)
                conv.items.extend(copy.deepcopy(output))
        conv = self.conversations.get(r.conv_id) if r.conv_id else None
        if conv is not None:
            conv.active.discard(r.obj["id"])
        self.fake.deactivate(r.thread, r.obj["id"])
        if event is not None:
            self.emit(r, event, response=self.rendered(r))
        r.log.close()
        r.done.set()

    def _container_for(self, r: _Response) -> str:
        conv = self.conversations.get(r.conv_id) if r.conv_id else None
        for tool in r.tools:
            if tool.get("type") == "code_interpreter" and isinstance(tool.get("container"), str):
                cid = tool["container"]
                self.fake.containers.setdefault(cid, {})
                return cid
        if conv is not None and conv.container_id:
            return conv.container_id
        cid = new_id("cntr_", hex_len=48)
        self.fake.containers[cid] = {}
        if conv is not None:
            conv.container_id = cid
        return cid

    def build_output(self, r: _Response, reply: Reply) -> list[dict]:
        """The response's final output items (files the code made are stored now)."""
        items: list[dict] = []
        # (file id, filename, is_image) for container_file_citation annotations
        cfiles: list[tuple[str, str, bool]] = []
        container_id = None
        if reply.citations:
            items.append(
                {
                    "id": new_id("fs_", hex_len=48),
                    "type": "file_search_call",
                    "status": "completed",
                    "queries": [r.query] if r.query else [],
                    "results": None,
                }
            )
        for code in reply.code:
            container_id = container_id or self._container_for(r)
            outputs: list[dict] = []
            if code.logs:
                outputs.append({"type": "logs", "logs": code.logs})
            if code.image_png is not None:
                fid = self.fake.add_container_file(container_id, None, code.image_png)
                b64 = base64.b64encode(code.image_png).decode()
                outputs.append({"type": "image", "url": f"data:image/png;base64,{b64}"})
                cfiles.append((fid, self.fake.containers[container_id][fid]["filename"], True))
            if code.file_name is not None:
                fid = self.fake.add_container_file(
                    container_id, code.file_name, code.file_bytes or b""
                )
                cfiles.append((fid, code.file_name, False))
            ci_id = new_id("ci_", hex_len=48)
            r.code_run_times[ci_id] = code.run_time
            items.append(
                {
                    "id": ci_id,
                    "type": "code_interpreter_call",
                    "code": code.code,
                    "container_id": container_id,
                    "status": "completed",
                    "outputs": outputs,
                }
            )
        if reply.function_calls:
            # A model may say something before it calls a function ("Let's check…").
            if reply.text:
                items.append(_message_item(reply.text, []))
            for fc in reply.function_calls:
                items.append(
                    {
                        "id": new_id("fc_", hex_len=48),
                        "type": "function_call",
                        "call_id": fc.call_id or new_id("call_"),
                        "name": fc.name,
                        "arguments": fc.arguments,
                        "status": "completed",
                    }
                )
            return items
        text = reply.text or ""
        for _fid, fname, is_image in cfiles:
            link = f"sandbox:/mnt/data/{fname}"
            if not is_image and link not in text:
                text += f"\n\n[{fname}]({link})"
        annotations: list[dict] = []
        for c in reply.citations:
            pos = text.find(c.quote) if c.quote else -1
            index = pos + len(c.quote) if pos >= 0 else len(text)
            filename = self.fake.files.get(c.file_id, {}).get("filename", c.file_id)
            annotations.append(
                {
                    "type": "file_citation",
                    "file_id": c.file_id,
                    "filename": filename,
                    "index": index,
                }
            )
        for fid, fname, _is_image in cfiles:
            link = f"sandbox:/mnt/data/{fname}"
            start = text.find(link)
            start, end = (start, start + len(link)) if start >= 0 else (len(text), len(text))
            annotations.append(
                {
                    "type": "container_file_citation",
                    "container_id": container_id,
                    "file_id": fid,
                    "filename": fname,
                    "start_index": start,
                    "end_index": end,
                }
            )
        items.append(_message_item(text, annotations))
        return items


def _message_item(text: str, annotations: list[dict]) -> dict:
    return {
        "id": new_id("msg_", hex_len=48),
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [
            {"type": "output_text", "text": text, "annotations": annotations, "logprobs": []}
        ],
    }
