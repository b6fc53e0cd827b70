"""Code interpreter, run steps, files and citations, end to end (issue 4).

These are about the model service's own tools (code interpreter, file store, file search
and its citations), so they run for the two runtimes that have them; what the ``chat``
runtime does instead (the bot reads files itself) is in ``test_chat.py``. The notes about
files the bot cannot fetch from Slack apply to every runtime.

The fakes finish a run in one go, so a step "in flight" is simulated by adding an
in-progress item (Responses) or run step (Assistants) to the fake while the run waits.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.e2e.conftest import Harness
from tests.fakes.openai_model import Citation, CodeCall, ModelContext, Reply, new_id
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_payloads import app_mention, next_ts
from tests.fakes.slack_server import FakeSlack, message_text

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n% a paper about prime numbers\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
CODE_LABEL = "Writing and running code…"
EVERY_RUNTIME = pytest.mark.parametrize("runtime", ["responses", "assistants", "chat"])


@pytest.fixture(params=["responses", "assistants"])
def runtime(request: pytest.FixtureRequest) -> str:
    """The runtimes with a code interpreter and a file store."""
    return str(request.param)


# -- helpers ---------------------------------------------------------------------------------


def share_pdf(slack: FakeSlack, name: str = "paper.pdf", content: bytes = PDF, **kw: Any) -> dict:
    return slack.add_file(
        name=name, content=content, mimetype="application/pdf", filetype="pdf", **kw
    )


def model_uploads(fake: FakeOpenAI) -> list[dict]:
    """Files the bot uploaded to the model service (not the ones the model made)."""
    return [f for f in fake.files.values() if f["purpose"] in ("user_data", "vision", "assistants")]


def cite_first_file(text: str, quote: str) -> Any:
    def reply(ctx: ModelContext) -> Reply:
        return Reply(text=text, citations=[Citation(fid, quote) for fid in ctx.files[:1]])

    return reply


def work_messages(h: Harness, channel: str, thread_ts: str) -> list[str]:
    return [a for a in h.answers(channel, thread_ts) if "Show work" in a]


def update_texts(slack: FakeSlack) -> list[str]:
    return [str(c.args.get("text") or "") for c in slack.calls_to("chat.update")]


async def mention_with_files(h: Harness, text: str, files: list[dict]) -> dict:
    assert h.sender is not None
    event = app_mention(text=text, ts=next_ts(), files=files)
    result = await h.sender.post_event(event)
    assert result.status == 200, result.body
    return event


async def start_code_step_in_flight(h: Harness, code: str) -> None:
    """Make the run that is working show a code interpreter step, as a real service does."""
    fake, runtime = h.openai, h.runtime

    async def working() -> Any:
        if runtime == "responses":
            busy = fake.responses_api.busy()
            return fake.responses_api.responses[busy[-1]] if busy else None
        busy = fake.assistants_api.busy()
        return fake.assistants_api.runs[busy[-1]] if busy else None

    run = await h.slack.wait_for(working, timeout=5)
    if runtime == "responses":
        run.obj["output"].append(
            {
                "id": new_id("ci_", hex_len=48),
                "type": "code_interpreter_call",
                "code": code,
                "container_id": new_id("cntr_", hex_len=48),
                "status": "interpreting",
                "outputs": None,
            }
        )
    else:
        fake.assistants_api._step(
            run,
            "tool_calls",
            {
                "type": "tool_calls",
                "tool_calls": [
                    {
                        "id": new_id("call_"),
                        "type": "code_interpreter",
                        "code_interpreter": {"input": code, "outputs": []},
                    }
                ],
            },
            status="in_progress",
        )


class Listener:
    """An HTTP server on 127.0.0.1 that is not Slack: records every request it gets."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append({"path": request.path, "headers": dict(request.headers)})
        return web.Response(body=PDF, content_type="application/pdf")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    server = Listener()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def small_cap(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, tmp_path: Path, runtime: str
) -> AsyncIterator[Harness]:
    """A bot that reads files up to 10 KB."""
    h = Harness(fake_slack, fake_openai, tmp_path / "bot.db", runtime, MAX_FILE_MB="0.01")
    await h.start()
    yield h
    await h.stop()
    assert fake_openai.violations == []


