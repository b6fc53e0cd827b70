"""The fake OpenAI server, exercised through the real openai SDK (both protocols)."""

from __future__ import annotations

import asyncio
import warnings

import aiohttp
import openai
import pytest

from tests.fakes.openai_server import (
    Citation,
    CodeCall,
    FakeOpenAI,
    FunctionCall,
    ModelContext,
    Reply,
)

PNG = b"\x89PNG\r\n\x1a\nfake-image-bytes"
MODEL = "gpt-4.1-mini"
CI_TOOL = {"type": "code_interpreter", "container": {"type": "auto"}}
QUIZ_TOOL = {
    "type": "function",
    "name": "quiz",
    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
}


@pytest.fixture(autouse=True)
def _quiet_deprecations():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


@pytest.fixture
async def fake():
    f = FakeOpenAI()
    await f.start()
    yield f
    await f.stop()


@pytest.fixture
async def client(fake):
    c = openai.AsyncOpenAI(base_url=fake.base_url, api_key="sk-test")
    yield c
    await c.close()


# --- Responses + Conversations ------------------------------------------------------------


async def test_responses_plain_reply(fake, client):
    conv = await client.conversations.create(metadata={"slack": "C1:1.0"})
    assert conv.id.startswith("conv_") and conv.metadata == {"slack": "C1:1.0"}

    resp = await client.responses.create(
        model=MODEL,
        instructions="Be kind",
        conversation=conv.id,
        input="hello",
        store=True,
    )
    assert resp.status == "completed"
    assert resp.output_text == "Echo: hello"
    assert resp.conversation.id == conv.id

    items = await client.conversations.items.list(conv.id, order="asc")
    assert [(i.type, i.role) for i in items.data] == [("message", "user"), ("message", "assistant")]
    assert items.data[1].content[0].text == "Echo: hello"

    ctx = fake.model.calls[0]
    assert ctx.protocol == "responses" and ctx.thread_id == conv.id
    assert ctx.instructions == "Be kind" and ctx.model == MODEL
    assert ctx.history == [{"role": "user", "text": "hello"}]
    assert fake.user_messages(conv.id) == ["hello"]
    assert fake.violations == []
    assert fake.max_concurrent[conv.id] == 1


async def test_responses_background_poll_and_cancel(fake, client):
    conv = await client.conversations.create()
    fake.model.push(Reply(text="slow answer", latency=0.1), Reply(text="never", latency=5))
    resp = await client.responses.create(
        model=MODEL,
        conversation={"id": conv.id},
        background=True,
        store=True,
        input=[{"role": "user", "content": [{"type": "input_text", "text": "q1"}]}],
    )
    assert resp.status == "queued"
    while resp.status in ("queued", "in_progress"):
        await asyncio.sleep(0.02)
        resp = await client.responses.retrieve(resp.id)
    assert resp.status == "completed" and resp.output_text == "slow answer"

    second = await client.responses.create(
        model=MODEL, conversation=conv.id, background=True, input="q2"
    )
    cancelled = await client.responses.cancel(second.id)
    assert cancelled.status == "cancelled"
    await fake.wait_idle(timeout=1)
    items = await client.conversations.items.list(conv.id)
    assert len(items.data) == 2  # the cancelled turn left nothing behind
    assert fake.violations == []


async def test_responses_function_call_roundtrip(fake, client):
    conv = await client.conversations.create()
    fake.model.push(
        Reply(function_calls=[FunctionCall("quiz", '{"q": "2+2"}', call_id="call_q1")]),
        Reply(text="Well done!"),
    )
    resp = await client.responses.create(
        model=MODEL, conversation=conv.id, input="quiz me", tools=[QUIZ_TOOL]
    )
    assert resp.status == "completed"
    [call] = resp.output
    assert (call.type, call.call_id, call.name, call.arguments) == (
        "function_call",
        "call_q1",
        "quiz",
        '{"q": "2+2"}',
    )
    assert call.id.startswith("fc_")

    # Anything but the output is refused while the call is open.
    with pytest.raises(openai.BadRequestError) as exc:
        await client.responses.create(model=MODEL, conversation=conv.id, input="skip")
    assert "No tool output found for function call call_q1" in exc.value.message
    assert fake.violations == ["missing tool output call_q1"]
    fake.violations.clear()

    resp = await client.responses.create(
        model=MODEL,
        conversation=conv.id,
        tools=[QUIZ_TOOL],
        input=[{"type": "function_call_output", "call_id": "call_q1", "output": "4"}],
    )
    assert resp.output_text == "Well done!"
    assert fake.model.calls[-1].tool_outputs == [{"call_id": "call_q1", "output": "4"}]
    assert fake.tool_outputs() == [
        {"call_id": "call_q1", "output": "4", "protocol": "responses", "thread": conv.id}
    ]
    kinds = [i.type for i in (await client.conversations.items.list(conv.id, order="asc")).data]
    assert kinds == ["message", "function_call", "function_call_output", "message"]
    assert fake.violations == []


