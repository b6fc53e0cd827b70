"""How one Responses turn unfolds: the streaming events, at the scripted model's pace.

Every response is played this way (streamed or not): the events go to its ``EventLog`` and
the response object is settled at the end, so a polled response takes as long as a streamed
one. Event shapes follow the openai SDK's ``ResponseStreamEvent`` models.
"""

from __future__ import annotations

import asyncio
import copy
from typing import TYPE_CHECKING

from tests.fakes.openai_model import Reply

if TYPE_CHECKING:
    from tests.fakes.openai_responses import ResponsesAPI, _Response


def _in_progress(item: dict) -> dict:
    """The item as ``response.output_item.added`` shows it, before any delta."""
    kind = item["type"]
    shown = {"id": item["id"], "type": kind, "status": "in_progress"}
    if kind == "message":
        shown.update(role="assistant", content=[])
    elif kind == "function_call":
        shown.update(call_id=item["call_id"], name=item["name"], arguments="")
    elif kind == "code_interpreter_call":
        shown.update(code="", container_id=item["container_id"], outputs=None)
    elif kind == "file_search_call":
        shown.update(queries=[], results=None)
    return shown


def _anchor(annotation: dict) -> int:
    """The text position after which an annotation is announced."""
    if "index" in annotation:
        return int(annotation["index"])
    return int(annotation.get("end_index", 0))


class ResponseStream:
    """Plays ``r``'s output as events, then settles the response (see ``ResponsesAPI``)."""

    def __init__(self, api: ResponsesAPI, r: _Response) -> None:
        self.api = api
        self.r = r
        self.reply: Reply = r.reply

    def emit(self, type_: str, **fields: object) -> None:
        self.api.emit(self.r, type_, **fields)

    async def play(self) -> None:
        r, reply = self.r, self.reply
        await asyncio.sleep(0)
        if r.obj["status"] == "queued":
            r.obj["status"] = "in_progress"
        self.emit("response.in_progress", response=self.api.rendered(r))
        await reply.wait_to_write()
        if reply.fail:
            self.api.fail(r, reply.fail, "response.failed")
            return
        output = self.api.build_output(r, reply)
        for index, item in enumerate(output):
            kind = item["type"]
            self.emit("response.output_item.added", output_index=index, item=_in_progress(item))
            if kind == "message":
                if not await self._message(index, item):
                    return
            elif kind == "function_call":
                await self._function_call(index, item)
            elif kind == "code_interpreter_call":
                await self._code(index, item)
            elif kind == "file_search_call":
                for step in ("in_progress", "searching", "completed"):
                    self.emit(
                        f"response.file_search_call.{step}",
                        output_index=index,
                        item_id=item["id"],
                    )
            self.emit(
                "response.output_item.done",
                output_index=index,
                item=self.api.rendered_item(r, item),
            )
        self.api.settle(r, output)

    async def _pace(self, position: int, interval: float) -> None:
        if position > 0 and interval > 0:
            await asyncio.sleep(interval)

    async def _message(self, index: int, item: dict) -> bool:
        """Stream a message's text; False when a scripted ``stream_error`` ended the turn."""
        reply = self.reply
        part = item["content"][0]
        text, annotations = part["text"], part["annotations"]
        where = {"item_id": item["id"], "output_index": index, "content_index": 0}
        self.emit(
            "response.content_part.added",
            **where,
            part={"type": "output_text", "text": "", "annotations": [], "logprobs": []},
        )
        pieces = reply.pieces(text)
        interval = reply.text_interval(len(pieces))
        announced, written = 0, 0
        for i, piece in enumerate(pieces):
            if reply.stream_error and i == len(pieces) // 2:
                self.api.fail(self.r, reply.stream_error, None, error_event=True)
                return False
            await self._pace(i, interval)
            self.emit("response.output_text.delta", **where, delta=piece, logprobs=[])
            written += len(piece)
            while announced < len(annotations) and _anchor(annotations[announced]) <= written:
                self._annotation(where, annotations, announced)
                announced += 1
        if reply.stream_error:
            self.api.fail(self.r, reply.stream_error, None, error_event=True)
            return False
        while announced < len(annotations):
            self._annotation(where, annotations, announced)
            announced += 1
        self.emit("response.output_text.done", **where, text=text, logprobs=[])
        self.emit("response.content_part.done", **where, part=copy.deepcopy(part))
        return True

    def _annotation(self, where: dict, annotations: list[dict], i: int) -> None:
        self.emit(
            "response.output_text.annotation.added",
            **where,
            annotation_index=i,
            annotation=copy.deepcopy(annotations[i]),
        )

    async def _function_call(self, index: int, item: dict) -> None:
        where = {"item_id": item["id"], "output_index": index}
        for i, piece in enumerate(self.reply.pieces(item["arguments"])):
            await self._pace(i, self.reply.delta_interval)
            self.emit("response.function_call_arguments.delta", **where, delta=piece)
        self.emit("response.function_call_arguments.done", **where, arguments=item["arguments"])

    async def _code(self, index: int, item: dict) -> None:
        where = {"item_id": item["id"], "output_index": index}
        self.emit("response.code_interpreter_call.in_progress", **where)
        for i, piece in enumerate(self.reply.pieces(item["code"])):
            await self._pace(i, self.reply.delta_interval)
            self.emit("response.code_interpreter_call_code.delta", **where, delta=piece)
        self.emit("response.code_interpreter_call_code.done", **where, code=item["code"])
        self.emit("response.code_interpreter_call.interpreting", **where)
        run_time = self.r.code_run_times.get(item["id"], 0.0)
        if run_time > 0:
            await asyncio.sleep(run_time)
        self.emit("response.code_interpreter_call.completed", **where)
