"""Slack's Socket Mode side: a WebSocket endpoint that sends envelopes and collects acks.

Mounted by :class:`~tests.fakes.slack_server.FakeSlack` at ``/socket``; the
app reaches it through ``apps.connections.open`` like on Slack. On connect it
sends ``hello``; :meth:`FakeSocketMode.send` delivers an envelope on the newest
connection and :meth:`FakeSocketMode.wait_ack` waits for the client's ack
(``{"envelope_id", "payload"?}``).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

_INTERACTIONS_WITH_RESPONSE = {"view_submission", "block_suggestion", "shortcut", "message_action"}


class FakeSocketMode:
    """The Socket Mode server half of the fake Slack."""

    def __init__(
        self,
        *,
        app_id: str = "A1",
        on_envelope: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.app_id = app_id
        self.url = ""  # set by FakeSlack.start(): ws://127.0.0.1:PORT/socket
        self.acks: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []  # every message the client sent
        self.envelopes: list[dict[str, Any]] = []  # every envelope sent
        self.connections_total = 0
        self._open: list[web.WebSocketResponse] = []
        self._on_envelope = on_envelope

    @property
    def open_connections(self) -> int:
        return sum(1 for ws in self._open if not ws.closed)

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._open.append(ws)
        self.connections_total += 1
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": self.open_connections,
                "debug_info": {
                    "host": "applink-fake",
                    "build_number": 1,
                    "approximate_connection_time": 18060,
                },
                "connection_info": {"app_id": self.app_id},
            }
        )
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    data = {"raw": msg.data}
                self.received.append(data)
                if isinstance(data, dict) and "envelope_id" in data:
                    self.acks.append(data)
        finally:
            if ws in self._open:
                self._open.remove(ws)
        return ws

    async def wait_connected(self, timeout: float = 10, *, total: int = 1) -> None:
        """Wait until a connection is open and at least ``total`` were ever made."""
        await self._poll(
            lambda: self.open_connections > 0 and self.connections_total >= total,
            timeout,
            f"no Socket Mode connection (made {self.connections_total}, wanted {total})",
        )

    async def send(
        self,
        type: str,
        payload: dict[str, Any],
        *,
        accepts_response_payload: bool | None = None,
        retry_attempt: int = 0,
        retry_reason: str = "",
    ) -> str:
        """Send one envelope (``events_api``, ``slash_commands`` or ``interactive``).

        ``accepts_response_payload`` defaults like Slack: true for slash
        commands and view submissions, false otherwise.
        """
        await self.wait_connected()
        if accepts_response_payload is None:
            accepts_response_payload = type == "slash_commands" or (
                type == "interactive" and payload.get("type") in _INTERACTIONS_WITH_RESPONSE
            )
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "payload": payload,
            "type": type,
            "accepts_response_payload": accepts_response_payload,
            "retry_attempt": retry_attempt,
            "retry_reason": retry_reason,
        }
        if self._on_envelope is not None:
            self._on_envelope(type, payload)
        self.envelopes.append(envelope)
        await self._newest().send_json(envelope)
        return envelope_id

    async def wait_ack(self, envelope_id: str, timeout: float = 10) -> dict[str, Any]:
        """The ack the client sent for ``envelope_id``."""

        def find() -> dict[str, Any] | None:
            return next((a for a in self.acks if a.get("envelope_id") == envelope_id), None)

        await self._poll(lambda: find() is not None, timeout, f"no ack for {envelope_id}")
        ack = find()
        assert ack is not None
        return ack

    async def send_disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask the client to reconnect, as Slack does before rotating a connection."""
        await self.wait_connected()
        await self._newest().send_json(
            {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-fake"}}
        )

    async def drop_connections(self) -> None:
        """Close every connection from the server side (a network drop or a Slack restart)."""
        for ws in list(self._open):
            await ws.close(code=WSCloseCode.GOING_AWAY)

    def _newest(self) -> web.WebSocketResponse:
        for ws in reversed(self._open):
            if not ws.closed:
                return ws
        raise AssertionError("no open Socket Mode connection")

    async def _poll(self, condition: Callable[[], bool], limit: float, what: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while not condition():
            if loop.time() >= deadline:
                raise AssertionError(
                    f"{what} within {limit}s; acks={self.acks[-5:]}, "
                    f"connections open={self.open_connections} total={self.connections_total}"
                )
            await asyncio.sleep(0.01)