@pytest.fixture
async def no_code(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, tmp_path: Path, runtime: str
) -> AsyncIterator[Harness]:
    """A bot with the code interpreter turned off."""
    h = Harness(
        fake_slack,
        fake_openai,
        tmp_path / "bot.db",
        runtime,
        ASSISTANT_TOOLS="file_search,display_quiz",
    )
    await h.start()
    yield h
    await h.stop()
    assert fake_openai.violations == []


# -- code interpreter ------------------------------------------------------------------------


async def test_progress_shows_the_code_step_while_the_run_works(harness: Harness) -> None:
    """While the code runs, the answer's timeline says so (task_update chunks); the code
    step ends complete and the answer follows in the same message."""
    harness.openai.model.push(
        Reply(
            text="6 × 7 = 42",
            code=[CodeCall(code="print(6 * 7)", logs="42", run_time=2.0)],
            first_token_latency=0.2,
        )
    )
    event = await harness.mention("what is 6 * 7? check with code")

    def running_tasks() -> list[dict[str, Any]]:
        return [
            task
            for m in harness.slack.bot_messages("C1", event["ts"])
            for task in harness.slack.tasks("C1", m["ts"]).values()
            if task["status"] == "in_progress" and "code" in task["title"].lower()
        ]

    await harness.slack.wait_for(running_tasks, timeout=5)
    answer, work = await harness.wait_answers("C1", event["ts"], 2)
    assert "42" in answer and "Show work" in work
    [streamed] = [
        m
        for m in harness.slack.bot_messages("C1", event["ts"])
        if harness.slack.tasks("C1", m["ts"])
    ]
    assert [t["status"] for t in harness.slack.tasks("C1", streamed["ts"]).values()] == ["complete"]
    assert "42" in message_text(streamed)


async def test_code_and_output_are_shown_compactly_after_the_answer(harness: Harness) -> None:
    many = "\n".join(str(i) for i in range(10_000))
    harness.openai.model.push(
        Reply(
            text="6 × 7 = **42**",
            code=[
                CodeCall(code="print(6 * 7)", logs="42"),
                CodeCall(code="for i in range(10_000):\n    print(i)", logs=many),
            ],
        )
    )
    event = await harness.mention("what is 6 * 7? check with code")
    answers = await harness.wait_answers("C1", event["ts"], 2)
    assert "42" in answers[0] and "Show work" not in answers[0]
    [work] = work_messages(harness, "C1", event["ts"])
    assert answers[1] == work, "the work follows the answer"
    assert harness.slack.uploads == []
    assert "print(6 * 7)" in work and "```" in work
    assert "42" in work
    # A huge output is cut, keeping its start and its end; the reply stays small.
    assert "truncated" in work and "9999" in work
    assert len(work) < 8_000
    [reply] = [
        m for m in harness.slack.bot_messages("C1", event["ts"]) if "Show work" in message_text(m)
    ]
    assert reply["thread_ts"] == event["ts"]
    assert reply["blocks"][0]["type"] == "markdown"


async def test_generated_image_and_file_are_uploaded_to_the_thread(harness: Harness) -> None:
    csv = b"n,square\n1,1\n2,4\n3,9\n"
    harness.openai.model.push(
        Reply(
            text="Here is the plot and the table.",
            code=[
                CodeCall(code="plt.plot(xs, ys)", image_png=PNG),
                CodeCall(code="df.to_csv('squares.csv')", file_name="squares.csv", file_bytes=csv),
            ],
        )
    )
    event = await harness.mention("plot x^2 and give me a table")
    await harness.slack.wait_for(lambda: len(harness.slack.uploads) >= 2)
    uploads = {u["bytes"]: u for u in harness.slack.uploads}
    assert set(uploads) == {PNG, csv}
    for upload in uploads.values():
        assert (upload["channel_id"], upload["thread_ts"]) == ("C1", event["ts"])
    assert uploads[csv]["filename"] == "squares.csv"
    assert uploads[PNG]["filename"].endswith(".png")
    assert harness.slack.calls_to("files.completeUploadExternal")
    # Answer, then what the code made, then the code: one reply each, in the thread.
    await harness.slack.wait_for(lambda: work_messages(harness, "C1", event["ts"]))
    thread = [m for m in harness.slack.thread("C1", event["ts"]) if m["ts"] != event["ts"]]
    kinds = [
        "file" if m.get("files") else "work" if "Show work" in message_text(m) else "answer"
        for m in thread
    ]
    assert kinds == ["answer", "file", "file", "work"]
    # The answer names the file instead of linking into the model's sandbox.
    answer = message_text(thread[0])
    assert "Here is the plot" in answer and "squares.csv" in answer
    assert "sandbox:" not in answer