async def test_responses_conversation_locked(fake, client):
    conv = await client.conversations.create()
    fake.model.push(Reply(text="busy", latency=0.2))
    first = await client.responses.create(
        model=MODEL, conversation=conv.id, input="one", background=True
    )
    with pytest.raises(openai.BadRequestError) as exc:
        await client.responses.create(model=MODEL, conversation=conv.id, input="two")
    assert exc.value.code == "conversation_locked"
    assert fake.violations == [f"conversation_locked {conv.id}"]
    await fake.wait_idle(timeout=2)
    assert (await client.responses.retrieve(first.id)).status == "completed"
    assert fake.max_concurrent[conv.id] == 1
    assert fake.user_messages() == ["one"]


async def test_responses_unknown_conversation_is_404(client):
    with pytest.raises(openai.NotFoundError):
        await client.responses.create(model=MODEL, conversation="conv_nope", input="x")


async def test_responses_fail_next_then_retry_succeeds(fake, client):
    conv = await client.conversations.create()
    fake.fail_next("/responses", status=500, retry_after=0.01)
    resp = await client.responses.create(model=MODEL, conversation=conv.id, input="hi")
    assert resp.output_text == "Echo: hi"
    posts = [r for r in fake.requests if r.method == "POST" and r.path == "/v1/responses"]
    assert [r.status for r in posts] == [500, 200]
    assert posts[1].headers.get("x-stainless-retry-count") == "1"
    assert len(fake.model.calls) == 1


async def test_responses_failed_status(fake, client):
    conv = await client.conversations.create()
    fake.model.push(Reply(fail="server_error"))
    resp = await client.responses.create(model=MODEL, conversation=conv.id, input="hi")
    assert resp.status == "failed" and resp.error.code == "server_error"
    assert (await client.conversations.items.list(conv.id)).data == []


async def test_responses_code_interpreter_with_image_and_file(fake, client):
    conv = await client.conversations.create()
    code = CodeCall(
        "plot()", logs="done", image_png=PNG, file_name="data.csv", file_bytes=b"a,b\n1,2\n"
    )
    fake.model.push(Reply(text="Here is your plot.", code=[code]), Reply(text="again", code=[code]))
    resp = await client.responses.create(
        model=MODEL,
        conversation=conv.id,
        input="plot it",
        tools=[CI_TOOL],
        include=["code_interpreter_call.outputs"],
    )
    ci, msg = resp.output
    assert ci.type == "code_interpreter_call" and ci.code == "plot()"
    assert ci.container_id.startswith("cntr_")
    assert ci.outputs[0].type == "logs" and ci.outputs[0].logs == "done"
    assert ci.outputs[1].type == "image" and ci.outputs[1].url.startswith("data:image/png;base64,")
    text = msg.content[0]
    assert text.text.startswith("Here is your plot.")
    cites = {a.filename: a for a in text.annotations}
    assert all(a.type == "container_file_citation" for a in text.annotations)
    csv = cites["data.csv"]
    assert text.text[csv.start_index : csv.end_index] == "sandbox:/mnt/data/data.csv"
    image = next(a for name, a in cites.items() if name.endswith(".png"))
    content = client.containers.files.content
    got = await content.retrieve(image.file_id, container_id=ci.container_id)
    assert got.content == PNG
    got = await content.retrieve(csv.file_id, container_id=csv.container_id)
    assert got.content == b"a,b\n1,2\n"

    # Without include the outputs are null; the container is reused in the conversation.
    again = await client.responses.create(
        model=MODEL, conversation=conv.id, input="again", tools=[CI_TOOL]
    )
    assert again.output[0].outputs is None
    assert again.output[0].container_id == ci.container_id


