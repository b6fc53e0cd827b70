"""A local stand-in for the AgentOps backend, for end-to-end telemetry tests.

agentops 0.4.21 talks to two places:

- the API (``AGENTOPS_API_ENDPOINT``): ``POST /v3/auth/token`` with ``{"api_key": …}``,
  answered with ``{"token", "project_id", "project_prem_status"}``; and, only when
  something was ``print``-ed before the first trace ended, ``POST /v4/logs/upload/``;
- the OTLP/HTTP span exporter (``AGENTOPS_EXPORTER_ENDPOINT``, the full URL):
  ``POST /v1/traces`` with an ``ExportTraceServiceRequest`` protobuf body.

Its metrics exporter always targets ``https://otlp.agentops.ai/v1/metrics`` (not
configurable in 0.4.21); ``POST /v1/metrics`` is accepted here anyway.

Modes: ``"ok"``; ``"500"`` and ``"401"`` answer every request with that status;
``"hang"`` never answers until ``stop()``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

Mode = Literal["ok", "500", "401", "hang"]
Span = dict[str, Any]

TOKEN = "fake-jwt"
PROJECT_ID = "fake-project"


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = field(repr=False)


def _any_value(value: Any) -> Any:
    """Turn an OTLP ``AnyValue`` into a plain Python value."""
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_any_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _any_value(kv.value) for kv in value.kvlist_value.values}
    if kind is None:
        return None
    return getattr(value, kind)


def decode_spans(body: bytes) -> list[Span]:
    """Decode an OTLP/HTTP protobuf trace export into simple span dicts."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans: list[Span] = []
    for resource_spans in request.resource_spans:
        resource = {kv.key: _any_value(kv.value) for kv in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    {
                        "name": span.name,
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex() or None,
                        "attributes": {kv.key: _any_value(kv.value) for kv in span.attributes},
                        "links": [
                            {"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex()}
                            for link in span.links
                        ],
                        "status": MessageToDict(span.status),
                        "start_ns": span.start_time_unix_nano,
                        "end_ns": span.end_time_unix_nano,
                        "resource": resource,
                    }
                )
    return spans


class FakeAgentOps:
    """An aiohttp server on 127.0.0.1 that records what agentops sends it."""

    def __init__(self, mode: Mode = "ok") -> None:
        self.mode: Mode = mode
        self.spans: list[Span] = []
        self.requests: list[RecordedRequest] = []
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._released = asyncio.Event()
        self._changed = asyncio.Condition()

    @property
    def url(self) -> str:
        """Base URL, for ``AGENTOPS_API_ENDPOINT``."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def traces_url(self) -> str:
        """Full OTLP traces URL, for ``AGENTOPS_EXPORTER_ENDPOINT``."""
        return f"{self.url}/v1/traces"

    def paths(self) -> list[str]:
        return [request.path for request in self.requests]

    async def start(self) -> FakeAgentOps:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=1.0
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self._port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeAgentOps:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def wait_for_spans(
        self,
        predicate: Callable[[list[Span]], bool],
        timeout: float = 5.0,
    ) -> list[Span]:
        """Wait until ``predicate(all spans received so far)`` is true; return the spans."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while not predicate(self.spans):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    names = [span["name"] for span in self.spans]
                    raise TimeoutError(f"spans did not arrive in {timeout}s; got {names}")
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except TimeoutError:
                    continue
        return self.spans

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            RecordedRequest(request.method, request.path, dict(request.headers), body)
        )
        if self.mode == "hang":
            await self._released.wait()
            return web.Response(status=503)
        if self.mode in ("500", "401"):
            return web.json_response({"error": f"fake {self.mode}"}, status=int(self.mode))
        if request.method == "POST" and request.path == "/v3/auth/token":
            return web.json_response(
                {"token": TOKEN, "project_id": PROJECT_ID, "project_prem_status": "pro"}
            )
        if request.method == "POST" and request.path == "/v1/traces":
            spans = decode_spans(body)
            async with self._changed:
                self.spans.extend(spans)
                self._changed.notify_all()
            return web.Response(
                body=ExportTraceServiceResponse().SerializeToString(),
                content_type="application/x-protobuf",
            )
        return web.json_response({})
