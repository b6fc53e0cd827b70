"""Table tests for the agent-app event parsers in handlers/agent_parsing.py."""

from __future__ import annotations

from typing import Any

import pytest

from handlers.agent_parsing import (
    AppContextChanged,
    AppHomeOpened,
    AssistantThread,
    AssistantThreadEvent,
    HomeTab,
    SessionStopped,
    ViewingContext,
    parse_agent_session_stopped,
    parse_app_context_changed,
    parse_app_home_opened,
    parse_assistant_thread_event,
    parse_viewing_context,
)
from tests.fakes import slack_payloads as p

STARTED = AssistantThreadEvent.STARTED
CHANGED = AssistantThreadEvent.CONTEXT_CHANGED


def _with(event: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """``event`` with ``fields`` replaced; a value of ``...`` removes the field."""
    out = {**event, **fields}
    return {k: v for k, v in out.items() if v is not ...}


# The docs' own examples, verbatim where they give one.
DOCS_SESSION_STOPPED = {
    "channel": "C0123ABC456",
    "event_ts": "1783536983.783769",
    "streaming_message_ts": ["1782234987.693923"],
    "thread_ts": "1782234671.392669",
    "type": "agent_session_stopped",
    "user": "U123ABC456",
}
DOCS_CONTEXT = {
    "entities": [
        {"type": "slack#/types/channel_id", "value": "C01234ABDCE", "team_id": "T0ABCDE6543"}
    ]
}
DOCS_LEGACY_CHANGED = {
    "type": "assistant_thread_context_changed",
    "assistant_thread": {
        "user_id": "U123ABC456",
        "context": {
            "channel_id": "C123ABC456",
            "team_id": "T07XY8FPJ5C",
            "enterprise_id": "E480293PS82",
        },
        "channel_id": "D123ABC456",
        "thread_ts": "1729999327.187299",
    },
    "event_ts": "17298244.022142",
}


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        (DOCS_CONTEXT, ViewingContext("C01234ABDCE", "T0ABCDE6543")),
        ({}, None),
        ({"entities": []}, None),
        (None, None),
        ("C1", None),
        (
            {
                "entities": [
                    {"type": "slack#/types/canvas_id", "value": "F1"},
                    *DOCS_CONTEXT["entities"],
                ]
            },
            ViewingContext(
                "C01234ABDCE", "T0ABCDE6543"
            ),  # canvases are skipped, first channel wins
        ),
        (
            {
                "entities": [
                    {
                        "type": "slack#/types/message_context",
                        "value": {"channel_id": "C9", "message_ts": "1.000002"},
                    },
                    {"type": "slack#/types/channel_id", "value": "C8"},
                ]
            },
            ViewingContext("C9", message_ts="1.000002"),
        ),
        (
            {"entities": [{"type": "slack#/types/channel_id", "value": "C1", "name": " maths "}]},
            ViewingContext("C1", name="maths"),
        ),
        ({"entities": [{"type": "slack#/types/channel_id", "value": "<!channel>"}]}, None),
        ({"entities": [{"type": "slack#/types/channel_id"}]}, None),
        ({"entities": ["C1", None]}, None),
        ({"entities": [{"type": "slack#/types/message_context", "value": "C1"}]}, None),
        (
            {"channel_id": "C123", "team_id": "T1", "enterprise_id": None},
            ViewingContext("C123", "T1"),
        ),
        ({"channel_id": None, "team_id": "T1", "enterprise_id": None}, None),
    ],
)
def test_viewing_context(context: Any, expected: ViewingContext | None) -> None:
    assert parse_viewing_context(context) == expected


HOME = p.app_home_opened(user="U1", tab="home")
MESSAGES = p.app_home_opened(user="U1", tab="messages", context_channel="C7")


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (HOME, AppHomeOpened("U1", "DU1", HomeTab.HOME)),
        (MESSAGES, AppHomeOpened("U1", "DU1", HomeTab.MESSAGES, ViewingContext("C7", "T1"))),
        (
            p.app_home_opened(user="U2", tab="home", view={"type": "home", "blocks": []}),
            AppHomeOpened("U2", "DU2", HomeTab.HOME),
        ),
        (_with(HOME, tab=...), None),  # no tab: nothing to decide on
        (_with(HOME, tab="about"), None),
        (_with(HOME, tab=["home"]), None),
        (_with(HOME, user=...), None),
        (_with(HOME, user=""), None),
        (_with(HOME, user=42), None),
        (_with(HOME, channel=None), None),
        (_with(HOME, type="app_home_closed"), None),
        (_with(MESSAGES, context="garbage"), AppHomeOpened("U1", "DU1", HomeTab.MESSAGES)),
    ],
)
def test_app_home_opened(event: dict[str, Any], expected: AppHomeOpened | None) -> None:
    assert parse_app_home_opened(event) == expected