async def test_responses_file_input_and_citation(fake, client):
    uploaded = await client.files.create(file=("notes.pdf", b"%PDF-1.4 ..."), purpose="user_data")
    assert uploaded.filename == "notes.pdf" and uploaded.bytes == 12
    assert fake.files[uploaded.id] == {
        "filename": "notes.pdf",
        "purpose": "user_data",
        "bytes": b"%PDF-1.4 ...",
    }
    conv = await client.conversations.create()
    fake.model.push(
        Reply(text="Plants use light. Done.", citations=[Citation(uploaded.id, quote="use light.")])
    )
    resp = await client.responses.create(
        model=MODEL,
        conversation=conv.id,
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "summarise"},
                    {"type": "input_file", "file_id": uploaded.id},
                ],
            }
        ],
    )
    assert fake.model.calls[0].files == [uploaded.id]
    assert resp.output[0].type == "file_search_call"
    [ann] = resp.output[-1].content[0].annotations
    assert (ann.type, ann.file_id, ann.filename, ann.index) == (
        "file_citation",
        uploaded.id,
        "notes.pdf",
        len("Plants use light."),
    )
    assert (await client.files.content(uploaded.id)).content == b"%PDF-1.4 ..."


# --- Assistants v2 -------------------------------------------------------------------------


async def _assistant_and_thread(client, text: str = "hello", **thread_kw):
    asst = await client.beta.assistants.create(
        model=MODEL,
        name="Tutor",
        instructions="Teach",
        tools=[
            {"type": "code_interpreter"},
            {
                "type": "function",
                "function": {"name": "quiz", "parameters": {"type": "object", "properties": {}}},
            },
        ],
    )
    thread = await client.beta.threads.create(metadata={"k": "v"}, **thread_kw)
    await client.beta.threads.messages.create(thread.id, role="user", content=text)
    return asst, thread


async def test_assistants_plain_reply(fake, client):
    asst, thread = await _assistant_and_thread(client)
    assert fake.assistants[asst.id]["instructions"] == "Teach"
    run = await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=asst.id)
    assert run.status == "completed" and run.expires_at is None
    msgs = await client.beta.threads.messages.list(thread.id, run_id=run.id)
    [msg] = msgs.data
    assert msg.role == "assistant" and msg.run_id == run.id
    assert msg.content[0].text.value == "Echo: hello"
    all_msgs = await client.beta.threads.messages.list(thread.id, order="asc")
    assert [m.role for m in all_msgs.data] == ["user", "assistant"]

    ctx: ModelContext = fake.model.calls[0]
    assert (ctx.protocol, ctx.thread_id, ctx.instructions) == ("assistants", thread.id, "Teach")
    steps = await client.beta.threads.runs.steps.list(run.id, thread_id=thread.id)
    assert [s.type for s in steps.data] == ["message_creation"]
    assert fake.run(run.id)["status"] == "completed"
    assert fake.violations == [] and fake.max_concurrent[thread.id] == 1


async def test_assistants_function_call_roundtrip_and_active_run_rule(fake, client):
    asst, thread = await _assistant_and_thread(client, "quiz me")
    fake.model.push(
        Reply(function_calls=[FunctionCall("quiz", '{"n": 1}'), FunctionCall("quiz", "{}")]),
        Reply(text="Nice work"),
    )
    run = await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=asst.id)
    assert run.status == "requires_action"
    assert run.expires_at == run.created_at + 600
    calls = run.required_action.submit_tool_outputs.tool_calls
    assert [c.function.name for c in calls] == ["quiz", "quiz"]
    assert all(c.id.startswith("call_") for c in calls)

    with pytest.raises(openai.BadRequestError) as exc:
        await client.beta.threads.messages.create(thread.id, role="user", content="skip")
    assert exc.value.body["message"] == (
        f"Can't add messages to {thread.id} while a run {run.id} is active."
    )
    with pytest.raises(openai.BadRequestError):
        await client.beta.threads.runs.create(thread_id=thread.id, assistant_id=asst.id)
    with pytest.raises(openai.BadRequestError):
        await client.beta.threads.runs.submit_tool_outputs(
            run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": calls[0].id, "output": "a"}]
        )
    assert fake.violations == [
        f"active run on {thread.id}",
        f"active run on {thread.id}",
        f"missing tool output {calls[1].id}",
    ]
    fake.violations.clear()

    run = await client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id,
        thread_id=thread.id,
        tool_outputs=[{"tool_call_id": c.id, "output": f"answer {i}"} for i, c in enumerate(calls)],
    )
    assert run.status == "completed"
    assert [o["output"] for o in fake.tool_outputs()] == ["answer 0", "answer 1"]
    assert fake.model.calls[-1].tool_outputs[0] == {"call_id": calls[0].id, "output": "answer 0"}
    steps = await client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc")
    assert [s.type for s in steps.data] == ["tool_calls", "message_creation"]
    fn = steps.data[0].step_details.tool_calls[1]
    assert fn.type == "function" and fn.function.output == "answer 1"
    [msg] = (await client.beta.threads.messages.list(thread.id, run_id=run.id)).data
    assert msg.content[0].text.value == "Nice work"
    assert fake.violations == []


