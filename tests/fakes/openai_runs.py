"""The Assistants run engine of the fake OpenAI server: turns, steps, messages, expiry."""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tests.fakes.openai_model import ModelContext, Reply, approx_tokens, new_id

if TYPE_CHECKING:
    from tests.fakes.openai_server import FakeOpenAI

ACTIVE = ("queued", "in_progress", "requires_action", "cancelling")
RUN_EXPIRY = 600


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
                self._close(run, "expired")

    def busy(self) -> list[str]:
        return [
            rid
            for rid, run in self.runs.items()
            if run.status in ("queued", "in_progress", "cancelling")
        ]

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
        self._close(run, "cancelled")

    # --- run progression ---------------------------------------------------------------------

    async def _progress(self, run: RunState) -> None:
        await asyncio.sleep(0)
        if run.status == "queued":
            run.obj["status"] = "in_progress"
            run.obj["started_at"] = run.obj["started_at"] or self.fake.now()
        if run.reply.latency > 0:
            await asyncio.sleep(run.reply.latency)
        self._finish_turn(run)

    def _step(self, run: RunState, kind: str, details: dict, status: str = "completed") -> dict:
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
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
            if status == "completed"
            else None,
        }
        run.steps.append(step)
        return step

    def _finish_turn(self, run: RunState) -> None:
        reply = run.reply
        thread = self.threads.get(run.thread_id)
        if reply.fail:
            run.obj["last_error"] = {
                "code": reply.fail,
                "message": f"Sorry, something went wrong ({reply.fail}).",
            }
            self._close(run, "failed")
            return
        if reply.citations:
            self._step(
                run,
                "tool_calls",
                {
                    "type": "tool_calls",
                    "tool_calls": [
                        {
                            "id": new_id("call_"),
                            "type": "file_search",
                            "file_search": {
                                "ranking_options": {
                                    "ranker": "default_2024_08_21",
                                    "score_threshold": 0.0,
                                },
                                "results": [],
                            },
                        }
                    ],
                },
            )
        images: list[str] = []
        generated: list[tuple[str, str]] = []
        for code in reply.code:
            outputs: list[dict] = []
            if code.logs:
                outputs.append({"type": "logs", "logs": code.logs})
            if code.image_png is not None:
                fid = self.fake.add_file("image.png", code.image_png, "assistants_output")
                outputs.append({"type": "image", "image": {"file_id": fid}})
                images.append(fid)
            if code.file_name is not None:
                fid = self.fake.add_file(
                    code.file_name, code.file_bytes or b"", "assistants_output"
                )
                generated.append((fid, code.file_name))
            self._step(
                run,
                "tool_calls",
                {
                    "type": "tool_calls",
                    "tool_calls": [
                        {
                            "id": new_id("call_"),
                            "type": "code_interpreter",
                            "code_interpreter": {"input": code.code, "outputs": outputs},
                        }
                    ],
                },
            )
        if reply.function_calls:
            calls = []
            for fc in reply.function_calls:
                call_id = fc.call_id or new_id("call_")
                calls.append(
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": fc.name, "arguments": fc.arguments},
                    }
                )
                if thread is not None:
                    thread.history.append(
                        {
                            "type": "function_call",
                            "call_id": call_id,
                            "name": fc.name,
                            "arguments": fc.arguments,
                        }
                    )
            self._step(
                run,
                "tool_calls",
                {
                    "type": "tool_calls",
                    "tool_calls": [
                        {**c, "function": {**c["function"], "output": None}} for c in calls
                    ],
                },
                status="in_progress",
            )
            run.pending = [c["id"] for c in calls]
            run.obj["status"] = "requires_action"
            run.obj["required_action"] = {
                "type": "submit_tool_outputs",
                "submit_tool_outputs": {"tool_calls": calls},
            }
            return
        status = reply.status or "completed"
        if status in ("completed", "incomplete") and thread is not None:
            msg = self._assistant_message(run, reply, images, generated)
            if status == "incomplete":
                msg["status"] = "incomplete"
                msg["incomplete_at"] = self.fake.now()
                msg["incomplete_details"] = {"reason": "max_tokens"}
                run.obj["incomplete_details"] = {"reason": "max_completion_tokens"}
            thread.messages.append(msg)
            text = msg["content"][-1]["text"]["value"]
            thread.history.append({"role": "assistant", "text": text})
            self._step(
                run,
                "message_creation",
                {
                    "type": "message_creation",
                    "message_creation": {"message_id": msg["id"]},
                },
            )
            run.obj["usage"] = {
                "prompt_tokens": 10,
                "completion_tokens": approx_tokens(text),
                "total_tokens": 10 + approx_tokens(text),
            }
        self._close(run, status)

    def _assistant_message(
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

    def _close(self, run: RunState, status: str) -> None:
        """Move a run to a terminal status and free its thread."""
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
        run.pending = []
        self.fake.deactivate(run.thread_id, run.id)