CONTEXT = p.app_context_changed(user="U1", context_channel="C7")


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (CONTEXT, AppContextChanged("U1", "DU1", ViewingContext("C7", "T1"))),
        (p.app_context_changed(user="U1"), AppContextChanged("U1", "DU1", None)),
        (
            _with(CONTEXT, context=DOCS_CONTEXT, thread_ts="1.000001"),
            AppContextChanged(
                "U1", "DU1", ViewingContext("C01234ABDCE", "T0ABCDE6543"), "1.000001"
            ),
        ),
        (
            _with(CONTEXT, thread_ts="soon"),
            AppContextChanged("U1", "DU1", ViewingContext("C7", "T1")),
        ),
        # The docs' example: no user, no channel. Nobody to attribute it to.
        ({"type": "app_context_changed", "context": DOCS_CONTEXT}, None),
        (_with(CONTEXT, channel=...), None),
        (_with(CONTEXT, user="u1"), None),
        (_with(CONTEXT, type="assistant_thread_context_changed"), None),
    ],
)
def test_app_context_changed(event: dict[str, Any], expected: AppContextChanged | None) -> None:
    assert parse_app_context_changed(event) == expected


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            DOCS_SESSION_STOPPED,
            SessionStopped(
                "U123ABC456", "C0123ABC456", "1782234671.392669", ("1782234987.693923",)
            ),
        ),
        (
            p.agent_session_stopped(user="U1", thread_ts="1.000001"),
            SessionStopped("U1", "DU1", "1.000001"),
        ),
        (
            _with(DOCS_SESSION_STOPPED, streaming_message_ts=["1.2", None, "x", 5]),
            SessionStopped("U123ABC456", "C0123ABC456", "1782234671.392669", ("1.2",)),
        ),
        (
            _with(DOCS_SESSION_STOPPED, streaming_message_ts="1.2"),
            SessionStopped("U123ABC456", "C0123ABC456", "1782234671.392669"),
        ),
        (_with(DOCS_SESSION_STOPPED, thread_ts=...), None),
        (_with(DOCS_SESSION_STOPPED, thread_ts="1782234671"), None),
        (_with(DOCS_SESSION_STOPPED, user=None), None),
        (_with(DOCS_SESSION_STOPPED, channel={"id": "C1"}), None),
        (_with(DOCS_SESSION_STOPPED, type="message"), None),
    ],
)
def test_agent_session_stopped(event: dict[str, Any], expected: SessionStopped | None) -> None:
    assert parse_agent_session_stopped(event) == expected


LEGACY_STARTED = p.assistant_thread_started(
    user="U1", channel="D1", thread_ts="2.000001", context_channel="C7"
)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            LEGACY_STARTED,
            AssistantThread(STARTED, "U1", "D1", "2.000001", ViewingContext("C7", "T1")),
        ),
        (
            p.assistant_thread_started(user="U1", channel="D1", thread_ts="2.000001"),
            AssistantThread(STARTED, "U1", "D1", "2.000001", None),
        ),
        (
            DOCS_LEGACY_CHANGED,
            AssistantThread(
                CHANGED,
                "U123ABC456",
                "D123ABC456",
                "1729999327.187299",
                ViewingContext("C123ABC456", "T07XY8FPJ5C"),
            ),
        ),
        (_with(LEGACY_STARTED, assistant_thread=...), None),
        (_with(LEGACY_STARTED, assistant_thread="D1"), None),
        (
            _with(
                LEGACY_STARTED,
                assistant_thread={**LEGACY_STARTED["assistant_thread"], "thread_ts": None},
            ),
            None,
        ),
        (
            _with(
                LEGACY_STARTED,
                assistant_thread={**LEGACY_STARTED["assistant_thread"], "user_id": ""},
            ),
            None,
        ),
        (_with(LEGACY_STARTED, type="app_home_opened"), None),
        (_with(LEGACY_STARTED, type=None), None),
    ],
)
def test_assistant_thread_events(event: dict[str, Any], expected: AssistantThread | None) -> None:
    assert parse_assistant_thread_event(event) == expected
