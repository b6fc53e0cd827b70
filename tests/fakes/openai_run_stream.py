"""How one Assistants run turn unfolds: steps, message and the stream events, at the reply's pace.

Every turn is played this way (streamed or not), so a polled run takes as long as a
streamed one and both end in the same state. Events follow the openai SDK's
``AssistantStreamEvent`` models; deltas merge the way ``AsyncAssistantEventHandler`` merges
them (by ``index``).
"""

from __future__ import annotations

import asyncio
import copy
from typing import TYPE_CHECKING, Any

from tests.fakes.openai_model import CodeCall, Reply, approx_tokens, new_id

if TYPE_CHECKING:
    from tests.fakes.openai_runs import RunEngine, RunState, ThreadState


class RunTurn:
    """One model turn of ``run`` (a run start, or a tool-output submission)."""

    def __init__(self, engine: RunEngine, run: RunState) -> None:
        self.engine = engine
        self.fake = engine.fake
        self.run = run
        self.reply: Reply = run.reply
        self.thread: ThreadState | None = engine.threads.get(run.thread_id)

    def emit(self, name: str, data: dict) -> None:
        self.engine.emit(self.run, name, data)

    async def play(self) -> None:
        run, reply = self.run, self.reply
        if reply.fail:
            self.engine.fail(run, reply.fail)
            return
        if reply.citations:
            self._file_search()
        images: list[str] = []
        generated: list[tuple[str, str]] = []
        for code in reply.code:
            await self._code(code, images, generated)
        if reply.function_calls:
            # A model may say something before it calls a function ("Let's check…").
            if reply.text and self.thread is not None:
                if not await self._message("completed", images, generated):
                    return
            await self._function_calls()
            return
        status = reply.status or "completed"
        if status in ("completed", "incomplete") and self.thread is not None:
            if not await self._message(status, images, generated):
                return
        self.engine.close(run, status)

    async def _pace(self, position: int, interval: float) -> None:
        if position > 0 and interval > 0:
            await asyncio.sleep(interval)

    def _step_delta(self, step: dict, tool_calls: list[dict]) -> None:
        self.emit(
            "thread.run.step.delta",
            {
                "id": step["id"],
                "object": "thread.run.step.delta",
                "delta": {"step_details": {"type": "tool_calls", "tool_calls": tool_calls}},
            },
        )

    def _code_delta(self, step: dict, fields: dict) -> None:
        self._step_delta(
            step, [{"index": 0, "type": "code_interpreter", "code_interpreter": fields}]
        )

    def _open_step(self, kind: str, details: dict) -> dict:
        step = self.engine.step(self.run, kind, details, status="in_progress")
        self.emit("thread.run.step.created", step)
        self.emit("thread.run.step.in_progress", step)
        return step

    def _file_search(self) -> None:
        call = {
            "id": new_id("call_"),
            "type": "file_search",
            "file_search": {
                "ranking_options": {"ranker": "default_2024_08_21", "score_threshold": 0.0},
                "results": [],
            },
        }
        step = self._open_step("tool_calls", {"type": "tool_calls", "tool_calls": [call]})
        self.engine.complete_step(self.run, step)

    async def _code(
        self, code: CodeCall, images: list[str], generated: list[tuple[str, str]]
    ) -> None:
        call_id = new_id("call_")
        step = self._open_step("tool_calls", {"type": "tool_calls", "tool_calls": []})
        ci: dict[str, Any] = {"input": "", "outputs": []}
        call = {"id": call_id, "type": "code_interpreter", "code_interpreter": ci}
        step["step_details"]["tool_calls"] = [call]
        self._step_delta(step, [{"index": 0, **copy.deepcopy(call)}])
        for i, piece in enumerate(self.reply.pieces(code.code)):
            await self._pace(i, self.reply.delta_interval)
            ci["input"] += piece
            self._code_delta(step, {"input": piece})
        if code.run_time > 0:
            await asyncio.sleep(code.run_time)
        outputs: list[dict] = []
        if code.logs:
            outputs.append({"type": "logs", "logs": code.logs})
        if code.image_png is not None:
            fid = self.fake.add_file("image.png", code.image_png, "assistants_output")
            outputs.append({"type": "image", "image": {"file_id": fid}})
            images.append(fid)
        if code.file_name is not None:
            fid = self.fake.add_file(code.file_name, code.file_bytes or b"", "assistants_output")
            generated.append((fid, code.file_name))
        if outputs:
            ci["outputs"] = outputs
            indexed = [{"index": i, **copy.deepcopy(o)} for i, o in enumerate(outputs)]
            self._code_delta(step, {"outputs": indexed})
        self.engine.complete_step(self.run, step)

    async def _function_calls(self) -> None:
        run, thread = self.run, self.thread
        step = self._open_step("tool_calls", {"type": "tool_calls", "tool_calls": []})
        calls = []
        for i, fc in enumerate(self.reply.function_calls):
            call_id = fc.call_id or new_id("call_")
            call = {
                "id": call_id,
                "type": "function",
                "function": {"name": fc.name, "arguments": fc.arguments, "output": None},
            }
            calls.append(call)
            step["step_details"]["tool_calls"].append(call)
            first = {"name": fc.name, "arguments": "", "output": None}
            self._step_delta(
                step, [{"index": i, "id": call_id, "type": "function", "function": first}]
            )
            for j, piece in enumerate(self.reply.pieces(fc.arguments)):
                await self._pace(j, self.reply.delta_interval)
                self._step_delta(
                    step, [{"index": i, "type": "function", "function": {"arguments": piece}}]
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
        run.pending = [c["id"] for c in calls]
        run.obj["status"] = "requires_action"
        run.obj["required_action"] = {
            "type": "submit_tool_outputs",
            "submit_tool_outputs": {
                "tool_calls": [
                    {
                        "id": c["id"],
                        "type": "function",
                        "function": {
                            "name": c["function"]["name"],
                            "arguments": c["function"]["arguments"],
                        },
                    }
                    for c in calls
                ]
            },
        }
        self.emit("thread.run.requires_action", run.obj)

    async def _message(
        self, status: str, images: list[str], generated: list[tuple[str, str]]
    ) -> bool:
        """Write the assistant message; False when a scripted ``stream_error`` ended the run."""
        run, reply, thread = self.run, self.reply, self.thread
        assert thread is not None
        final = self.engine.assistant_message(run, reply, images, generated)
        live = {
            **copy.deepcopy(final),
            "content": [],
            "attachments": [],
            "status": "in_progress",
            "completed_at": None,
        }
        thread.messages.append(live)
        step = self._open_step(
            "message_creation",
            {"type": "message_creation", "message_creation": {"message_id": live["id"]}},
        )
        self.emit("thread.message.created", live)
        self.emit("thread.message.in_progress", live)
        for index, block in enumerate(final["content"][:-1]):
            live["content"].append(copy.deepcopy(block))
            self._message_delta(live, {"index": index, **copy.deepcopy(block)})
        text_index = len(final["content"]) - 1
        text = final["content"][-1]["text"]
        value, annotations = text["value"], text["annotations"]
        pieces = reply.pieces(value)
        interval = reply.text_interval(len(pieces))
        block: dict = {"type": "text", "text": {"value": "", "annotations": []}}
        announced, written = 0, 0
        for i, piece in enumerate(pieces):
            if reply.stream_error and i == len(pieces) // 2:
                self.engine.fail(run, reply.stream_error, error_event=True)
                return False
            await self._pace(i, interval)
            if i == 0:
                live["content"].append(block)
            block["text"]["value"] += piece
            written += len(piece)
            fresh = []
            while announced < len(annotations) and annotations[announced]["end_index"] <= written:
                fresh.append({"index": announced, **copy.deepcopy(annotations[announced])})
                announced += 1
            delta_text: dict[str, Any] = {"value": piece}
            if fresh:
                delta_text["annotations"] = fresh
            self._message_delta(live, {"index": text_index, "type": "text", "text": delta_text})
        if reply.stream_error:
            self.engine.fail(run, reply.stream_error, error_event=True)
            return False
        live.update(copy.deepcopy(final))
        if status == "incomplete":
            live["status"] = "incomplete"
            live["completed_at"] = None
            live["incomplete_at"] = self.fake.now()
            live["incomplete_details"] = {"reason": "max_tokens"}
            run.obj["incomplete_details"] = {"reason": "max_completion_tokens"}
        self.emit(f"thread.message.{live['status']}", live)
        thread.history.append({"role": "assistant", "text": value})
        self.engine.complete_step(run, step)
        run.obj["usage"] = {
            "prompt_tokens": 10,
            "completion_tokens": approx_tokens(value),
            "total_tokens": 10 + approx_tokens(value),
        }
        return True

    def _message_delta(self, message: dict, content: dict) -> None:
        self.emit(
            "thread.message.delta",
            {
                "id": message["id"],
                "object": "thread.message.delta",
                "delta": {"content": [content]},
            },
        )
