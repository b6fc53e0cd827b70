"""Several bot processes on one PostgreSQL database, as deployed (issue 10): real
``python -m bot`` processes, killed, stopped, stalled and cut off from the database.

What must hold: a thread whose process died is taken over and its answer finished exactly
once; turns run in the students' order whichever process received them; a process that
lost its lease writes nothing more; a reply posted but not recorded is not posted again;
deliveries are acknowledged only once recorded (5xx while the database is down).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.core.workers import ALIVE
from bot.domain import TurnStatus
from store import open_store
from tests.e2e.bot_process import BotProcess
from tests.e2e.tcp_proxy import TcpProxy
from tests.fakes.openai_model import FunctionCall, Reply
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_payloads import app_mention, block_actions, message, next_ts
from tests.fakes.slack_server import FakeSlack, message_text

IN_FLIGHT = [TurnStatus.RUNNING, TurnStatus.POSTING]
LONG = " ".join(f"Step {i}: keep both sides balanced." for i in range(1, 121))


class Deployment:
    """Bot processes sharing one database (through a TCP proxy the test can cut)."""

    def __init__(
        self, slack: FakeSlack, openai: FakeOpenAI, tmp_path: Path, database_url: str
    ) -> None:
        self.slack = slack
        self.openai = openai
        self.tmp_path = tmp_path
        self.database_url = database_url
        self.bots: list[BotProcess] = []

    async def start_bot(self, *, runtime: str = "responses") -> BotProcess:
        workdir = self.tmp_path / f"bot{len(self.bots)}"
        workdir.mkdir()
        bot = BotProcess(
            workdir,
            self.slack,
            {
                "OPENAI_API_KEY": "sk-test",
                "OPENAI_BASE_URL": self.openai.base_url,
                "DATABASE_URL": self.database_url,
                "RUN_TIMEOUT_SECONDS": "60",
                "ASSISTANT_RUNTIME": runtime,
            },
        )
        self.bots.append(bot)
        return await bot.start()

    def thread_text(self, channel: str, thread_ts: str) -> str:
        """What the bot's replies in a thread say, joined as they are."""
        return "".join(
            message_text(m)
            for m in self.slack.bot_messages(channel, thread_ts)
            if m["ts"] != thread_ts
        )

    def streaming(self, channel: str, thread_ts: str) -> bool:
        return any(
            self.slack.is_streaming(channel, m["ts"])
            for m in self.slack.bot_messages(channel, thread_ts)
        )

    def logs(self) -> str:
        return "\n".join(f"--- bot {i}\n{b.log}" for i, b in enumerate(self.bots))


@pytest.fixture
async def proxy() -> AsyncIterator[TcpProxy]:
    server = TcpProxy()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def deployment(
    fake_slack: FakeSlack,
    fake_openai: FakeOpenAI,
    tmp_path: Path,
    pg_schema: str,
    proxy: TcpProxy,
) -> AsyncIterator[Deployment]:
    url = pg_schema.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    assert url != pg_schema, "the test database must be reached through the proxy"
    deployed = Deployment(fake_slack, fake_openai, tmp_path, url)
    yield deployed
    proxy.restore()
    for bot in deployed.bots:
        await bot.kill()


async def test_a_killed_process_s_answer_is_finished_once_by_another(
    deployment: Deployment,
) -> None:
    d = deployment
    first, second = await d.start_bot(), await d.start_bot()
    d.openai.model.push(Reply(text=LONG, first_token_latency=0.2, write_time=5.0))
    event, _ = await first.mention("explain it at length")
    await d.slack.wait_for(lambda: "Step 10:" in d.thread_text("C1", event["ts"]), timeout=10)
    await first.kill()
    killed, shown = time.monotonic(), len(d.thread_text("C1", event["ts"]))
    await d.slack.wait_for(lambda: len(d.thread_text("C1", event["ts"])) != shown, timeout=30)
    resumed = time.monotonic() - killed
    await d.slack.wait_for(
        lambda: (
            "Step 120:" in d.thread_text("C1", event["ts"]) and not d.streaming("C1", event["ts"])
        ),
        timeout=30,
    )
    await second.wait_idle(30)
    assert d.thread_text("C1", event["ts"]) == LONG, d.logs()
    assert "resuming turn" in second.log, d.logs()
    print(f"taken over and resumed {resumed:.1f} s after the kill")


