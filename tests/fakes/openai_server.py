"""A stateful fake of the OpenAI HTTP API for end-to-end tests, served by aiohttp on 127.0.0.1.

It speaks the Responses + Conversations protocol (``openai_responses``), Assistants v2
(``openai_assistants``), Chat Completions (``openai_chat``, controlled through ``fake.chat``),
Files and container files, with wire shapes the openai SDK parses.
The model is scripted (``fake.model.push(Reply(...))``); protocol rules are enforced the way
the real service does, and every rule the client breaks is also appended to ``violations``.

    fake = FakeOpenAI()
    await fake.start()
    client = openai.AsyncOpenAI(base_url=fake.base_url, api_key="sk-test")
    ...
    await fake.stop()

Beyond the agreed API: ``fail_next(..., after_processing=True)`` (the request takes effect,
then errors: a retried create duplicates), ``response(id)``, ``conversation_items(id)``,
``thread_messages(id)``, ``containers``, ``poll_after_ms``, ``cancel_latency``, and
``model.push`` accepting ``(ModelContext) -> Reply`` callables. Chat Completions live in
``openai_chat`` (``fake.chat``).

Streaming (``openai_sse``): ``POST /responses`` with ``stream: true`` (with or without
``background``), ``GET /responses/{id}?stream=true&starting_after=N`` for background
responses, and Assistants runs / thread-and-run / tool-output submissions with ``stream:
true``. The pace is the scripted ``Reply``'s (``first_token_latency``, ``chunk_chars``,
``delta_interval``, ``write_time``, ``hold``), streamed or polled alike. Faults:
``drop_stream_after(k)``, ``stick_next_in_queued()``, ``fail_next(...,
after_processing=True)`` on a stream create, and ``streaming_supported = False`` (a
compatible server that cannot stream). What was written on each stream is in
``requests[i].sse``; ``wait_for_sse(predicate)`` waits for an event to be written.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections import defaultdict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.openai_assistants import AssistantsAPI
from tests.fakes.openai_chat import CUT_STREAM, ChatCompletionsAPI
from tests.fakes.openai_files import FilesAPI
from tests.fakes.openai_model import (
    REC,
    ApiError,
    Citation,
    CodeCall,
    FakeClock,
    FunctionCall,
    ModelContext,
    RecordedRequest,
    Reply,
    ScriptedModel,
    new_id,
    not_found,
)
from tests.fakes.openai_responses import ResponsesAPI
from tests.fakes.openai_sse import StreamDrop

__all__ = [
    "ApiError",
    "Citation",
    "CodeCall",
    "FakeClock",
    "FakeOpenAI",
    "FunctionCall",
    "ModelContext",
    "RecordedRequest",
    "Reply",
    "ScriptedModel",
]

log = logging.getLogger(__name__)

_DEFAULT_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("Bad request.", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to perform this request.", "invalid_request_error", None),
    404: ("Not found.", "invalid_request_error", None),
    408: ("Request timed out.", "server_error", "timeout"),
    409: ("The request conflicted with another request.", "invalid_request_error", None),
    429: (
        "Rate limit reached for requests. Please try again later.",
        "requests",
        "rate_limit_exceeded",
    ),
    500: (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        "server_error",
    ),
    502: ("Bad gateway.", "server_error", "server_error"),
    503: ("The server is overloaded or not ready yet.", "server_error", "server_error"),
}


@dataclass
class _Fault:
    kind: str  # "fail" | "hang"
    path_contains: str
    count: int
    status: int = 500
    retry_after: float | None = None
    body: dict | None = None
    seconds: float = 0.0
    after_processing: bool = False
    method: str | None = None  # only requests with this HTTP method (None: any)


PENDING_FAULT = web.RequestKey("fake_openai_pending_fault", _Fault)


class FakeOpenAI:
    def __init__(self) -> None:
        self.base_url = ""
        self.model = ScriptedModel()
        self.clock = FakeClock()
        self.requests: list[RecordedRequest] = []
        self.violations: list[str] = []
        self.max_concurrent: dict[str, int] = {}
        self.assistants: dict[str, dict] = {}
        self.files: dict[str, dict] = {}  # id -> {"filename", "purpose", "bytes"}
        # container id -> file id -> {"filename", "bytes", "path"} (Responses code interpreter)
        self.containers: dict[str, dict[str, dict]] = {}
        # Sent as `openai-poll-after-ms` on run retrievals; the SDK's runs.poll() honours it.
        self.poll_after_ms = 20
        self.cancel_latency = 0.02  # real seconds a run stays "cancelling"
        # False: a compatible server without streaming (``stream: true`` answers 400).
        self.streaming_supported = True
        self._drops: list[StreamDrop] = []
        self._stuck_in_queued = 0
        self._file_created: dict[str, int] = {}
        self._tool_outputs: list[dict] = []
        self._user_messages: list[tuple[str, str]] = []
        self._active: dict[str, set[str]] = defaultdict(set)
        self._faults: list[_Fault] = []
        self._tasks: set[asyncio.Task] = set()
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.files_api = FilesAPI(self)
        self.responses_api = ResponsesAPI(self)
        self.assistants_api = AssistantsAPI(self)
        self.chat = ChatCompletionsAPI(self)

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024**2)
        for method, path, handler in [
            *self.files_api.routes(),
            *self.responses_api.routes(),
            *self.assistants_api.routes(),
            *self.chat.routes(),
        ]:
            app.router.add_route(method, path, handler)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/v1"

    async def stop(self) -> None:
        self._stopping.set()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.responses_api.shutdown()
        self.chat.shutdown()
        self.assistants_api.shutdown()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeOpenAI:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- test controls ---------------------------------------------------------------------

    def fail_next(
        self,
        path_contains: str,
        *,
        status: int = 500,
        count: int = 1,
        retry_after: float | None = None,
        body: dict | None = None,
        after_processing: bool = False,
        method: str | None = None,
    ) -> None:
        """The next ``count`` requests whose path contains the string answer this HTTP error.

        With ``after_processing=True`` the request takes effect first and then the error is
        returned (a create that succeeded but whose answer was lost: a retry duplicates it).
        """
        self._faults.append(
            _Fault(
                "fail",
                path_contains,
                count,
                status=status,
                retry_after=retry_after,
                body=body,
                after_processing=after_processing,
                method=method,
            )
        )

    def hang_next(self, path_contains: str, seconds: float) -> None:
        """Delay the next matching request by ``seconds`` (real time) before handling it."""
        self._faults.append(_Fault("hang", path_contains, 1, seconds=seconds))

    def faults_pending(self, path_contains: str) -> int:
        """How many injected failures and hangs on matching paths are still to come."""
        return sum(f.count for f in self._faults if f.path_contains == path_contains)

    def tool_outputs(self) -> list[dict]:
        return [dict(o) for o in self._tool_outputs]

    def user_messages(self, thread_or_conv_id: str | None = None) -> list[str]:
        return [
            text
            for tid, text in self._user_messages
            if thread_or_conv_id is None or tid == thread_or_conv_id
        ]

    def run(self, run_id: str) -> dict:
        """The current Assistants run object (after applying the clock)."""
        return self.assistants_api.run_snapshot(run_id)

    def response(self, response_id: str) -> dict:
        """The current Responses object (all code interpreter outputs included)."""
        return self.responses_api.snapshot(response_id)

    def conversation_items(self, conversation_id: str) -> list[dict]:
        """Items committed to a conversation, oldest first."""
        return self.responses_api.items_snapshot(conversation_id)

    def thread_messages(self, thread_id: str) -> list[dict]:
        """Messages of an Assistants thread, oldest first."""
        return self.assistants_api.messages_snapshot(thread_id)

    async def wait_idle(self, timeout: float = 10) -> None:
        """Until no response or run is queued, in progress or cancelling."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self.tick()
            busy = [*self.responses_api.busy(), *self.assistants_api.busy(), *self.chat.busy()]
            if not busy:
                return
            if loop.time() > deadline:
                raise TimeoutError(f"FakeOpenAI still busy after {timeout}s: {busy}")
            await asyncio.sleep(0.005)

    async def wait_for_sse(self, predicate: Callable[[dict], bool], timeout: float = 10) -> dict:
        """Until an event written on any stream satisfies ``predicate``; returns its data."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for rec in self.requests:
                for _name, data in rec.sse:
                    if predicate(data):
                        return data
            if loop.time() > deadline:
                raise TimeoutError(f"no matching stream event within {timeout}s")
            await asyncio.sleep(0.005)

    def tick(self) -> None:
        """Apply the fake clock (run expiry). Done lazily on every request and accessor."""
        self.assistants_api.tick()

    def drop_stream_after(self, events: int, *, path_contains: str = "", count: int = 1) -> None:
        """Cut the next ``count`` SSE streams (whose path contains the string) after ``events``
        events, without a clean end (the SDK raises ``APIConnectionError``).

        The response or run goes on server-side (a foreground Responses stream excepted: its
        model stops with the connection, as OpenAI's does), so a resume finds the rest.
        """
        self._drops.append(StreamDrop(events, path_contains, count))

    def stick_next_in_queued(self, count: int = 1) -> None:
        """The known service bug: the next background stream is cut after its first event
        and the response stays ``queued`` for good (polls and resumes show nothing more)
        until ``POST /responses/{id}/cancel``; its conversation stays locked meanwhile."""
        self._stuck_in_queued += count

    def take_stream_drop(self, path: str) -> int | None:
        for drop in self._drops:
            if drop.path_contains in path:
                drop.count -= 1
                if drop.count <= 0:
                    self._drops.remove(drop)
                return drop.after
        return None

    def take_stuck_in_queued(self) -> bool:
        if self._stuck_in_queued <= 0:
            return False
        self._stuck_in_queued -= 1
        return True

    def fault_pending(self, request: web.Request) -> bool:
        """An ``after_processing`` fault will replace this answer: do not start a stream."""
        return PENDING_FAULT in request

    # --- shared helpers for the protocol modules ---------------------------------------------

    def record_tool_output(self, call_id: str, output: Any, protocol: str, thread: str) -> None:
        self._tool_outputs.append(
            {"call_id": call_id, "output": output, "protocol": protocol, "thread": thread}
        )

    def record_user_message(self, thread: str, text: str) -> None:
        self._user_messages.append((thread, text))

    def activate(self, thread: str, obj_id: str) -> None:
        active = self._active[thread]
        active.add(obj_id)
        self.max_concurrent[thread] = max(self.max_concurrent.get(thread, 0), len(active))

    def deactivate(self, thread: str, obj_id: str) -> None:
        self._active[thread].discard(obj_id)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("FakeOpenAI task failed", exc_info=task.exception())

    def now(self) -> int:
        return int(self.clock.now())

    def add_file(self, filename: str, content: bytes, purpose: str) -> str:
        file_id = new_id("file-", alnum_len=22)
        self.files[file_id] = {"filename": filename, "purpose": purpose, "bytes": content}
        self._file_created[file_id] = self.now()
        return file_id

    def add_container_file(self, container_id: str, filename: str | None, content: bytes) -> str:
        """Store a file the code interpreter made; images get ``cfile_….png`` names."""
        return self.files_api.add_container_file(container_id, filename, content)

    def require_file(self, file_id: str) -> dict:
        if file_id not in self.files:
            raise not_found(f"No such File object: {file_id}")
        return self.files[file_id]

    def file_object(self, file_id: str) -> dict:
        f = self.require_file(file_id)
        return {
            "id": file_id,
            "object": "file",
            "bytes": len(f["bytes"]),
            "created_at": self._file_created.get(file_id, self.now()),
            "filename": f["filename"],
            "purpose": f["purpose"],
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }

    # --- HTTP plumbing -------------------------------------------------------------------------

    def _take_fault(self, kind: str, path: str, method: str = "") -> _Fault | None:
        for fault in self._faults:
            if fault.method is not None and fault.method != method:
                continue
            if fault.kind == kind and fault.count > 0 and fault.path_contains in path:
                fault.count -= 1
                if fault.count == 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _fault_response(self, fault: _Fault) -> web.Response:
        if fault.body is not None:
            body = fault.body
        else:
            message, type_, code = _DEFAULT_ERRORS.get(
                fault.status, ("Injected error.", "server_error", None)
            )
            body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
        headers = {}
        if fault.retry_after is not None:
            headers["retry-after-ms"] = str(int(fault.retry_after * 1000))
            headers["retry-after"] = str(max(0, math.ceil(fault.retry_after)))
        return web.json_response(body, status=fault.status, headers=headers)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        rec = RecordedRequest(
            method=request.method,
            path=request.path,
            time=self.clock.now(),
            headers=dict(request.headers),
            query={k: request.query.getall(k) for k in request.query},
        )
        self.requests.append(rec)
        request[REC] = rec
        try:
            resp = await self._handle(request, handler, rec)
        except ApiError as e:
            if e.violation:
                self.violations.append(e.violation)
                log.warning("FakeOpenAI violation: %s (%s %s)", e.violation, rec.method, rec.path)
            resp = web.json_response(e.body(), status=e.status)
        resp.headers.setdefault("x-request-id", new_id("req_", hex_len=32))
        rec.status = resp.status
        return resp

    async def _handle(
        self, request: web.Request, handler: Any, rec: RecordedRequest
    ) -> web.StreamResponse:
        if request.body_exists:
            if request.content_type.startswith("multipart/"):
                post = await request.post()
                rec.form = {}
                for key, value in post.items():
                    if isinstance(value, web.FileField):
                        rec.form[key] = {
                            "filename": value.filename,
                            "content_type": value.content_type,
                            "bytes": value.file.read(),
                        }
                    else:
                        rec.form[key] = value
            else:
                raw = await request.read()
                if raw:
                    try:
                        rec.json = json.loads(raw)
                    except ValueError as e:
                        raise ApiError(
                            400, "We could not parse the JSON body of your request."
                        ) from e
        hang = self._take_fault("hang", request.path, request.method)
        if hang is not None:
            try:
                await asyncio.wait_for(self._stopping.wait(), hang.seconds)
            except TimeoutError:
                pass
        fault = self._take_fault("fail", request.path, request.method)
        if fault is not None and not fault.after_processing:
            return self._fault_response(fault)
        if fault is not None:
            request[PENDING_FAULT] = fault
        self.tick()
        if request.path.startswith(("/v1/assistants", "/v1/threads")):
            beta = request.headers.get("OpenAI-Beta", "")
            if "assistants=v2" not in beta:
                raise ApiError(
                    400,
                    "You must provide the 'OpenAI-Beta' header to access the Assistants API. "
                    "Please try again by setting the header 'OpenAI-Beta: assistants=v2'.",
                    violation=f"missing OpenAI-Beta header on {request.method} {request.path}",
                )
        if fault is not None:
            request[CUT_STREAM] = True
        try:
            resp = await handler(request)
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed) as e:
            raise ApiError(
                404,
                f"Invalid URL ({request.method} {request.path})",
                violation=f"unsupported endpoint {request.method} {request.path}",
            ) from e
        if fault is not None and not resp.prepared:
            return self._fault_response(fault)
        return resp
