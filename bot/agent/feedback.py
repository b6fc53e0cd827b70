"""👍 / 👎 under every answer: the Block Kit that shows them and the parser for a click.

The buttons are Slack's own ``feedback_buttons`` element in a ``context_actions`` block
(built with slack_sdk's models, which check the Block Kit limits). Each button's ``value``
names the turn the answer belongs to (``up:123`` / ``down:123``), so a click needs no lookup
by message ts; the store still decides whether turn 123 exists and who may vote on it.

A click arrives as ``block_actions`` whose ``actions[0]`` is ``{type: "feedback_buttons",
action_id, block_id, value, text, action_ts}`` (bolt-js ``FeedbackButtonsAction``;
docs.slack.dev, feedback buttons element). Register the listener for ``FEEDBACK_ACTION_ID``
before any catch-all action listener.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from slack_sdk.models.blocks import (
    ContextActionsBlock,
    FeedbackButtonObject,
    FeedbackButtonsElement,
)

FEEDBACK_ACTION_ID = "turn_feedback"
BLOCK_ID_PREFIX = "feedback"  # block_id f"feedback:{turn_id}": unique per answer message

MAX_TURN_ID = 2**63 - 1  # turn ids are bigints
_VALUE = re.compile(r"(up|down):(0|[1-9][0-9]{0,18})")


class Vote(enum.StrEnum):
    UP = "up"
    DOWN = "down"


THANKS: dict[Vote, str] = {
    Vote.UP: "Thanks for the 👍, glad that helped!",
    Vote.DOWN: "Thanks for the 👎. Tell me what was unclear, or ask again: I'll try another way.",
}


class FeedbackPayloadError(ValueError):
    """A feedback click the bot did not produce (wrong action, malformed value, no user)."""


@dataclass(frozen=True, slots=True)
class FeedbackClick:
    """Who voted what on which turn, and where the answer message is."""

    turn_id: int
    vote: Vote
    user: str
    channel: str
    message_ts: str
    thread_ts: str | None


def feedback_value(turn_id: int, vote: Vote) -> str:
    return f"{vote.value}:{turn_id}"


def feedback_blocks(turn_id: int) -> list[dict[str, Any]]:
    """The ``context_actions`` block with the 👍 / 👎 buttons for one answer.

    Goes last in the answer's blocks (``chat.stopStream(blocks=…)`` or the final message).
    """
    if not 0 <= turn_id <= MAX_TURN_ID:
        raise ValueError(f"not a turn id: {turn_id}")
    block = ContextActionsBlock(
        block_id=f"{BLOCK_ID_PREFIX}:{turn_id}",
        elements=[
            FeedbackButtonsElement(
                action_id=FEEDBACK_ACTION_ID,
                positive_button=FeedbackButtonObject(
                    text="👍",
                    accessibility_label="This answer helped",
                    value=feedback_value(turn_id, Vote.UP),
                ),
                negative_button=FeedbackButtonObject(
                    text="👎",
                    accessibility_label="This answer did not help",
                    value=feedback_value(turn_id, Vote.DOWN),
                ),
            )
        ],
    )
    return [block.to_dict()]


def parse_feedback_value(value: object) -> tuple[int, Vote]:
    """``"up:123"`` -> ``(123, Vote.UP)``; ``FeedbackPayloadError`` for anything else."""
    match = _VALUE.fullmatch(value) if isinstance(value, str) else None
    if match is None or int(match.group(2)) > MAX_TURN_ID:
        shown = repr(value)[:60]
        raise FeedbackPayloadError(f"not a feedback value: {shown}")
    return int(match.group(2)), Vote(match.group(1))


def parse_feedback_click(body: Mapping[str, Any]) -> FeedbackClick:
    """A ``block_actions`` body of a click on our feedback buttons, validated.

    Raises ``FeedbackPayloadError`` when the action is not ours or a field is missing; the
    listener acks anyway and logs it (nothing to tell the clicker that would help them).
    """
    actions = body.get("actions")
    action = actions[0] if isinstance(actions, list) and actions else None
    if not isinstance(action, Mapping):
        raise FeedbackPayloadError("no action in the payload")
    if action.get("type") != "feedback_buttons" or action.get("action_id") != FEEDBACK_ACTION_ID:
        raise FeedbackPayloadError(
            f"not our feedback buttons: {action.get('type')!r} {action.get('action_id')!r}"[:120]
        )
    turn_id, vote = parse_feedback_value(action.get("value"))
    user = body.get("user")
    user_id = user.get("id") if isinstance(user, Mapping) else None
    container = body.get("container")
    container = container if isinstance(container, Mapping) else {}
    message = body.get("message")
    message = message if isinstance(message, Mapping) else {}
    channel = body.get("channel")
    channel_id = container.get("channel_id") or (
        channel.get("id") if isinstance(channel, Mapping) else None
    )
    message_ts = container.get("message_ts") or message.get("ts")
    thread_ts = container.get("thread_ts") or message.get("thread_ts")
    for name, field in (("user", user_id), ("channel", channel_id), ("message ts", message_ts)):
        if not isinstance(field, str) or not field:
            raise FeedbackPayloadError(f"feedback click without a {name}")
    assert isinstance(user_id, str) and isinstance(channel_id, str) and isinstance(message_ts, str)
    return FeedbackClick(
        turn_id=turn_id,
        vote=vote,
        user=user_id,
        channel=channel_id,
        message_ts=message_ts,
        thread_ts=thread_ts if isinstance(thread_ts, str) and thread_ts else None,
    )


def thanks_text(vote: Vote) -> str:
    """The ephemeral acknowledgement of a vote."""
    return THANKS[vote]
