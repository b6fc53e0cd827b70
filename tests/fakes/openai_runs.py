"""The Assistants run engine of the fake OpenAI server: turns, steps, messages, expiry."""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tests.fakes.openai_model import ModelContext, Reply, new_id
from tests.fakes.openai_run_stream import RunTurn
from tests.fakes.openai_sse import EventLog

if TYPE_CHECKING:
    from tests.fakes.openai_server import FakeOpenAI

ACTIVE = ("queued", "in_progress", "requires_action", "cancelling")
RUN_EXPIRY = 600
_STEP_USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
# A run stream ends with the turn: at one of these events (then ``[DONE]``).
TURN_END = frozenset(
    {
        "thread.run.requires_action",
        "thread.run.completed",
        "thread.run.failed",
        "thread.run.cancelled",
        "thread.run.expired",
        "thread.run.incomplete",
        "error",
    }
)


@dataclass
class ThreadState:
    obj: dict
    messages: list[dict] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    pending_files: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)


@dataclass
class RunState:
    obj: dict
    reply: Reply
    steps: list[dict] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # call ids awaiting tool outputs
    task: asyncio.Task | None = None
    log: EventLog = field(default_factory=EventLog)  # stream events of every turn

    @property
    def id(self) -> str:
        return self.obj["id"]

    @property
    def thread_id(self) -> str:
        return self.obj["thread_id"]

    @property
    def status(self) -> str:
        return self.obj["status"]