async def test_turns_run_in_the_students_order_across_processes(deployment: Deployment) -> None:
    d = deployment
    first, second = await d.start_bot(), await d.start_bot()
    parent, _ = await first.mention("q0")
    await d.slack.wait_for(lambda: d.thread_text("C1", parent["ts"]), timeout=10)
    await first.wait_idle()
    stamps = [next_ts() for _ in range(4)]
    events = [
        message(text=f"q{i + 1}", channel="C1", thread_ts=parent["ts"], ts=ts)
        for i, ts in enumerate(stamps)
    ]
    # Delivered out of order, alternately to the two processes, ~50 ms apart.
    for bot, event in (
        (first, events[1]),
        (second, events[0]),
        (first, events[3]),
        (second, events[2]),
    ):
        result = await bot.sender.post_event(event)
        assert result.status == 200
        await asyncio.sleep(0.05)
    await d.slack.wait_for(lambda: len(d.openai.user_messages()) == 5, timeout=20)
    await asyncio.gather(first.wait_idle(20), second.wait_idle(20))
    assert d.openai.user_messages() == ["q0", "q1", "q2", "q3", "q4"]
    assert max(d.openai.max_concurrent.values()) == 1


async def test_a_stalled_process_that_lost_its_lease_writes_nothing_more(
    deployment: Deployment,
) -> None:
    d = deployment
    first, second = await d.start_bot(), await d.start_bot()
    d.openai.model.push(Reply(text=LONG, first_token_latency=0.2, write_time=5.0))
    event, _ = await first.mention("explain it at length")
    await d.slack.wait_for(lambda: "Step 10:" in d.thread_text("C1", event["ts"]), timeout=10)
    assert first.process is not None
    first.process.send_signal(signal.SIGSTOP)  # the process stalls (a long GC pause, say)
    try:
        await d.slack.wait_for(
            lambda: (
                "Step 120:" in d.thread_text("C1", event["ts"])
                and not d.streaming("C1", event["ts"])
            ),
            timeout=30,
        )
    finally:
        first.process.send_signal(signal.SIGCONT)
    await asyncio.sleep(3.0)  # the stalled process wakes up and must not write any more
    await asyncio.gather(first.wait_idle(20), second.wait_idle(20))
    assert d.thread_text("C1", event["ts"]) == LONG, d.logs()
    assert "resuming turn" in second.log, d.logs()
    assert "took the thread over" in first.log, d.logs()


async def _killed_while_posting(d: Deployment, reply: Reply) -> tuple[dict[str, Any], BotProcess]:
    """Two processes; the first posts ``reply``'s message (or its failure notice) but dies
    before recording it: Slack takes the post and answers slowly. Returns the student's
    event and the process that takes the turn over."""
    first, second = await d.start_bot(), await d.start_bot()
    d.openai.model.push(reply, Reply(text="must not be asked"))
    d.slack.delay_next("chat.postMessage", 2.0)
    event, _ = await first.mention("solve 3x + 11 = 14")
    await d.slack.wait_for(lambda: d.slack.calls_to("chat.postMessage"), timeout=20)
    await first.kill()
    await d.slack.wait_for(lambda: d.thread_text("C1", event["ts"]), timeout=10)
    # The other process takes the turn over and finds the message by its metadata.
    await d.slack.wait_for(lambda: "posted before a restart" in second.log, timeout=20)
    await second.wait_idle(20)
    return event, second


async def test_a_reply_posted_but_not_recorded_is_not_posted_again(
    deployment: Deployment,
) -> None:
    d = deployment
    event, second = await _killed_while_posting(d, Reply(text="x = 1, because 3x = 3."))
    replies = [m for m in d.slack.bot_messages("C1", event["ts"]) if m["ts"] != event["ts"]]
    assert [message_text(m) for m in replies] == ["x = 1, because 3x = 3."], d.logs()
    assert "turn's answer" in second.log, d.logs()