async def test_code_interpreter_is_on_by_default(harness: Harness) -> None:
    event = await harness.mention("hello")
    await harness.wait_answers("C1", event["ts"], 1)
    tools = [t.get("type") for t in harness.openai.model.calls[0].tools]
    assert "code_interpreter" in tools


async def test_assistant_tools_can_turn_the_code_interpreter_off(no_code: Harness) -> None:
    event = await no_code.mention("hello")
    await no_code.wait_answers("C1", event["ts"], 1)
    tools = [t.get("type") for t in no_code.openai.model.calls[0].tools]
    assert "code_interpreter" not in tools
    assert "function" in tools  # display_quiz is still there
    # A document still reaches the model without the code interpreter.
    await no_code.say("read this", thread_ts=event["ts"], files=[share_pdf(no_code.slack)])
    await no_code.wait_answers("C1", event["ts"], 2)
    assert no_code.openai.model.calls[-1].files
    # A table: Responses reads it as an input file; Assistants' file search cannot, so
    # the model is told rather than the turn failing.
    data = no_code.slack.add_file(
        name="data.csv", content=b"x,y\n1,2\n", mimetype="text/csv", filetype="csv"
    )
    await no_code.say("what is in this table?", thread_ts=event["ts"], files=[data])
    await no_code.wait_answers("C1", event["ts"], 3)
    ctx = no_code.openai.model.calls[-1]
    if no_code.runtime == "responses":
        assert len(ctx.files) == 1
    else:
        assert ctx.files == [] and "data.csv" in (ctx.last_user_text or "")
    assert all(t.get("type") != "code_interpreter" for t in ctx.tools)


# -- files shared in the thread ---------------------------------------------------------------


async def test_shared_pdf_reaches_the_model_and_the_citation_is_a_footnote(
    harness: Harness,
) -> None:
    event = await harness.mention("I'll send you a paper")
    await harness.wait_answers("C1", event["ts"], 1)
    harness.openai.model.push(cite_first_file("It is about prime numbers.", "prime numbers"))
    pdf = share_pdf(harness.slack)
    await harness.say("what is this paper about?", thread_ts=event["ts"], files=[pdf])
    answers = await harness.wait_answers("C1", event["ts"], 2)
    ctx = harness.openai.model.calls[-1]
    assert ctx.last_user_text == "what is this paper about?"
    [file_id] = ctx.files
    assert harness.openai.files[file_id]["bytes"] == PDF
    assert harness.openai.files[file_id]["filename"] == "paper.pdf"
    # Downloaded with the bot token.
    assert harness.slack.downloads == [{"file_id": pdf["id"], "authorized": True}]
    answer = answers[1]
    assert "prime numbers" in answer
    assert "[1]" in answer and "Sources" in answer and "paper.pdf" in answer
    assert "【" not in answer and "†" not in answer


async def test_mention_with_a_file_starts_a_thread_about_it(harness: Harness) -> None:
    harness.openai.model.push(cite_first_file("A paper on primes.", "primes"))
    event = await mention_with_files(harness, "summarize this", [share_pdf(harness.slack)])
    [answer] = await harness.wait_answers("C1", event["ts"], 1)
    [file_id] = harness.openai.model.calls[0].files
    assert harness.openai.files[file_id]["bytes"] == PDF
    assert "paper.pdf" in answer and "[1]" in answer


async def test_the_same_file_is_uploaded_to_the_model_once_per_thread(harness: Harness) -> None:
    pdf = share_pdf(harness.slack)
    event = await mention_with_files(harness, "read this", [pdf])
    await harness.wait_answers("C1", event["ts"], 1)
    await harness.say("and again", thread_ts=event["ts"], files=[pdf])
    # The same content uploaded again to Slack (a new Slack file) is not sent twice either.
    await harness.say("once more", thread_ts=event["ts"], files=[share_pdf(harness.slack)])
    await harness.wait_answers("C1", event["ts"], 3)
    assert len(model_uploads(harness.openai)) == 1
    assert len(harness.slack.downloads) == 2  # a known Slack file is not even downloaded
    [first, second, third] = harness.openai.model.calls
    assert first.files and second.files == first.files and third.files == first.files
    # Another thread gets its own copy.
    other = await mention_with_files(harness, "read this too", [pdf])
    await harness.wait_answers("C1", other["ts"], 1)
    assert len(model_uploads(harness.openai)) == 2


