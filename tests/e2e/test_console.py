"""``python -m bot console`` end to end: the real console in a pseudo-terminal, typed at as a
person would, against the fake OpenAI server; no Slack anywhere.

What the student reads is checked on the terminal; what the model received (the quiz
answers as the ``display_quiz`` output, the remembered conversation) on the fake.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.domain import ThreadKey
from store import open_store
from tests.e2e.console_process import ROOT, ConsoleProcess
from tests.fakes.openai_model import CodeCall, FunctionCall, ModelContext, Reply
from tests.fakes.openai_server import FakeOpenAI

LONG = " ".join(f"Step {i}: keep both sides balanced." for i in range(1, 61))
QUIZ = {
    "title": "Linear equations",
    "questions": [
        {
            "question_text": "Solve 2x = 6",
            "question_type": "MULTIPLE_CHOICE",
            "choices": ["x = 2", "x = 3", "x = 4"],
        },
        {"question_text": "Explain how you isolate x.", "question_type": "FREE_RESPONSE"},
    ],
}
PROMPT = "you> "


def quiz_call(quiz: dict) -> FunctionCall:
    return FunctionCall(name="display_quiz", arguments=json.dumps(quiz))


class Console:
    """Starts consoles on one database and model server; closes whatever is left."""

    def __init__(self, workdir: Path, openai: FakeOpenAI, runtime: str) -> None:
        self.workdir = workdir
        self.openai = openai
        self.runtime = runtime
        self.env = {
            "OPENAI_API_KEY": "sk-test",
            "OPENAI_BASE_URL": openai.base_url,
            "ASSISTANT_RUNTIME": runtime,
            "DATABASE_URL": f"sqlite:///{workdir / 'bot.db'}",
            "RUN_TIMEOUT_SECONDS": "20",
        }
        self.started: list[ConsoleProcess] = []

    async def start(self, *args: str) -> ConsoleProcess:
        console = await ConsoleProcess(self.workdir, self.env, *args).start()
        self.started.append(console)
        return console

    async def close(self) -> None:
        for console in self.started:
            await console.close()


# Most tests run for the runtimes a newcomer starts with (OpenAI, a local model server);
# those about the core's shared paths run for all three (the ``runtime`` fixture).
MAIN_RUNTIMES = pytest.mark.parametrize("runtime", ["responses", "chat"])


@pytest.fixture
async def consoles(tmp_path: Path, fake_openai: FakeOpenAI, runtime: str) -> AsyncIterator[Console]:
    console = Console(tmp_path, fake_openai, runtime)
    yield console
    await console.close()
    assert fake_openai.violations == []


def assert_clean(console: ConsoleProcess) -> None:
    """Nothing but the conversation: no traceback, no logged error or warning."""
    for noise in ("Traceback", "tutorbot: error", "tutorbot: warning"):
        assert noise not in console.text, console.text


async def test_a_question_is_answered_as_it_is_written(consoles: Console) -> None:
    consoles.openai.model.push(Reply(text=LONG, first_token_latency=0.2, write_time=3.0))
    console = await consoles.start()
    await console.expect(PROMPT)
    console.type("how do I solve 3x + 11 = 14?")
    await console.expect("Step 1:")
    assert "Step 60:" not in console.text, "the start of the answer shows while it is written"
    await console.expect(r"Step 60: keep both sides balanced\.\s+" + PROMPT)
    # All of it, once, in order.
    answer = re.search(r"Step 1:.*Step 60: keep both sides balanced\.", console.text, re.S)
    assert answer is not None and " ".join(answer[0].split()) == LONG
    console.type("exit")
    assert await console.wait() == 0
    assert_clean(console)


async def test_a_quiz_is_answered_by_number_and_by_text(consoles: Console) -> None:
    consoles.openai.model.push(
        Reply(function_calls=[quiz_call(QUIZ)]), Reply(text="Both right — well done!")
    )
    console = await consoles.start()
    await console.expect(PROMPT)
    console.type("quiz me on equations")
    await console.expect("Linear equations")
    await console.expect(r"1\. Solve 2x = 6\s+1\) x = 2\s+2\) x = 3\s+3\) x = 4")
    await console.expect(r"choice \(1-3\)> ")
    console.type("x")  # not a choice: asked again
    await console.expect(r"Type a number from 1 to 3.*\s+choice \(1-3\)> ")
    console.type(" 2 ")
    await console.expect("✓ x = 3")
    await console.expect(r"2\. Explain how you isolate x\.\s+answer> ")
    console.type("Divide both sides by 2.")
    await console.expect("Submitted")
    await console.expect(r"Both right — well done!\s+" + PROMPT)
    [output] = consoles.openai.tool_outputs()
    assert json.loads(output["output"]) == ["x = 3", "Divide both sides by 2."]
    console.ctrl_d()
    assert await console.wait() == 0
    assert_clean(console)


@MAIN_RUNTIMES
async def test_a_message_instead_of_an_answer_skips_the_quiz(consoles: Console) -> None:
    consoles.openai.model.push(
        Reply(function_calls=[quiz_call(QUIZ)]), Reply(text="Fractions are parts of a whole.")
    )
    console = await consoles.start()
    await console.expect(PROMPT)
    console.type("quiz me")
    await console.expect(r"choice \(1-3\)> ")
    console.type("actually, explain fractions first")
    await console.expect("Skipped")
    await console.expect(r"Fractions are parts of a whole\.\s+" + PROMPT)
    [output] = consoles.openai.tool_outputs()
    assert json.loads(output["output"])["status"] == "skipped"
    assert consoles.openai.model.calls[-1].last_user_text == "actually, explain fractions first"
    console.type("exit")
    assert await console.wait() == 0
    assert_clean(console)


@MAIN_RUNTIMES
async def test_a_quiz_left_open_is_asked_again_next_time(consoles: Console) -> None:
    consoles.openai.model.push(Reply(function_calls=[quiz_call(QUIZ)]), Reply(text="Well done!"))
    console = await consoles.start()
    await console.expect(PROMPT)
    console.type("quiz me")
    await console.expect(r"choice \(1-3\)> ")
    console.ctrl_c()
    assert await console.wait() == 0
    assert_clean(console)

    again = await consoles.start()
    await again.expect(r"Linear equations.*\s+.*\s+1\. Solve 2x = 6")
    await again.expect(r"choice \(1-3\)> ")
    again.type("3")
    await again.expect("answer> ")
    again.type("I divide by 2")
    await again.expect(r"Well done!\s+" + PROMPT)
    [output] = consoles.openai.tool_outputs()
    assert json.loads(output["output"]) == ["x = 4", "I divide by 2"]
    again.type("exit")
    assert await again.wait() == 0
    assert_clean(again)


@pytest.mark.parametrize("runtime", ["responses"])  # the console's own waiting, any runtime
async def test_a_conversation_another_process_works_on_is_answered_when_it_lets_go(
    consoles: Console,
) -> None:
    model = consoles.openai.model
    model.push(Reply(text="First answer."), Reply(text="Second answer."))
    console = await consoles.start()
    await console.expect(PROMPT)
    console.type("one")
    await console.expect(r"First answer\.\s+" + PROMPT)
    store = open_store(consoles.env["DATABASE_URL"])
    await store.open()
    try:
        thread_ts = await store.get_setting("console_thread")
        assert thread_ts is not None
        thread = await store.get_thread(ThreadKey("console", "console", thread_ts))
        assert thread is not None
        await store.heartbeat("another-process", 60)  # a live process holds the thread…
        assert await store.claim_thread(thread.id, "another-process") is not None
        console.type("two")
        await console.expect("another tutorbot process is working on this conversation")
        assert len(model.calls) == 1
        await store.retire_worker("another-process")  # …and lets go
    finally:
        await store.close()
    await console.expect(r"Second answer\.\s+" + PROMPT)
    console.type("exit")
    assert await console.wait() == 0
    assert_clean(console)


def user_texts(ctx: ModelContext) -> list[str]:
    return [h["text"] for h in ctx.history if h.get("role") == "user"]


@MAIN_RUNTIMES
async def test_the_conversation_is_remembered_and_new_starts_another(consoles: Console) -> None:
    model = consoles.openai.model
    model.push(Reply(text="Nice to meet you, Ada."), Reply(text="You are Ada."))
    first = await consoles.start()
    await first.expect(PROMPT)
    first.type("my name is Ada")
    await first.expect(r"Nice to meet you, Ada\.\s+" + PROMPT)
    first.ctrl_d()
    assert await first.wait() == 0

    again = await consoles.start()
    await again.expect("Continuing the conversation")
    await again.expect(PROMPT)
    again.type("what is my name?")
    await again.expect(r"You are Ada\.\s+" + PROMPT)
    again.type("exit")
    assert await again.wait() == 0
    met, asked = model.calls
    assert asked.thread_id == met.thread_id
    assert user_texts(asked) == ["my name is Ada", "what is my name?"]

    model.push(Reply(text="Hello! What shall we study?"))
    fresh = await consoles.start("--new")
    await fresh.expect(PROMPT)
    assert "Continuing" not in fresh.text
    fresh.type("hello")
    await fresh.expect(r"What shall we study\?\s+" + PROMPT)
    fresh.type("exit")
    assert await fresh.wait() == 0
    started = model.calls[-1]
    assert started.thread_id != met.thread_id
    assert user_texts(started) == ["hello"]
    for console in (first, again, fresh):
        assert_clean(console)


@MAIN_RUNTIMES
async def test_ctrl_c_leaves_cleanly_and_the_answer_is_finished_next_time(
    consoles: Console,
) -> None:
    # The chat runtime asks the server again after a restart; the others resume the run.
    consoles.openai.model.default = lambda ctx: Reply(
        text=LONG, first_token_latency=0.2, write_time=3.0
    )
    console = await consoles.start()
    await console.expect(PROMPT)
    console.type("explain balancing")
    await console.expect("Step 2:")
    console.ctrl_c()  # mid-answer
    assert await console.wait() == 0
    assert_clean(console)
    assert "Step 60:" not in console.text

    resumed = await consoles.start()
    await resumed.expect(r"Step 60: keep both sides balanced\.\s+" + PROMPT)
    assert resumed.text.count("Step 1:") == 1
    resumed.ctrl_c()  # at the prompt
    assert await resumed.wait() == 0
    assert_clean(resumed)


# Model servers behind the chat runtime have no code interpreter.
@pytest.mark.parametrize("runtime", ["responses", "assistants"])
async def test_code_steps_and_files_read_as_in_slack(consoles: Console) -> None:
    consoles.openai.model.push(
        Reply(
            text="x = 3, as the code shows.",
            code=[
                CodeCall(
                    code="print(6 / 2)",
                    logs="3.0",
                    image_png=b"\x89PNG\r\n\x1a\nplot",
                    run_time=1.0,
                )
            ],
        )
    )
    console = await consoles.start()
    await console.expect(PROMPT)
    console.type("solve 2x = 6 with code")
    # The step shows while the code runs, its end as the timeline reads in Slack.
    await console.expect(r"· (Writing|Running) code…")
    await console.expect(r"Show work.*\s+.*\s+```python\s+print\(6 / 2\)\s+```")
    await console.expect(PROMPT)
    assert "✓ Ran code" in console.text
    assert "x = 3, as the code shows." in console.text
    saved = re.search(r"saved to (tutorbot-files/\S+\.png)", console.text)
    assert saved is not None
    assert (consoles.workdir / saved[1]).read_bytes() == b"\x89PNG\r\n\x1a\nplot"
    console.type("exit")
    assert await console.wait() == 0
    assert_clean(console)


def test_without_a_model_key_it_says_what_to_set(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "console"],
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "PYTHONPATH": str(ROOT),
            "OPENAI_API_KEY": "",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    [line] = proc.stderr.splitlines()
    assert "OPENAI_API_KEY" in line and "OPENAI_BASE_URL" in line and "any text" in line
    assert "SLACK" not in line