class RunEngine:
    """Run state and progression; ``AssistantsAPI`` adds the HTTP endpoints."""

    def __init__(self, fake: FakeOpenAI) -> None:
        self.fake = fake
        self.threads: dict[str, ThreadState] = {}
        self.runs: dict[str, RunState] = {}

    def tick(self) -> None:
        now = self.fake.clock.now()
        for run in self.runs.values():
            expires = run.obj["expires_at"]
            if run.status == "requires_action" and expires is not None and now > expires:
                run.obj["required_action"] = None
                run.obj["last_error"] = None
                self.close(run, "expired")

    def busy(self) -> list[str]:
        return [
            rid
            for rid, run in self.runs.items()
            if run.status in ("queued", "in_progress", "cancelling")
        ]

    def shutdown(self) -> None:
        for run in self.runs.values():
            run.log.close()

    def run_snapshot(self, run_id: str) -> dict:
        self.tick()
        if run_id not in self.runs:
            raise KeyError(run_id)
        return copy.deepcopy(self.runs[run_id].obj)

    def messages_snapshot(self, thread_id: str) -> list[dict]:
        return copy.deepcopy(self.threads[thread_id].messages)

    def _next_reply(
        self, thread: ThreadState, obj: dict, *, files: list[str], tool_outputs: list[dict]
    ) -> Reply:
        user_texts = [h["text"] for h in thread.history if h.get("role") == "user"]
        ctx = ModelContext(
            protocol="assistants",
            thread_id=thread.obj["id"],
            instructions=obj["instructions"],
            model=obj["model"],
            tools=copy.deepcopy(obj["tools"]),
            history=copy.deepcopy(thread.history),
            last_user_text=user_texts[-1] if user_texts else None,
            tool_outputs=tool_outputs,
            files=files,
        )
        return self.fake.model.next_reply(ctx)

    async def _cancel_later(self, run: RunState) -> None:
        await asyncio.sleep(self.fake.cancel_latency)
        self.close(run, "cancelled")

    # --- events ------------------------------------------------------------------------------

    def emit(self, run: RunState, name: str, data: dict) -> None:
        """Append an event (a snapshot of ``data``) to the run's stream log.

        A run object's fields are replaced, never changed in place, so a shallow copy
        suffices; steps and messages grow in place while streaming.
        """
        snapshot = dict(data) if data is run.obj else copy.deepcopy(data)
        run.log.append(name, snapshot)

    # --- run progression ---------------------------------------------------------------------

    async def _progress(self, run: RunState) -> None:
        await asyncio.sleep(0)
        if run.status == "queued":
            run.obj["status"] = "in_progress"
            run.obj["started_at"] = run.obj["started_at"] or self.fake.now()
            self.emit(run, "thread.run.in_progress", run.obj)
        await run.reply.wait_to_write()
        await RunTurn(self, run).play()

    def step(self, run: RunState, kind: str, details: dict, status: str = "completed") -> dict:
        now = self.fake.now()
        step = {
            "id": new_id("step_"),
            "object": "thread.run.step",
            "created_at": now,
            "assistant_id": run.obj["assistant_id"],
            "thread_id": run.thread_id,
            "run_id": run.id,
            "type": kind,
            "status": status,
            "step_details": details,
            "cancelled_at": None,
            "completed_at": now if status == "completed" else None,
            "expired_at": None,
            "failed_at": None,
            "last_error": None,
            "metadata": {},
            "usage": _STEP_USAGE if status == "completed" else None,
        }
        run.steps.append(step)
        return step

    _step = step  # older e2e tests add steps to a working run through this name

    def complete_step(self, run: RunState, step: dict) -> None:
        step["status"] = "completed"
        step["completed_at"] = self.fake.now()
        step["usage"] = dict(_STEP_USAGE)
        self.emit(run, "thread.run.step.completed", step)

    def fail(self, run: RunState, code: str, *, error_event: bool = False) -> None:
        """The model failed: ``thread.run.failed`` (after an ``error`` event if scripted so)."""
        message = f"Sorry, something went wrong ({code})."
        run.obj["last_error"] = {"code": code, "message": message}
        if error_event:
            self.emit(
                run,
                "error",
                {"code": code, "message": message, "param": None, "type": "server_error"},
            )
        self.close(run, "failed")

    def assistant_message(
        self, run: RunState, reply: Reply, images: list[str], generated: list[tuple[str, str]]
    ) -> dict:
        text = reply.text or ""
        # Citation markers go after their quote (or at the end), like 【4:0†source】.
        placed = []
        for i, c in enumerate(reply.citations):
            pos = text.find(c.quote) if c.quote else -1
            placed.append((pos + len(c.quote) if pos >= 0 else len(text), i, c))
        placed.sort(key=lambda p: (p[0], p[1]))
        value, annotations, cursor = "", [], 0
        for pos, i, c in placed:
            value += text[cursor:pos]
            cursor = pos
            marker = f"【4:{i}†source】"
            annotations.append(
                {
                    "type": "file_citation",
                    "text": marker,
                    "start_index": len(value),
                    "end_index": len(value) + len(marker),
                    "file_citation": {"file_id": c.file_id},
                }
            )
            value += marker
        value += text[cursor:]
        for fid, name in generated:
            link = f"sandbox:/mnt/data/{name}"
            if link not in value:
                value += f"\n\n[{name}]({link})"
            start = value.find(link)
            annotations.append(
                {
                    "type": "file_path",
                    "text": link,
                    "start_index": start,
                    "end_index": start + len(link),
                    "file_path": {"file_id": fid},
                }
            )
        content: list[dict] = [
            {"type": "image_file", "image_file": {"file_id": fid, "detail": None}} for fid in images
        ]
        content.append({"type": "text", "text": {"value": value, "annotations": annotations}})
        now = self.fake.now()
        return {
            "id": new_id("msg_"),
            "object": "thread.message",
            "created_at": now,
            "assistant_id": run.obj["assistant_id"],
            "thread_id": run.thread_id,
            "run_id": run.id,
            "role": "assistant",
            "content": content,
            "attachments": [
                {"file_id": fid, "tools": [{"type": "code_interpreter"}]} for fid, _ in generated
            ],
            "metadata": {},
            "status": "completed",
            "completed_at": now,
            "incomplete_at": None,
            "incomplete_details": None,
        }

    def close(self, run: RunState, status: str) -> None:
        """Move a run to a terminal status, free its thread, end its stream."""
        now = self.fake.now()
        run.obj["status"] = status
        stamp = {
            "completed": "completed_at",
            "failed": "failed_at",
            "cancelled": "cancelled_at",
        }.get(status)
        if stamp:
            run.obj[stamp] = now
        if status != "expired":
            run.obj["expires_at"] = None
        step_status = {"cancelled": "cancelled", "expired": "expired", "failed": "failed"}.get(
            status, "completed"
        )
        for step in run.steps:
            if step["status"] == "in_progress":
                step["status"] = step_status
                key = {
                    "cancelled": "cancelled_at",
                    "expired": "expired_at",
                    "failed": "failed_at",
                }.get(step_status, "completed_at")
                step[key] = now
        if status != "completed":
            self._interrupt_messages(run, status)
        run.pending = []
        self.fake.deactivate(run.thread_id, run.id)
        self.emit(run, f"thread.run.{status}", run.obj)
        run.log.close()

    def _interrupt_messages(self, run: RunState, status: str) -> None:
        """A message the run was still writing stays, marked incomplete."""
        thread = self.threads.get(run.thread_id)
        for msg in thread.messages if thread is not None else []:
            if msg["run_id"] == run.id and msg["status"] == "in_progress":
                msg["status"] = "incomplete"
                msg["incomplete_at"] = self.fake.now()
                msg["incomplete_details"] = {"reason": f"run_{status}"}