@EVERY_RUNTIME
async def test_a_file_over_the_cap_gets_a_note_and_the_question_is_answered(
    small_cap: Harness,
) -> None:
    big = share_pdf(small_cap.slack, name="huge.pdf", content=PDF + b"x" * 20_000)
    event = await mention_with_files(small_cap, "what is in this?", [big])
    answers = await small_cap.wait_answers("C1", event["ts"], 2)
    [note] = [a for a in answers if "huge.pdf" in a]
    assert "10 KB" in note and "20 KB" in note
    assert any("Echo: what is in this?" in a for a in answers)
    assert model_uploads(small_cap.openai) == []
    assert small_cap.slack.downloads == []  # Slack told us the size: no download at all
    assert small_cap.openai.model.calls[0].files == []


@EVERY_RUNTIME
async def test_a_file_bigger_than_announced_is_cut_off_while_downloading(
    small_cap: Harness,
) -> None:
    big = share_pdf(small_cap.slack, name="liar.pdf", content=PDF + b"x" * 200_000)
    big["size"] = 1_000
    event = await mention_with_files(small_cap, "and this?", [big])
    answers = await small_cap.wait_answers("C1", event["ts"], 2)
    [note] = [a for a in answers if "liar.pdf" in a]
    assert "10 KB" in note
    assert model_uploads(small_cap.openai) == []
    assert any("Echo: and this?" in a for a in answers)


@EVERY_RUNTIME
async def test_an_html_page_instead_of_the_file_is_explained(harness: Harness) -> None:
    pdf = share_pdf(harness.slack, html_instead=True)
    event = await mention_with_files(harness, "what is this paper about?", [pdf])
    answers = await harness.wait_answers("C1", event["ts"], 2)
    [note] = [a for a in answers if "paper.pdf" in a]
    assert "files:read" in note
    assert any("Echo: what is this paper about?" in a for a in answers)
    assert model_uploads(harness.openai) == []
    assert harness.openai.model.calls[0].files == []
    assert harness.slack.downloads and harness.slack.downloads[0]["authorized"]
    # A login page served under the file's own type is caught by its content.
    page = b"<!DOCTYPE html>\n<html><head><title>Slack</title></head><body>Sign in</body></html>"
    disguised = share_pdf(harness.slack, name="notes.pdf", content=page)
    await harness.say("and this one?", thread_ts=event["ts"], files=[disguised])
    answers = await harness.wait_answers("C1", event["ts"], 4)
    assert any("notes.pdf" in a and "files:read" in a for a in answers)
    assert model_uploads(harness.openai) == []


async def test_a_stub_file_is_completed_with_files_info(harness: Harness) -> None:
    """Slack Connect events carry only a stub (``file_access: check_file_info``)."""
    pdf = share_pdf(harness.slack)
    stub = {"id": pdf["id"], "mode": "hosted", "file_access": "check_file_info"}
    event = await mention_with_files(harness, "read this", [stub])
    await harness.wait_answers("C1", event["ts"], 1)
    assert harness.slack.calls_to("files.info")
    [file_id] = harness.openai.model.calls[0].files
    assert harness.openai.files[file_id]["bytes"] == PDF


async def test_a_shared_picture_is_shown_to_the_model(harness: Harness) -> None:
    picture = harness.slack.add_file(
        name="graph.png", content=PNG, mimetype="image/png", filetype="png"
    )
    event = await mention_with_files(harness, "what does this graph show?", [picture])
    await harness.wait_answers("C1", event["ts"], 1)
    [uploaded] = model_uploads(harness.openai)
    assert uploaded["bytes"] == PNG
    file_id = next(fid for fid, f in harness.openai.files.items() if f is uploaded)
    sent = [
        r.json
        for r in harness.openai.requests
        if r.method == "POST" and r.json and file_id in json.dumps(r.json)
    ]
    assert sent, "the picture never reached the model"
    shape = json.dumps(sent[-1])
    assert ("input_image" in shape) if harness.runtime == "responses" else ("image_file" in shape)
    if harness.runtime == "responses":
        assert uploaded["purpose"] == "vision"


# -- the bot token goes only to Slack ----------------------------------------------------------


