"""Feedback buttons: the block, the value encoding and the click parser (bot/agent/feedback)."""

from __future__ import annotations

from typing import Any

import pytest

from bot.agent.feedback import (
    FEEDBACK_ACTION_ID,
    FeedbackClick,
    FeedbackPayloadError,
    Vote,
    feedback_blocks,
    feedback_value,
    parse_feedback_click,
    parse_feedback_value,
    thanks_text,
)
from tests.fakes import slack_payloads as p
from tests.fakes.slack_blocks import message_block_errors


def test_feedback_block_shape() -> None:
    (block,) = feedback_blocks(123)
    assert block["type"] == "context_actions" and block["block_id"] == "feedback:123"
    (element,) = block["elements"]
    assert element["type"] == "feedback_buttons" and element["action_id"] == FEEDBACK_ACTION_ID
    assert element["positive_button"]["value"] == "up:123"
    assert element["negative_button"]["value"] == "down:123"
    assert element["positive_button"]["text"]["text"] == "👍"
    assert element["negative_button"]["text"] == {"type": "plain_text", "text": "👎", "emoji": True}
    assert message_block_errors([{"type": "markdown", "text": "answer"}, block]) == []
    with pytest.raises(ValueError):
        feedback_blocks(-1)
    with pytest.raises(ValueError):
        feedback_blocks(2**63)


@pytest.mark.parametrize("turn_id", [0, 1, 123, 2**63 - 1])
@pytest.mark.parametrize("vote", list(Vote))
def test_value_round_trip(turn_id: int, vote: Vote) -> None:
    assert parse_feedback_value(feedback_value(turn_id, vote)) == (turn_id, vote)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "up",
        "up:",
        "up:-1",
        "up:01",
        "UP:1",
        "sideways:1",
        "up:1:2",
        " up:1",
        "up:1" * 3,
        None,
        1,
        ["up:1"],
        "up:" + "9" * 19,
        "up:" + str(2**63),
        "up:" + "1" * 20,
    ],
)
def test_bad_values(value: Any) -> None:
    with pytest.raises(FeedbackPayloadError):
        parse_feedback_value(value)


def _answer(thread_ts: str | None = "1.000001") -> dict[str, Any]:
    return {
        "type": "message",
        "ts": "1.000002",
        "thread_ts": thread_ts,
        "text": "4",
        "user": "UBOT",
        "bot_id": "BBOT",
        "blocks": feedback_blocks(42),
    }


def _click(**changes: Any) -> dict[str, Any]:
    body = p.feedback_click(message=_answer(), positive=False, user="U7", channel="DU7")
    for path, value in changes.items():
        target = body
        *parents, leaf = path.split("__")
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if value is ...:
            del target[leaf]
        else:
            target[leaf] = value
    return body


def test_click_is_parsed() -> None:
    assert parse_feedback_click(_click()) == FeedbackClick(
        turn_id=42,
        vote=Vote.DOWN,
        user="U7",
        channel="DU7",
        message_ts="1.000002",
        thread_ts="1.000001",
    )
    up = p.feedback_click(message=_answer(thread_ts=None), positive=True, user="U8", channel="C1")
    assert parse_feedback_click(up) == FeedbackClick(42, Vote.UP, "U8", "C1", "1.000002", None)


@pytest.mark.parametrize(
    "changes",
    [
        {"actions": []},
        {"actions": ...},
        {"actions": ["x"]},
        {"actions__0__type": "button"},
        {"actions__0__action_id": "quiz_submit"},
        {"actions__0__value": "up:x"},
        {"actions__0__value": ...},
        {"user": ...},
        {"user": "U7"},
        {"user__id": ""},
        {"container": {}, "channel": None},
        {"container": {}, "message": {}},
    ],
)
def test_malformed_clicks(changes: dict[str, Any]) -> None:
    with pytest.raises(FeedbackPayloadError):
        parse_feedback_click(_click(**changes))


def test_click_falls_back_to_channel_and_message() -> None:
    parsed = parse_feedback_click(_click(container={"type": "message"}))
    assert (parsed.channel, parsed.message_ts, parsed.thread_ts) == ("DU7", "1.000002", "1.000001")


def test_thanks() -> None:
    assert "👍" in thanks_text(Vote.UP) and "👎" in thanks_text(Vote.DOWN)
