"""Table tests for the Slack payload parsers in handlers/parsing.py."""

from __future__ import annotations

import pytest

from bot.slack_text import storable_text
from handlers.parsing import parse_command_text, parse_message_event, strip_mention

BOT = "UBOT"


def ev(**fields):
    base = {
        "type": "message",
        "user": "U1",
        "channel": "C1",
        "ts": "1.1",
        "text": "hi",
        "channel_type": "channel",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            ev(type="app_mention", text="<@UBOT> what is 2+2?"),
            {"text": "what is 2+2?", "addressed": True, "thread_ts": None},
        ),
        (ev(type="app_mention", text="<@UBOT>"), {"text": "", "addressed": True}),
        (ev(text="follow-up", thread_ts="1.0"), {"addressed": False, "thread_ts": "1.0"}),
        (ev(text="top-level chatter"), {"addressed": False, "thread_ts": None}),
        (ev(text="hey <@UBOT> help", thread_ts="1.0"), {"addressed": True, "text": "hey help"}),
        (ev(channel="D1", channel_type="im", text="dm"), {"addressed": True, "text": "dm"}),
        (
            ev(subtype="file_share", files=[{"id": "F1", "name": "a.pdf", "secret": "x"}]),
            {"files": ({"id": "F1", "name": "a.pdf"},)},
        ),
        (ev(subtype="thread_broadcast", thread_ts="1.0"), {"thread_ts": "1.0"}),
        # Characters no database or encoder takes are cleaned here, once, never dropped.
        (ev(type="app_mention", text="<@UBOT> x\ud800y"), {"text": "x\ufffdy"}),
        (ev(text="a\x00b", channel="D1", channel_type="im"), {"text": "ab"}),
        (
            ev(subtype="file_share", files=[{"id": "F1", "name": "a\udfff.pdf", "title": "\x00t"}]),
            {"files": ({"id": "F1", "name": "a\ufffd.pdf", "title": "t"},)},
        ),
    ],
)
def test_user_messages_are_parsed(event, expected):
    message = parse_message_event(event, team="T1", bot_user_id=BOT)
    assert message is not None
    for field, value in expected.items():
        assert getattr(message, field) == value
    assert message.team == "T1"


@pytest.mark.parametrize(
    "event",
    [
        ev(subtype="message_changed"),
        ev(subtype="message_deleted"),
        ev(subtype="channel_join"),
        ev(subtype="bot_message", bot_id="B2"),
        ev(bot_id="B2"),  # another app posting as a user-less message
        ev(user=BOT),  # our own message
        ev(user=None),
        ev(channel=None),
        ev(ts=None),
        ev(type="reaction_added"),
        {"type": "message", "user": ["not", "a", "string"], "channel": "C1", "ts": "1"},
    ],
)
def test_everything_else_is_ignored(event):
    assert parse_message_event(event, team="T1", bot_user_id=BOT) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<@UBOT> hi", "hi"),
        ("<@UBOT|tutorbot>  solve   x", "solve x"),
        ("ask <@UOTHER> and <@UBOT>", "ask <@UOTHER> and"),
        ("", ""),
    ],
)
def test_strip_mention(text, expected):
    assert strip_mention(text, BOT) == expected


@pytest.mark.parametrize(
    ("text", "action", "argument"),
    [
        (None, "help", ""),
        ("", "help", ""),
        ("  help ", "help", ""),
        ("HELP", "help", ""),
        ("quiz fractions", "quiz", "fractions"),
        ("Quiz   long division ", "quiz", "long division"),
        ("quiz", "quiz", ""),
        ("what is 2+2", "ask", "what is 2+2"),
        ("quizzes are fun?", "ask", "quizzes are fun?"),
        ("what is \ud8002+2\x00", "ask", "what is \ufffd2+2"),
        ("quiz \x00frac\udc00tions", "quiz", "frac\ufffdtions"),
        ("stats", "stats", ""),
        (" Stats ", "stats", ""),
        ("stats for this week?", "ask", "stats for this week?"),
        ("statistics homework", "ask", "statistics homework"),
    ],
)
def test_parse_command_text(text, action, argument):
    parsed = parse_command_text(text)
    assert (parsed.action, parsed.argument) == (action, argument)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("", ""),
        ("\ud800", "\ufffd"),
        ("a\udfffb", "a\ufffdb"),
        ("\ude00\ud83d", "\ufffd\ufffd"),  # a pair in the wrong order is two lone halves
        ("\ud83d\ude00", "😀"),  # a pair split into two code points is joined back
        ("😀 é ∑", "😀 é ∑"),
        ("\x00", ""),
        ("a\x00b\x00", "ab"),
        ("é\x00\ud800", "é\ufffd"),
    ],
)
def test_storable_text(text, expected):
    assert storable_text(text) == expected
    storable_text(text).encode("utf-8")  # what SQLite and PostgreSQL need