async def _refused(h: Harness, listener: Listener, event: dict, name: str) -> None:
    answers = await h.wait_answers("C1", event["ts"], 2)
    [note] = [a for a in answers if name in a]
    assert "Slack's file servers" in note
    assert listener.requests == [], "a request (and the bot token) reached a host not Slack's"
    assert model_uploads(h.openai) == []
    assert h.openai.model.calls[-1].files == []


async def test_a_file_url_off_slack_gets_no_request_and_a_note(
    harness: Harness, listener: Listener
) -> None:
    pdf = share_pdf(harness.slack, name="bait.pdf")
    pdf = {**pdf, "url_private_download": f"{listener.url}/bait.pdf"}
    event = await mention_with_files(harness, "summarize this", [pdf])
    await _refused(harness, listener, event, "bait.pdf")
    assert any("Echo: summarize this" in a for a in harness.answers("C1", event["ts"]))
    assert harness.slack.downloads == []


async def test_a_file_url_from_files_info_off_slack_gets_no_request(
    harness: Harness, listener: Listener
) -> None:
    pdf = share_pdf(harness.slack, name="stub.pdf")
    harness.slack.files[pdf["id"]]["url_private_download"] = f"{listener.url}/stub.pdf"
    stub = {"id": pdf["id"], "mode": "hosted", "file_access": "check_file_info"}
    event = await mention_with_files(harness, "read this", [stub])
    await _refused(harness, listener, event, "stub.pdf")
    assert harness.slack.calls_to("files.info")


async def test_a_redirect_off_slack_is_not_followed(harness: Harness, listener: Listener) -> None:
    pdf = share_pdf(harness.slack, name="moved.pdf")
    harness.slack.redirect_file(pdf["id"], f"{listener.url}/moved.pdf")
    event = await mention_with_files(harness, "read this", [pdf])
    await _refused(harness, listener, event, "moved.pdf")
    assert harness.slack.downloads == [{"file_id": pdf["id"], "authorized": True}]


# -- slow file hosts -----------------------------------------------------------------------------


@pytest.fixture
async def quick_files(harness: Harness) -> Harness:
    """A bot whose files get a short deadline and a short stall timeout."""
    assert harness.bot is not None
    harness.bot.files.deadline = 1.5
    harness.bot.files.stall_timeout = 0.5
    return harness


async def test_files_that_trickle_share_one_deadline(quick_files: Harness) -> None:
    h = quick_files
    slow = [share_pdf(h.slack, name=f"slow{i}.pdf", content=PDF + b"%" * 3000) for i in range(3)]
    for pdf in slow:
        h.slack.trickle_file(pdf["id"], bytes_per_second=200)  # 15 s each, never silent
    event = await mention_with_files(h, "read these", slow)
    answers = await h.wait_answers("C1", event["ts"], 4)
    for i in range(3):
        assert any(f"couldn't download *slow{i}.pdf*" in a for a in answers), answers
    assert any("Echo: read these" in a for a in answers)
    assert model_uploads(h.openai) == []
    # The deadline is per message: the next message's files get their own.
    fine = share_pdf(h.slack, name="fine.pdf")
    await h.say("and this one", thread_ts=event["ts"], files=[fine])
    await h.wait_answers("C1", event["ts"], 5)
    assert [u["filename"] for u in model_uploads(h.openai)] == ["fine.pdf"]


async def test_a_silent_file_host_is_given_up_and_the_next_file_read(quick_files: Harness) -> None:
    h = quick_files
    assert h.bot is not None
    h.bot.files.deadline = 60.0
    silent = share_pdf(h.slack, name="silent.pdf")
    h.slack.trickle_file(silent["id"], bytes_per_second=0)
    fine = share_pdf(h.slack, name="fine.pdf", content=PDF + b"% another")
    event = await mention_with_files(h, "read both", [silent, fine])
    answers = await h.wait_answers("C1", event["ts"], 2)
    assert any("couldn't download *silent.pdf*" in a for a in answers), answers
    [uploaded] = model_uploads(h.openai)
    assert uploaded["filename"] == "fine.pdf"
    assert h.openai.model.calls[-1].files


async def test_a_slow_upload_to_the_model_counts_against_the_deadline(
    quick_files: Harness,
) -> None:
    h = quick_files
    h.openai.hang_next("/files", 3.0)
    event = await mention_with_files(h, "read this", [share_pdf(h.slack, name="late.pdf")])
    answers = await h.wait_answers("C1", event["ts"], 2)
    assert any("couldn't pass *late.pdf* to the model service" in a for a in answers), answers
    assert h.openai.model.calls[-1].files == []
