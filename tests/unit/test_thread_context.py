"""Table tests for reading a Slack thread's earlier messages (bot/thread_context.py)."""

from __future__ import annotations

import pytest

from bot.thread_context import MAX_CONTEXT_CHARS, earlier_context, with_context

BOT = {"bot_user_id": "UBOT", "bot_id": "BBOT"}


def msg(ts: str, text: str, user: str | None = "U1", **extra):
    m = {"ts": ts, "text": text, **extra}
    if user is not None:
        m["user"] = user
    return m


@pytest.mark.parametrize(
    ("messages", "before", "lines", "bot_was_here"),
    [
        ([], "5.0", [], False),
        (
            [msg("1.0", "parent question"), msg("2.0", "a reply", user="U2")],
            "3.0",
            ["<@U1>: parent question", "<@U2>: a reply"],
            False,
        ),
        # Only messages before the one being answered; order by ts, not list order.
        (
            [msg("4.0", "later"), msg("2.0", "second"), msg("1.0", "first")],
            "3.0",
            ["<@U1>: first", "<@U1>: second"],
            False,
        ),
        # The bot's own words count as context and reveal it was here; placeholders do not.
        (
            [
                msg("1.0", "q"),
                msg("2.0", "x = 1", user="UBOT", bot_id="BBOT"),
                msg("2.5", ":hourglass_flowing_sand: Thinking…", user="UBOT", bot_id="BBOT"),
            ],
            "3.0",
            ["<@U1>: q", "tutor (you): x = 1"],
            True,
        ),
        # Other bots and non-user subtypes are left out.
        (
            [
                msg("1.0", "deploy done", user=None, bot_id="B9", subtype="bot_message"),
                msg("1.5", "joined", subtype="channel_join"),
            ],
            "3.0",
            [],
            False,
        ),
        ([msg("1.0", "hey <@UBOT> help")], "3.0", ["<@U1>: hey @tutor help"], False),
        ([msg("1.0", "")], "3.0", [], False),
    ],
)
def test_earlier_context(messages, before, lines, bot_was_here):
    context = earlier_context(messages, before_ts=before, **BOT)
    assert context.bot_was_here is bot_was_here
    if not lines:
        assert context.text is None
        assert with_context(context, "now") == "now"
    else:
        assert context.text is not None
        assert context.text.splitlines()[1:] == lines
        assert with_context(context, "now").endswith("The message to answer now:\nnow")


def test_long_threads_keep_the_latest_messages_within_the_cap():
    messages = [msg(f"{i}.0", f"message {i} " + "x" * 500) for i in range(1, 60)]
    context = earlier_context(messages, before_ts="100.0", **BOT)
    assert context.text is not None
    assert len(context.text) <= MAX_CONTEXT_CHARS + 100
    assert "message 59" in context.text
    assert "message 1 " not in context.text