async def test_assistants_requires_action_expires(fake, client):
    asst, thread = await _assistant_and_thread(client)
    fake.model.push(Reply(function_calls=[FunctionCall("quiz", "{}")]))
    run = await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=asst.id)
    assert run.status == "requires_action"
    fake.clock.advance(601)
    run = await client.beta.threads.runs.retrieve(run.id, thread_id=thread.id)
    assert run.status == "expired" and run.last_error is None
    with pytest.raises(openai.BadRequestError) as exc:
        await client.beta.threads.runs.submit_tool_outputs(
            run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": "call_x", "output": "1"}]
        )
    assert "expired" in exc.value.message
    # The thread is free again.
    await client.beta.threads.messages.create(thread.id, role="user", content="next")
    assert fake.user_messages(thread.id) == ["hello", "next"]
    assert fake.violations == []


async def test_assistants_fail_next_then_retry_and_failed_run(fake, client):
    asst, thread = await _assistant_and_thread(client)
    fake.fail_next("/runs", status=503, retry_after=0.01)
    fake.model.push(Reply(fail="rate_limit_exceeded"))
    run = await client.beta.threads.runs.create(thread_id=thread.id, assistant_id=asst.id)
    statuses = [r.status for r in fake.requests if r.path.endswith("/runs")]
    assert statuses == [503, 200]
    run = await client.beta.threads.runs.poll(run.id, thread.id)
    assert run.status == "failed" and run.last_error.code == "rate_limit_exceeded"


async def test_assistants_code_image_and_citation(fake, client):
    doc = await client.files.create(file=("bio.pdf", b"cells"), purpose="assistants")
    asst = await client.beta.assistants.create(model=MODEL, tools=[{"type": "file_search"}])
    thread = await client.beta.threads.create(
        messages=[
            {
                "role": "user",
                "content": "chart and cite",
                "attachments": [{"file_id": doc.id, "tools": [{"type": "file_search"}]}],
            }
        ]
    )
    fake.model.push(
        Reply(
            text="Cells divide. See chart.",
            code=[CodeCall("plt.plot()", logs="ok", image_png=PNG)],
            citations=[Citation(doc.id, quote="Cells divide.")],
        )
    )
    run = await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=asst.id)
    assert fake.model.calls[0].files == [doc.id]
    steps = await client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc")
    ci = steps.data[1].step_details.tool_calls[0]
    assert ci.type == "code_interpreter" and ci.code_interpreter.input == "plt.plot()"
    logs, image = ci.code_interpreter.outputs
    assert logs.logs == "ok"
    assert (await client.files.content(image.image.file_id)).content == PNG

    [msg] = (await client.beta.threads.messages.list(thread.id, run_id=run.id)).data
    assert msg.content[0].type == "image_file"
    assert msg.content[0].image_file.file_id == image.image.file_id
    text = msg.content[1].text
    assert text.value == "Cells divide.【4:0†source】 See chart."
    [ann] = text.annotations
    assert ann.type == "file_citation" and ann.file_citation.file_id == doc.id
    assert text.value[ann.start_index : ann.end_index] == ann.text == "【4:0†source】"


async def test_assistants_cancel_run(fake, client):
    asst, thread = await _assistant_and_thread(client)
    fake.model.push(Reply(text="slow", latency=5))
    run = await client.beta.threads.runs.create(thread_id=thread.id, assistant_id=asst.id)
    run = await client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    assert run.status == "cancelling"
    run = await client.beta.threads.runs.poll(run.id, thread.id)
    assert run.status == "cancelled" and run.cancelled_at is not None
    with pytest.raises(openai.BadRequestError):
        await client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    await fake.wait_idle(timeout=1)


async def test_assistants_require_beta_header(fake):
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{fake.base_url}/threads", json={}) as resp:
            assert resp.status == 400
            assert "OpenAI-Beta" in (await resp.json())["error"]["message"]
    assert fake.violations == ["missing OpenAI-Beta header on POST /v1/threads"]


async def test_hang_next_delays_request(fake, client):
    fake.hang_next("/conversations", 0.2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await client.conversations.create()
    assert loop.time() - started >= 0.2
