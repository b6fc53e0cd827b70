"""The fake OpenAI server's streaming (Responses and Assistants), through the real openai SDK.

The client validates every event strictly against the SDK's models
(``_strict_response_validation``), and the SDK's own stream helpers accumulate them, so a
shape the real service would not send fails here.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from openai.lib.streaming import AsyncAssistantEventHandler
from openai.types.beta import AssistantStreamEvent
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from tests.fakes.openai_server import Citation, CodeCall, FakeOpenAI, FunctionCall, Reply

MODEL = "gpt-4.1-mini"
CI_TOOL = {"type": "code_interpreter", "container": {"type": "auto"}}
LONG = "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen. " * 3
RESPONSE_EVENT: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
ASSISTANT_EVENT: TypeAdapter[Any] = TypeAdapter(AssistantStreamEvent)


@pytest.fixture(autouse=True)
def _quiet_deprecations():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as f:
        yield f


@pytest.fixture
async def client(fake: FakeOpenAI) -> AsyncIterator[openai.AsyncOpenAI]:
    c = openai.AsyncOpenAI(
        base_url=fake.base_url, api_key="sk-test", _strict_response_validation=True
    )
    yield c
    await c.close()


async def _collect(stream: Any) -> tuple[list[Any], BaseException | None]:
    """Every event of a stream, and the error that ended it (None: a clean end)."""
    events: list[Any] = []
    try:
        async for event in stream:
            events.append(event)
    except openai.APIConnectionError as e:
        return events, e
    return events, None


def _text(events: list[Any]) -> str:
    return "".join(e.delta for e in events if e.type == "response.output_text.delta")


# --- Responses ---------------------------------------------------------------------------


async def test_background_stream_speaks_the_sdk_event_union(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    doc = await client.files.create(file=("notes.pdf", b"%PDF"), purpose="user_data")
    conv = await client.conversations.create()
    fake.model.push(
        Reply(
            text=LONG,
            code=[CodeCall("mean([3, 4])", logs="3.5", run_time=0.01)],
            citations=[Citation(doc.id, quote="into sugar")],
            chunk_chars=16,
        )
    )
    stream = await client.responses.create(
        model=MODEL,
        conversation=conv.id,
        input="explain",
        tools=[CI_TOOL],
        include=["code_interpreter_call.outputs"],
        stream=True,
        background=True,
    )
    events, error = await _collect(stream)
    assert error is None
    assert [e.sequence_number for e in events] == list(range(len(events)))
    rec = fake.requests[-1]
    assert [data["sequence_number"] for _, data in rec.sse] == list(range(len(events)))
    for name, data in rec.sse:
        assert name == data["type"]
        RESPONSE_EVENT.validate_python(data)
    kinds = [e.type for e in events]
    assert kinds[:3] == ["response.created", "response.queued", "response.in_progress"]
    assert events[0].response.status == "queued" and events[0].response.background
    assert kinds[-1] == "response.completed"
    code_events = [k for k in kinds if "code_interpreter" in k]
    assert code_events == [
        "response.code_interpreter_call.in_progress",
        "response.code_interpreter_call_code.delta",
        "response.code_interpreter_call_code.done",
        "response.code_interpreter_call.interpreting",
        "response.code_interpreter_call.completed",
    ]
    assert kinds.count("response.output_text.delta") == -(-len(LONG) // 16)
    [note] = [e for e in events if e.type == "response.output_text.annotation.added"]
    assert note.annotation is not None and note.annotation.type == "file_citation"
    assert note.annotation.file_id == doc.id
    assert _text(events) == LONG
    final = events[-1].response
    assert final.output_text == LONG
    assert final == await client.responses.retrieve(final.id)
    items = [e.item.type for e in events if e.type == "response.output_item.added"]
    assert items == ["file_search_call", "code_interpreter_call", "message"]
    done = [e.item for e in events if e.type == "response.output_item.done"]
    assert done[1].outputs[0].logs == "3.5"  # type: ignore[union-attr]
    assert fake.violations == []


async def test_sdk_stream_helper_and_function_call_events(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    conv = await client.conversations.create()
    fake.model.push(
        Reply(function_calls=[FunctionCall("quiz", '{"topic": "fractions"}', call_id="call_q")]),
        Reply(text=LONG, write_time=0.02),
    )
    async with client.responses.stream(model=MODEL, conversation=conv.id, input="quiz") as s:
        events = [e async for e in s]
        first = await s.get_final_response()
    [call] = first.output
    assert (call.type, call.call_id, call.name) == ("function_call", "call_q", "quiz")
    added = next(e for e in events if e.type == "response.output_item.added")
    assert (added.item.name, added.item.call_id) == ("quiz", "call_q")  # type: ignore[union-attr]
    deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert "".join(deltas) == '{"topic": "fractions"}' and len(deltas) == 2
    args_done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert args_done.arguments == '{"topic": "fractions"}'

    async with client.responses.stream(
        model=MODEL,
        conversation=conv.id,
        input=[{"type": "function_call_output", "call_id": "call_q", "output": "shown"}],
    ) as s:
        second = await s.get_final_response()
    assert second.output_text == LONG
    kinds = [i.type for i in (await client.conversations.items.list(conv.id, order="asc")).data]
    assert kinds == ["message", "function_call", "function_call_output", "message"]


async def test_resume_follows_a_response_that_is_still_working(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    hold = asyncio.Event()
    fake.model.push(Reply(text=LONG, hold=hold))
    fake.drop_stream_after(3)
    head, error = await _collect(
        await client.responses.create(model=MODEL, input="explain", stream=True, background=True)
    )
    assert error is not None and head[-1].type == "response.in_progress"
    rid = head[0].response.id
    assert (await client.responses.retrieve(rid)).status == "in_progress"
    reader = asyncio.ensure_future(
        _collect(await client.responses.retrieve(rid, stream=True, starting_after=2))
    )
    await asyncio.sleep(0.01)
    assert not reader.done()  # waiting for the model, not ended
    hold.set()
    tail, error = await reader
    assert error is None and tail[0].sequence_number == 3
    assert _text(tail) == LONG and tail[-1].type == "response.completed"


async def test_drop_then_resume_with_starting_after_has_no_gaps(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake.model.push(Reply(text=LONG, chunk_chars=10, delta_interval=0.002))
    fake.drop_stream_after(6)
    stream = await client.responses.create(
        model=MODEL, input="explain", stream=True, background=True
    )
    head, error = await _collect(stream)
    assert isinstance(error, openai.APIConnectionError)
    assert [e.sequence_number for e in head] == list(range(6))
    rid = head[0].response.id

    # Resumed (while the model may still write): replay after N, then live to the end.
    tail, error = await _collect(
        await client.responses.retrieve(rid, stream=True, starting_after=5)
    )
    assert error is None
    assert [e.sequence_number for e in tail] == list(range(6, 6 + len(tail)))
    assert _text(head) + _text(tail) == LONG
    assert tail[-1].type == "response.completed"
    resume = fake.requests[-1]
    assert (resume.method, resume.query["starting_after"], resume.query["stream"]) == (
        "GET",
        ["5"],
        ["true"],
    )

    # After the end, a resume replays what is left and closes.
    last = tail[-1].sequence_number
    replay, _ = await _collect(
        await client.responses.retrieve(rid, stream=True, starting_after=last - 2)
    )
    assert [e.sequence_number for e in replay] == [last - 1, last]
    everything, _ = await _collect(await client.responses.retrieve(rid, stream=True))
    assert _text(everything) == LONG and everything[0].type == "response.created"
    with pytest.raises(openai.BadRequestError):
        await client.responses.retrieve(rid, stream=True, extra_query={"starting_after": "x"})


async def test_foreground_stream_cannot_resume_and_stops_with_its_connection(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    conv = await client.conversations.create()
    stream = await client.responses.create(
        model=MODEL, conversation=conv.id, input="hi", stream=True
    )
    events, _ = await _collect(stream)
    assert events[0].response.status == "in_progress"
    assert [e.type for e in events[:2]] == ["response.created", "response.in_progress"]
    assert events[-1].response.output_text == "Echo: hi"
    with pytest.raises(openai.BadRequestError) as exc:
        await client.responses.retrieve(events[0].response.id, stream=True, starting_after=0)
    assert "background" in exc.value.message
    assert fake.violations == [f"stream resume of foreground response {events[0].response.id}"]

    fake.model.push(Reply(text=LONG, chunk_chars=8, delta_interval=0.01))  # still writing
    fake.drop_stream_after(4)
    cut, error = await _collect(
        await client.responses.create(model=MODEL, conversation=conv.id, input="more", stream=True)
    )
    assert error is not None
    await fake.wait_idle(timeout=2)
    assert fake.response(cut[0].response.id)["status"] == "cancelled"
    assert len((await client.conversations.items.list(conv.id)).data) == 2  # nothing added


async def test_stuck_in_queued_until_cancelled(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    conv = await client.conversations.create()
    fake.stick_next_in_queued()
    events, error = await _collect(
        await client.responses.create(
            model=MODEL, conversation=conv.id, input="hi", stream=True, background=True
        )
    )
    assert error is not None and [e.type for e in events] == ["response.created"]
    rid = events[0].response.id
    assert (await client.responses.retrieve(rid)).status == "queued"
    with pytest.raises(openai.BadRequestError) as exc:
        await client.responses.create(model=MODEL, conversation=conv.id, input="again")
    assert exc.value.code == "conversation_locked"
    fake.violations.clear()

    resumed = await client.responses.retrieve(rid, stream=True, starting_after=0)
    reader = asyncio.ensure_future(_collect(resumed))
    await fake.wait_for_sse(lambda e: e.get("type") == "response.queued")
    assert not reader.done()  # nothing more comes while it is stuck
    assert (await client.responses.cancel(rid)).status == "cancelled"
    replayed, error = await reader
    assert error is None and [e.type for e in replayed] == ["response.queued"]
    fake.model.push(Reply(text="unstuck"))
    resp = await client.responses.create(model=MODEL, conversation=conv.id, input="again")
    assert resp.output_text == "unstuck"


async def test_stream_create_error_after_processing_and_no_streaming_server(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake.fail_next("/responses", status=500, after_processing=True, method="POST")
    with pytest.raises(openai.InternalServerError):
        await client.with_options(max_retries=0).responses.create(
            model=MODEL, input="hi", stream=True, background=True
        )
    await fake.wait_idle(timeout=2)
    [created] = fake.responses_api.responses.values()
    assert created.obj["status"] == "completed"  # it ran, the client never saw it

    fake.streaming_supported = False
    with pytest.raises(openai.BadRequestError) as exc:
        await client.responses.create(model=MODEL, input="hi", stream=True, background=True)
    assert "not supported" in exc.value.message and exc.value.param == "stream"
    polled = await client.responses.create(model=MODEL, input="hi", background=True)
    with pytest.raises(openai.BadRequestError):
        await client.responses.retrieve(polled.id, stream=True)
    await fake.wait_idle(timeout=2)
    assert (await client.responses.retrieve(polled.id)).output_text == "Echo: hi"
    assert fake.violations == []


@pytest.mark.parametrize(
    ("reply", "last", "status"),
    [
        (Reply(fail="server_error"), "response.failed", "failed"),
        (Reply(text=LONG, status="incomplete"), "response.incomplete", "incomplete"),
        (Reply(text=LONG, stream_error="server_error"), "error", "failed"),
    ],
)
async def test_stream_endings(
    fake: FakeOpenAI, client: openai.AsyncOpenAI, reply: Reply, last: str, status: str
) -> None:
    fake.model.push(reply)
    events, error = await _collect(
        await client.responses.create(model=MODEL, input="hi", stream=True, background=True)
    )
    assert error is None and events[-1].type == last
    rid = events[0].response.id
    assert (await client.responses.retrieve(rid)).status == status
    if last == "error":
        assert events[-1].code == "server_error"
        assert 0 < len(_text(events)) < len(LONG)


# --- Assistants ----------------------------------------------------------------------------


async def _assistant(client: openai.AsyncOpenAI) -> Any:
    return await client.beta.assistants.create(
        model=MODEL,
        tools=[
            {"type": "code_interpreter"},
            {"type": "function", "function": {"name": "quiz", "parameters": {"type": "object"}}},
        ],
    )


async def test_run_stream_parses_and_merges_like_the_service(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    doc = await client.files.create(file=("bio.pdf", b"cells"), purpose="assistants")
    asst = await _assistant(client)
    thread = await client.beta.threads.create()
    fake.model.push(
        Reply(
            text=LONG,
            code=[CodeCall("plt.plot()", logs="ok", image_png=b"\x89PNG")],
            citations=[Citation(doc.id, quote="into sugar")],
            chunk_chars=7,
        )
    )
    stream = await client.beta.threads.runs.create(
        thread.id,
        assistant_id=asst.id,
        stream=True,
        additional_messages=[{"role": "user", "content": "explain"}],
    )
    events, error = await _collect(stream)
    assert error is None
    for name, data in fake.requests[-1].sse:
        ASSISTANT_EVENT.validate_python({"event": name, "data": data})
    kinds = [e.event for e in events]
    assert kinds[:3] == ["thread.run.created", "thread.run.queued", "thread.run.in_progress"]
    assert kinds[-4:] == [
        "thread.message.delta",
        "thread.message.completed",
        "thread.run.step.completed",
        "thread.run.completed",
    ]
    code = [
        call.code_interpreter.input
        for e in events
        if e.event == "thread.run.step.delta"
        for call in e.data.delta.step_details.tool_calls
        if call.code_interpreter and call.code_interpreter.input
    ]
    assert "".join(code) == "plt.plot()"
    [message] = [e.data for e in events if e.event == "thread.message.completed"]
    text = message.content[-1].text
    assert text.value.replace("【4:0†source】", "") == LONG
    pieces = [
        block.text.value
        for e in events
        if e.event == "thread.message.delta"
        for block in e.data.delta.content
        if block.type == "text"
    ]
    assert "".join(pieces) == text.value
    assert fake.user_messages(thread.id) == ["explain"]
    assert fake.violations == []


async def test_requires_action_ends_the_stream_and_submit_streams_the_rest(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    asst = await _assistant(client)
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": "quiz me"}])
    fake.model.push(
        Reply(function_calls=[FunctionCall("quiz", '{"n": 1}')]),
        Reply(text="Well done, that is right.", chunk_chars=4),
    )
    async with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=asst.id) as stream:
        await stream.until_done()
        run = await stream.get_final_run()
    assert run.status == "requires_action"
    assert fake.requests[-1].sse[-1][0] == "thread.run.requires_action"
    [call] = run.required_action.submit_tool_outputs.tool_calls  # type: ignore[union-attr]
    assert (call.function.name, call.function.arguments) == ("quiz", '{"n": 1}')
    with pytest.raises(openai.BadRequestError):  # one active run per thread
        await client.beta.threads.messages.create(thread.id, role="user", content="skip")
    fake.violations.clear()

    handler = AsyncAssistantEventHandler()
    async with client.beta.threads.runs.submit_tool_outputs_stream(
        thread_id=thread.id,
        run_id=run.id,
        tool_outputs=[{"tool_call_id": call.id, "output": "answered"}],
        event_handler=handler,
    ) as stream:
        await stream.until_done()
        [message] = await stream.get_final_messages()
        final_run = await stream.get_final_run()
    assert final_run.status == "completed"
    assert message.content[0].text.value == "Well done, that is right."  # type: ignore[union-attr]
    submitted = fake.requests[-1].sse
    assert submitted[0][0] == "thread.run.step.completed" and submitted[1][0] == "thread.run.queued"
    assert fake.tool_outputs()[0]["output"] == "answered"


async def test_thread_and_run_stream_drop_and_cancel(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    asst = await _assistant(client)
    events, error = await _collect(
        await client.beta.threads.create_and_run(
            assistant_id=asst.id,
            thread={"messages": [{"role": "user", "content": "hi"}]},
            stream=True,
        )
    )
    assert error is None and events[0].event == "thread.created"
    assert events[-1].event == "thread.run.completed"
    thread_id = events[0].data.id

    # A dropped stream leaves the run going: polling finds it completed.
    fake.model.push(Reply(text=LONG, chunk_chars=5))
    fake.drop_stream_after(4, path_contains="/runs")
    cut, error = await _collect(
        await client.beta.threads.runs.create(thread_id, assistant_id=asst.id, stream=True)
    )
    assert error is not None and len(cut) == 4
    run = await client.beta.threads.runs.poll(cut[0].data.id, thread_id)
    assert run.status == "completed"

    # Cancelling a streamed run ends its stream with thread.run.cancelled.
    fake.model.push(Reply(text="slow", first_token_latency=5))
    stream = await client.beta.threads.runs.create(thread_id, assistant_id=asst.id, stream=True)
    seen = []
    async for event in stream:
        seen.append(event.event)
        if event.event == "thread.run.in_progress":
            await client.beta.threads.runs.cancel(event.data.id, thread_id=thread_id)
    assert seen[-2:] == ["thread.run.cancelling", "thread.run.cancelled"]

    fake.model.push(Reply(text=LONG, stream_error="server_error"))
    events, _ = await _collect(
        await client.beta.threads.runs.create(thread_id, assistant_id=asst.id, stream=True)
    )
    assert events[-1].event == "error" and events[-1].data.code == "server_error"
    run = await client.beta.threads.runs.retrieve(events[0].data.id, thread_id=thread_id)
    assert run.status == "failed"
    [msg] = (await client.beta.threads.messages.list(thread_id, run_id=run.id)).data
    assert msg.status == "incomplete"

    fake.streaming_supported = False
    with pytest.raises(openai.BadRequestError):
        await client.beta.threads.runs.create(thread_id, assistant_id=asst.id, stream=True)