async def test_a_failure_notice_posted_but_not_recorded_is_not_lost_nor_repeated(
    deployment: Deployment,
) -> None:
    """The process dies after telling the student a turn failed and before recording it:
    the process that takes the turn over finds the notice and records the failure; the
    student reads one notice, and the model is not asked again."""
    d = deployment
    event, second = await _killed_while_posting(d, Reply(fail="server_error"))
    replies = [m for m in d.slack.bot_messages("C1", event["ts"]) if m["ts"] != event["ts"]]
    assert len(replies) == 1 and "send your message again" in message_text(replies[0]), d.logs()
    assert "failure notice was posted before a restart" in second.log, d.logs()
    assert d.openai.model.pending == 1, "the model was not asked again"


async def test_a_turn_that_fails_while_the_database_is_down_still_tells_the_student(
    deployment: Deployment, proxy: TcpProxy, pg_schema: str
) -> None:
    """The model fails a turn while the database is unreachable: this process's hold on
    the thread is in doubt, so the notice waits; once the database is back (the hold is
    confirmed) the student is told, once, and the failure recorded. It was once recorded
    without the notice ever being posted."""
    d = deployment
    bot = await d.start_bot()
    hold = asyncio.Event()
    d.openai.model.push(Reply(fail="server_error", hold=hold))
    event, _ = await bot.mention("solve 3x + 11 = 14")
    store = open_store(pg_schema)  # the database itself, not through the proxy
    await store.open()
    try:

        async def run_recorded() -> bool:
            return any(t.remote_run_id for t in await store.list_turns(statuses=IN_FLIGHT))

        await d.slack.wait_for(run_recorded, timeout=10)
    finally:
        await store.close()
    proxy.cut()
    await d.slack.wait_for(lambda: "the database is unreachable" in bot.log, timeout=10)
    await asyncio.sleep(ALIVE)  # past its heartbeat's life: the hold is in doubt
    hold.set()  # the model fails the turn now
    await d.slack.wait_for(lambda: "failed while its lease is in doubt" in bot.log, timeout=10)
    assert not d.thread_text("C1", event["ts"]), "nothing said while the hold is in doubt"
    proxy.restore()
    await d.slack.wait_for(lambda: d.thread_text("C1", event["ts"]), timeout=20)
    await bot.wait_idle(30)
    replies = [m for m in d.slack.bot_messages("C1", event["ts"]) if m["ts"] != event["ts"]]
    assert len(replies) == 1 and "again" in message_text(replies[0]), bot.log
    assert "Traceback" not in bot.log


async def test_shutdown_while_an_answer_is_posted_is_not_answered_twice(
    deployment: Deployment,
) -> None:
    d = deployment
    first, second = await d.start_bot(), await d.start_bot()
    d.openai.model.push(Reply(text="x = 1"))
    d.slack.delay_next("chat.postMessage", 2.0)
    event, _ = await first.mention("solve it")
    await d.slack.wait_for(lambda: d.slack.calls_to("chat.postMessage"), timeout=10)
    await first.stop()  # SIGTERM while the answer is being posted (a rolling deploy)
    await asyncio.sleep(4.0)
    await second.wait_idle(20)
    replies = [m for m in d.slack.bot_messages("C1", event["ts"]) if m["ts"] != event["ts"]]
    assert [message_text(m) for m in replies] == ["x = 1"], d.logs()


async def _health(bot: BotProcess) -> int:
    async with aiohttp.ClientSession() as session, session.get(f"{bot.url}/healthz") as resp:
        return resp.status


