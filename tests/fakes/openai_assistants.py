"""Assistants v2 endpoints (assistants, threads, messages, runs, run steps) of the fake."""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

from tests.fakes.openai_model import REC, ApiError, new_id, not_found, paginate
from tests.fakes.openai_runs import (
    ACTIVE,
    RUN_EXPIRY,
    TURN_END,
    RunEngine,
    RunState,
    ThreadState,
)
from tests.fakes.openai_sse import serve_log, stream_flag, streaming_unsupported


def _message_parts(content: Any) -> tuple[list[dict], str, list[str]]:
    """Wire content, plain text and image file ids of a message's ``content`` param."""
    if isinstance(content, str):
        return [{"type": "text", "text": {"value": content, "annotations": []}}], content, []
    if not isinstance(content, list):
        raise ApiError(400, "Invalid type for 'content'.", param="content")
    parts, texts, files = [], [], []
    for p in content:
        kind = p.get("type")
        if kind == "text":
            text = p.get("text", "")
            parts.append({"type": "text", "text": {"value": text, "annotations": []}})
            texts.append(text)
        elif kind == "image_file":
            parts.append(copy.deepcopy(p))
            files.append(p["image_file"]["file_id"])
        elif kind == "image_url":
            parts.append(copy.deepcopy(p))
        else:
            raise ApiError(400, f"Invalid content part type '{kind}'.", param="content")
    return parts, "\n".join(texts), files


