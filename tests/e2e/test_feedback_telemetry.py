"""A vote on an answer in AgentOps, end to end: ``python -m bot`` with telemetry on, against
the fake AgentOps backend (see ``test_telemetry``)."""

from __future__ import annotations

from tests.e2e.test_telemetry import (  # noqa: F401 (fixtures)
    ROOT_NAME,
    Spawn,
    ask,
    fake_agentops,
    spawn,
)
from tests.fakes.agentops_server import FakeAgentOps, Span
from tests.fakes.openai_model import Reply
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_payloads import feedback_click
from tests.fakes.slack_server import feedback_buttons


def _feedback(spans: list[Span]) -> list[Span]:
    return [s for s in spans if s["name"] == "feedback"]


async def test_a_vote_after_the_turn_ended_is_a_span_linked_to_its_trace(
    spawn: Spawn,  # noqa: F811
    fake_openai: FakeOpenAI,
    fake_agentops: FakeAgentOps,  # noqa: F811
) -> None:
    bot = await spawn(agentops=fake_agentops)
    fake_openai.model.push(Reply(text="x = 1"))
    answered = await ask(bot, "Solve 3x + 11 = 14", expect="x = 1")
    [message] = await bot.slack.wait_for(
        lambda: [
            m for m in bot.slack.bot_messages("C1", answered.event["ts"]) if feedback_buttons(m)
        ]
    )
    turn_spans = await fake_agentops.wait_for_spans(
        lambda spans: any(s["name"] == ROOT_NAME for s in spans), timeout=10
    )
    [root] = [s for s in turn_spans if s["name"] == ROOT_NAME]

    result = await bot.sender.post_interaction(
        feedback_click(message=message, positive=False, user="U2")
    )
    assert result.status == 200
    spans = await fake_agentops.wait_for_spans(lambda spans: bool(_feedback(spans)), timeout=10)
    [vote] = _feedback(spans)
    assert vote["parent_span_id"] is None and vote["trace_id"] != root["trace_id"]
    assert vote["links"] == [{"trace_id": root["trace_id"], "span_id": root["span_id"]}]
    attrs = vote["attributes"]
    assert attrs["tutorbot.turn_id"] == root["attributes"]["tutorbot.turn_id"]
    assert attrs["tutorbot.feedback"] == "bad"
    assert attrs["tutorbot.user"] == "U2" and attrs["tutorbot.channel"] == "C1"
    await bot.stop()