async def test_deliveries_are_refused_while_the_database_is_down_and_answered_after(
    deployment: Deployment, proxy: TcpProxy
) -> None:
    d = deployment
    bot = await d.start_bot()
    d.openai.model.push(Reply(text="Back again."))
    proxy.cut()
    event = app_mention(text=f"<@{d.slack.bot_user_id}> are you there?", ts=next_ts())
    refused = await bot.sender.post_event(event, event_id="EvDOWN1")
    assert refused.status >= 500  # not recorded: Slack will deliver it again
    assert await _health(bot) == 503
    proxy.restore()
    deadline = time.monotonic() + 15
    while await _health(bot) != 200:
        assert time.monotonic() < deadline, bot.log
        await asyncio.sleep(0.2)
    redelivered = await bot.sender.post_event(
        event, event_id="EvDOWN1", retry_num=1, retry_reason="http_error"
    )
    assert redelivered.status == 200
    await d.slack.wait_for(lambda: d.thread_text("C1", event["ts"]), timeout=15)
    await bot.wait_idle(20)
    assert d.thread_text("C1", event["ts"]) == "Back again."
    assert bot.log.count("the database is unreachable") == 1, bot.log
    assert bot.log.count("the database is back") == 1, bot.log


async def test_an_answer_in_flight_finishes_once_the_database_is_back(
    deployment: Deployment, proxy: TcpProxy
) -> None:
    d = deployment
    bot = await d.start_bot()
    d.openai.model.push(Reply(text=LONG, first_token_latency=0.2, write_time=4.0))
    event, _ = await bot.mention("explain it at length")
    await d.slack.wait_for(lambda: "Step 5:" in d.thread_text("C1", event["ts"]), timeout=10)
    proxy.cut()
    await asyncio.sleep(5.0)  # the database restarts
    proxy.restore()
    await d.slack.wait_for(
        lambda: (
            "Step 120:" in d.thread_text("C1", event["ts"]) and not d.streaming("C1", event["ts"])
        ),
        timeout=40,
    )
    await bot.wait_idle(30)
    assert d.thread_text("C1", event["ts"]) == LONG, bot.log


QUIZ = {
    "title": "Warm-up",
    "questions": [
        {"question_text": "2 + 2?", "question_type": "MULTIPLE_CHOICE", "choices": ["3", "4"]}
    ],
}


def _quiz_messages(d: Deployment, thread_ts: str) -> list[dict[str, Any]]:
    return [
        m
        for m in d.slack.bot_messages("C1", thread_ts)
        if any(b.get("type") == "header" for b in m.get("blocks") or [])
    ]


async def _click(bot: BotProcess, d: Deployment, quiz: dict[str, Any], starts: str) -> None:
    current = d.slack.find_message("C1", quiz["ts"]) or quiz
    [element] = [
        el
        for block in current["blocks"]
        if block["type"] == "actions"
        for el in block["elements"]
        if el["action_id"].startswith(starts) and (starts != "quiz_choice" or "4" in json.dumps(el))
    ]
    payload = block_actions(
        action_id=element["action_id"],
        value=element["value"],
        message=current,
        trigger_id=d.slack.new_trigger_id("U1"),
    )
    result = await bot.sender.post_interaction(payload)
    assert result.status == 200, result.body


async def test_a_quiz_posted_but_not_recorded_is_not_posted_again(
    deployment: Deployment,
) -> None:
    d = deployment
    first, second = await d.start_bot(), await d.start_bot()
    d.openai.model.push(
        Reply(function_calls=[FunctionCall(name="display_quiz", arguments=json.dumps(QUIZ))]),
        Reply(text="Right, 4."),
    )
    # Slack takes the quiz but answers slowly: the process dies before recording it.
    d.slack.delay_next("chat.postMessage", 2.0)
    event, _ = await first.mention("quiz me")
    await d.slack.wait_for(lambda: d.slack.calls_to("chat.postMessage"), timeout=10)
    assert "Warm-up" in json.dumps(d.slack.calls_to("chat.postMessage")[0].args)
    await first.kill()
    await d.slack.wait_for(lambda: _quiz_messages(d, event["ts"]), timeout=10)
    # The other process takes the turn over and finds the quiz by its metadata.
    await d.slack.wait_for(lambda: "was posted before a restart" in second.log, timeout=20)
    quizzes = _quiz_messages(d, event["ts"])
    assert len(quizzes) == 1, d.logs()
    [quiz] = quizzes
    # …and the quiz the student sees is the one that works.
    await _click(second, d, quiz, "quiz_choice")
    await d.slack.wait_for(
        lambda: "✓ 4" in json.dumps(d.slack.find_message("C1", quiz["ts"]), ensure_ascii=False)
    )
    await _click(second, d, quiz, "quiz_submit")
    await d.slack.wait_for(lambda: "Right, 4." in d.thread_text("C1", event["ts"]), timeout=15)
    await second.wait_idle(20)
    assert [json.loads(o["output"]) for o in d.openai.tool_outputs()] == [["4"]]