class AssistantsAPI(RunEngine):
    def routes(self) -> list[tuple[str, str, Any]]:
        t = "/v1/threads/{tid}"
        r = t + "/runs/{rid}"
        return [
            ("POST", "/v1/assistants", self.create_assistant),
            ("GET", "/v1/assistants", self.list_assistants),
            ("GET", "/v1/assistants/{aid}", self.get_assistant),
            ("POST", "/v1/assistants/{aid}", self.update_assistant),
            ("DELETE", "/v1/assistants/{aid}", self.delete_assistant),
            ("POST", "/v1/threads", self.create_thread),
            ("POST", "/v1/threads/runs", self.create_thread_and_run),
            ("GET", t, self.get_thread),
            ("POST", t, self.update_thread),
            ("DELETE", t, self.delete_thread),
            ("POST", t + "/messages", self.create_message),
            ("GET", t + "/messages", self.list_messages),
            ("GET", t + "/messages/{mid}", self.get_message),
            ("POST", t + "/runs", self.create_run),
            ("GET", t + "/runs", self.list_runs),
            ("GET", r, self.get_run),
            ("POST", r + "/cancel", self.cancel_run),
            ("POST", r + "/submit_tool_outputs", self.submit_tool_outputs),
            ("GET", r + "/steps", self.list_steps),
            ("GET", r + "/steps/{sid}", self.get_step),
        ]

    # --- lookups ---------------------------------------------------------------------------

    def _thread(self, tid: str) -> ThreadState:
        thread = self.threads.get(tid)
        if thread is None:
            raise not_found(f"No thread found with id '{tid}'.")
        return thread

    def _run(self, tid: str, rid: str) -> RunState:
        self._thread(tid)
        run = self.runs.get(rid)
        if run is None or run.thread_id != tid:
            raise not_found(f"No run found with id '{rid}'.")
        return run

    def _assistant(self, aid: str) -> dict:
        asst = self.fake.assistants.get(aid)
        if asst is None:
            raise not_found(f"No assistant found with id '{aid}'.")
        return asst

    def _active_run(self, thread: ThreadState) -> RunState | None:
        for rid in thread.runs:
            if self.runs[rid].status in ACTIVE:
                return self.runs[rid]
        return None

    # --- assistants ----------------------------------------------------------------------------

    async def create_assistant(self, request: web.Request) -> web.Response:
        body = request[REC].json or {}
        if not body.get("model"):
            raise ApiError(400, "Missing required parameter: 'model'.", param="model")
        aid = new_id("asst_")
        self.fake.assistants[aid] = {
            "id": aid,
            "object": "assistant",
            "created_at": self.fake.now(),
            "name": body.get("name"),
            "description": body.get("description"),
            "model": body["model"],
            "instructions": body.get("instructions"),
            "tools": body.get("tools") or [],
            "tool_resources": body.get("tool_resources") or {},
            "metadata": body.get("metadata") or {},
            "temperature": body.get("temperature", 1.0),
            "top_p": body.get("top_p", 1.0),
            "response_format": body.get("response_format", "auto"),
        }
        return web.json_response(self.fake.assistants[aid])

    async def list_assistants(self, request: web.Request) -> web.Response:
        objs = list(self.fake.assistants.values())
        return web.json_response(paginate(objs, request[REC].query))

    async def get_assistant(self, request: web.Request) -> web.Response:
        return web.json_response(self._assistant(request.match_info["aid"]))

    async def update_assistant(self, request: web.Request) -> web.Response:
        asst = self._assistant(request.match_info["aid"])
        body = request[REC].json or {}
        for key in (
            "name",
            "description",
            "model",
            "instructions",
            "tools",
            "tool_resources",
            "metadata",
            "temperature",
            "top_p",
            "response_format",
        ):
            if key in body:
                asst[key] = body[key]
        return web.json_response(asst)

    async def delete_assistant(self, request: web.Request) -> web.Response:
        aid = request.match_info["aid"]
        self._assistant(aid)
        del self.fake.assistants[aid]
        return web.json_response({"id": aid, "object": "assistant.deleted", "deleted": True})

    # --- threads and messages --------------------------------------------------------------------

    async def create_thread(self, request: web.Request) -> web.Response:
        thread = self._new_thread(request[REC].json or {})
        return web.json_response(thread.obj)

    def _new_thread(self, body: dict) -> ThreadState:
        tid = new_id("thread_")
        thread = ThreadState(
            obj={
                "id": tid,
                "object": "thread",
                "created_at": self.fake.now(),
                "metadata": body.get("metadata") or {},
                "tool_resources": body.get("tool_resources") or {},
            }
        )
        messages = body.get("messages") or []
        prepared = [self._prepare_message(tid, m) for m in messages]
        self.threads[tid] = thread
        for msg in prepared:
            self._add_message(thread, *msg)
        return thread

    async def get_thread(self, request: web.Request) -> web.Response:
        return web.json_response(self._thread(request.match_info["tid"]).obj)

    async def update_thread(self, request: web.Request) -> web.Response:
        thread = self._thread(request.match_info["tid"])
        body = request[REC].json or {}
        for key in ("metadata", "tool_resources"):
            if key in body:
                thread.obj[key] = body[key] or {}
        return web.json_response(thread.obj)

    async def delete_thread(self, request: web.Request) -> web.Response:
        tid = request.match_info["tid"]
        self._thread(tid)
        del self.threads[tid]
        return web.json_response({"id": tid, "object": "thread.deleted", "deleted": True})

    def _prepare_message(self, tid: str, body: dict) -> tuple[dict, str, list[str]]:
        role = body.get("role")
        if role not in ("user", "assistant"):
            raise ApiError(
                400, "Invalid value for 'role': expected 'user' or 'assistant'.", param="role"
            )
        parts, text, files = _message_parts(body.get("content"))
        attachments = body.get("attachments") or []
        for att in attachments:
            files.append(att.get("file_id"))
        for fid in files:
            if fid not in self.fake.files:
                raise ApiError(
                    400, f"Invalid 'file_id': file '{fid}' not found.", param="attachments"
                )
        msg = {
            "id": new_id("msg_"),
            "object": "thread.message",
            "created_at": self.fake.now(),
            "assistant_id": None,
            "thread_id": tid,
            "run_id": None,
            "role": role,
            "content": parts,
            "attachments": copy.deepcopy(attachments),
            "metadata": body.get("metadata") or {},
            "status": "completed",
            "completed_at": None,
            "incomplete_at": None,
            "incomplete_details": None,
        }
        return msg, text, files

    def _add_message(self, thread: ThreadState, msg: dict, text: str, files: list[str]) -> None:
        thread.messages.append(msg)
        thread.history.append({"role": msg["role"], "text": text})
        if msg["role"] == "user":
            thread.pending_files.extend(files)
            self.fake.record_user_message(thread.obj["id"], text)

    async def create_message(self, request: web.Request) -> web.Response:
        tid = request.match_info["tid"]
        thread = self._thread(tid)
        active = self._active_run(thread)
        if active is not None:
            raise ApiError(
                400,
                f"Can't add messages to {tid} while a run {active.id} is active.",
                violation=f"active run on {tid}",
            )
        msg = self._prepare_message(tid, request[REC].json or {})
        self._add_message(thread, *msg)
        return web.json_response(msg[0])

    async def list_messages(self, request: web.Request) -> web.Response:
        thread = self._thread(request.match_info["tid"])
        query = request[REC].query
        msgs = thread.messages
        run_id = (query.get("run_id") or [None])[0]
        if run_id:
            msgs = [m for m in msgs if m["run_id"] == run_id]
        return web.json_response(paginate(msgs, query))

    async def get_message(self, request: web.Request) -> web.Response:
        thread = self._thread(request.match_info["tid"])
        mid = request.match_info["mid"]
        for m in thread.messages:
            if m["id"] == mid:
                return web.json_response(m)
        raise not_found(f"No message found with id '{mid}'.")

    # --- runs ----------------------------------------------------------------------------------

    def _stream_wanted(self, body: dict) -> bool:
        stream = stream_flag(body.get("stream"))
        if stream and not self.fake.streaming_supported:
            raise streaming_unsupported()
        return stream

    def _run_assistant(self, body: dict) -> dict:
        if not body.get("assistant_id"):
            raise ApiError(400, "Missing required parameter: 'assistant_id'.", param="assistant_id")
        return self._assistant(body["assistant_id"])

    async def _answer_run(
        self, request: web.Request, run: RunState, start: int, stream: bool
    ) -> web.StreamResponse:
        """The run object, or the stream of this turn's events (from log index ``start``)."""
        if stream and not self.fake.fault_pending(request):
            return await serve_log(
                self.fake,
                request,
                run.log,
                start,
                ends_at=TURN_END.__contains__,
                done_marker=True,
            )
        return web.json_response(run.obj)

    async def create_run(self, request: web.Request) -> web.StreamResponse:
        tid = request.match_info["tid"]
        thread = self._thread(tid)
        body = request[REC].json or {}
        stream = self._stream_wanted(body)
        asst = self._run_assistant(body)
        active = self._active_run(thread)
        if active is not None:
            raise ApiError(
                400,
                f"Thread {tid} already has an active run {active.id}.",
                violation=f"active run on {tid}",
            )
        extra = [self._prepare_message(tid, m) for m in body.get("additional_messages") or []]
        for msg in extra:
            self._add_message(thread, *msg)
        run = self._start_run(thread, asst, body)
        return await self._answer_run(request, run, 0, stream)

    async def create_thread_and_run(self, request: web.Request) -> web.StreamResponse:
        """``POST /threads/runs``: a new thread (``thread.created`` first) and its run."""
        body = request[REC].json or {}
        stream = self._stream_wanted(body)
        asst = self._run_assistant(body)
        thread = self._new_thread(body.get("thread") or {})
        run = self._start_run(thread, asst, body, announce_thread=True)
        return await self._answer_run(request, run, 0, stream)

    def _start_run(
        self, thread: ThreadState, asst: dict, body: dict, *, announce_thread: bool = False
    ) -> RunState:
        tid = thread.obj["id"]
        instructions = body.get("instructions")
        if instructions is None:
            instructions = asst.get("instructions") or ""
        if body.get("additional_instructions"):
            instructions = f"{instructions}\n{body['additional_instructions']}".strip()
        tools = body["tools"] if body.get("tools") is not None else asst["tools"]
        now = self.fake.now()
        rid = new_id("run_")
        obj = {
            "id": rid,
            "object": "thread.run",
            "created_at": now,
            "assistant_id": asst["id"],
            "thread_id": tid,
            "status": "queued",
            "started_at": None,
            "expires_at": now + RUN_EXPIRY,
            "cancelled_at": None,
            "failed_at": None,
            "completed_at": None,
            "required_action": None,
            "last_error": None,
            "model": body.get("model") or asst["model"],
            "instructions": instructions,
            "tools": copy.deepcopy(tools),
            "metadata": body.get("metadata") or {},
            "incomplete_details": None,
            "usage": None,
            "temperature": body.get("temperature", asst.get("temperature", 1.0)),
            "top_p": body.get("top_p", asst.get("top_p", 1.0)),
            "max_prompt_tokens": body.get("max_prompt_tokens"),
            "max_completion_tokens": body.get("max_completion_tokens"),
            "truncation_strategy": body.get("truncation_strategy")
            or {"type": "auto", "last_messages": None},
            "response_format": body.get("response_format", "auto"),
            "tool_choice": body.get("tool_choice", "auto"),
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
        }
        files, thread.pending_files = thread.pending_files, []
        reply = self._next_reply(thread, obj, files=files, tool_outputs=[])
        run = RunState(obj=obj, reply=reply)
        self.runs[rid] = run
        thread.runs.append(rid)
        self.fake.activate(tid, rid)
        if announce_thread:
            self.emit(run, "thread.created", thread.obj)
        self.emit(run, "thread.run.created", run.obj)
        self.emit(run, "thread.run.queued", run.obj)
        run.task = self.fake.spawn(self._progress(run))
        return run

    async def list_runs(self, request: web.Request) -> web.Response:
        thread = self._thread(request.match_info["tid"])
        objs = [self.runs[rid].obj for rid in thread.runs]
        return web.json_response(paginate(objs, request[REC].query))

    async def get_run(self, request: web.Request) -> web.Response:
        run = self._run(request.match_info["tid"], request.match_info["rid"])
        return web.json_response(
            run.obj, headers={"openai-poll-after-ms": str(self.fake.poll_after_ms)}
        )

    async def cancel_run(self, request: web.Request) -> web.Response:
        run = self._run(request.match_info["tid"], request.match_info["rid"])
        if run.status in ("queued", "in_progress", "requires_action"):
            if run.task is not None:
                run.task.cancel()
            run.obj["status"] = "cancelling"
            run.obj["required_action"] = None
            self.emit(run, "thread.run.cancelling", run.obj)
            run.task = self.fake.spawn(self._cancel_later(run))
        elif run.status != "cancelling":
            raise ApiError(400, f"Cannot cancel run with status '{run.status}'.")
        return web.json_response(run.obj)

    async def submit_tool_outputs(self, request: web.Request) -> web.StreamResponse:
        run = self._run(request.match_info["tid"], request.match_info["rid"])
        body = request[REC].json or {}
        stream = self._stream_wanted(body)
        if run.status != "requires_action":
            raise ApiError(400, f'Runs in status "{run.status}" do not accept tool outputs.')
        outputs = body.get("tool_outputs") or []
        given = [o.get("tool_call_id") for o in outputs]
        for call_id in given:
            if call_id not in run.pending:
                raise ApiError(
                    400,
                    f"Expected tool outputs for call_ids {run.pending}, got {given}",
                    param="tool_outputs",
                    violation=f"unknown tool output {call_id}",
                )
        for call_id in run.pending:
            if call_id not in given:
                raise ApiError(
                    400,
                    f"Expected tool outputs for call_ids {run.pending}, got {given}",
                    param="tool_outputs",
                    violation=f"missing tool output {call_id}",
                )
        thread = self.threads[run.thread_id]
        start = len(run.log.events)
        by_id = {o["tool_call_id"]: o.get("output", "") for o in outputs}
        for step in run.steps:
            if step["status"] != "in_progress":
                continue
            for call in step["step_details"]["tool_calls"]:
                if call["type"] == "function" and call["id"] in by_id:
                    call["function"]["output"] = by_id[call["id"]]
            self.complete_step(run, step)
        tool_outputs = []
        for call_id in run.pending:
            output = by_id[call_id]
            self.fake.record_tool_output(call_id, output, "assistants", run.thread_id)
            thread.history.append(
                {"type": "function_call_output", "call_id": call_id, "output": output}
            )
            tool_outputs.append({"call_id": call_id, "output": output})
        run.pending = []
        run.obj["required_action"] = None
        run.obj["status"] = "queued"
        run.reply = self._next_reply(thread, run.obj, files=[], tool_outputs=tool_outputs)
        self.emit(run, "thread.run.queued", run.obj)
        run.task = self.fake.spawn(self._progress(run))
        return await self._answer_run(request, run, start, stream)

    async def list_steps(self, request: web.Request) -> web.Response:
        run = self._run(request.match_info["tid"], request.match_info["rid"])
        return web.json_response(paginate(run.steps, request[REC].query))

    async def get_step(self, request: web.Request) -> web.Response:
        run = self._run(request.match_info["tid"], request.match_info["rid"])
        sid = request.match_info["sid"]
        for step in run.steps:
            if step["id"] == sid:
                return web.json_response(step)
        raise not_found(f"No run step found with id '{sid}'.")