@pytest.mark.parametrize("runtime", ["responses", "assistants"])
async def test_a_kill_while_a_first_answer_starts_gives_the_model_the_question_once(
    deployment: Deployment, runtime: str
) -> None:
    """The process dies after creating the model-side thread, while its run create is in
    transit (the service takes it after the kill). The process that takes over finds that
    run on the recorded thread and answers from it: the model service is asked once, in
    one thread, not a second time in a new one."""
    d = deployment
    first = await d.start_bot(runtime=runtime)
    run_path = "/responses" if runtime == "responses" else "/runs"
    d.openai.hang_next(run_path, 1.5)
    d.openai.model.push(Reply(text="It is four."))
    event, _ = await first.mention("what is 2 + 2?")
    await d.slack.wait_for(
        lambda: any(run_path in r.path and r.method == "POST" for r in d.openai.requests),
        timeout=10,
    )
    await first.kill()
    second = await d.start_bot(runtime=runtime)
    await d.slack.wait_for(lambda: "It is four." in d.thread_text("C1", event["ts"]), timeout=30)
    await second.wait_idle(30)
    assert d.openai.user_messages() == ["what is 2 + 2?"], d.logs()
    assert d.thread_text("C1", event["ts"]).count("It is four.") == 1


@pytest.mark.parametrize("runtime", ["responses", "assistants"])
async def test_a_kill_while_quiz_answers_are_submitted_sends_them_once(
    deployment: Deployment, runtime: str
) -> None:
    """The process dies while the quiz answers' submission is in transit (the service
    takes it after the kill): the process that takes over finds the run that took them and
    answers from it. The model gets the answers once, not again (nor as a message)."""
    d = deployment
    first = await d.start_bot(runtime=runtime)
    d.openai.model.push(
        Reply(function_calls=[FunctionCall(name="display_quiz", arguments=json.dumps(QUIZ))]),
        Reply(text="Right, 4."),
    )
    event, _ = await first.mention("quiz me")
    [quiz] = await d.slack.wait_for(lambda: _quiz_messages(d, event["ts"]), timeout=10)
    await _click(first, d, quiz, "quiz_choice")
    await d.slack.wait_for(
        lambda: "✓ 4" in json.dumps(d.slack.find_message("C1", quiz["ts"]), ensure_ascii=False)
    )
    submit_path = "/responses" if runtime == "responses" else "/submit_tool_outputs"
    sent_before = sum(submit_path in r.path and r.method == "POST" for r in d.openai.requests)
    d.openai.hang_next(submit_path, 1.5)
    await _click(first, d, quiz, "quiz_submit")
    await d.slack.wait_for(
        lambda: (
            sum(submit_path in r.path and r.method == "POST" for r in d.openai.requests)
            > sent_before
        ),
        timeout=10,
    )
    await first.kill()
    second = await d.start_bot(runtime=runtime)
    await d.slack.wait_for(lambda: "Right, 4." in d.thread_text("C1", event["ts"]), timeout=30)
    await second.wait_idle(30)
    assert [json.loads(o["output"]) for o in d.openai.tool_outputs()] == [["4"]], d.logs()
    assert d.openai.user_messages() == ["quiz me"], "the answers were not resent as a message"
    assert d.thread_text("C1", event["ts"]).count("Right, 4.") == 1
