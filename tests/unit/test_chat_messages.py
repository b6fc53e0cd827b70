"""The chat runtime's stored conversation: what waits, what a run ended with, what is sent."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.runtime._chat_messages import (
    NO_OUTPUT,
    UNANSWERED,
    Awaiting,
    answer_of,
    assistant_message,
    awaiting,
    outputs_in_call_order,
    result_of,
    run_taking_outputs,
    unique_call_ids,
    user_message,
    wire_messages,
)
from bot.runtime._tool_call_stream import StreamedToolCall
from bot.runtime.base import RunStatus, ToolCall
from store.base import ChatRecord


def user(text: str, run: str = "r1") -> ChatRecord:
    return ChatRecord(run, {"role": "user", "content": text})


def said(text: str, run: str = "r1", finish: str = "stop") -> ChatRecord:
    return ChatRecord(run, assistant_message(text, (), finish))


def asked(run: str, *calls: tuple[str, str], text: str = "") -> ChatRecord:
    streamed = [StreamedToolCall(cid, "display_quiz", args) for cid, args in calls]
    return ChatRecord(run, assistant_message(text, streamed, "tool_calls"))


def answered(call_id: str, run: str, output: str = '["4"]') -> ChatRecord:
    return ChatRecord(run, {"role": "tool", "tool_call_id": call_id, "content": output})


def roles(messages: list[dict[str, Any]]) -> list[str]:
    return [m["role"] for m in messages]


def test_user_message_puts_the_files_after_the_text() -> None:
    assert user_message("read this") == {"role": "user", "content": "read this"}
    message = user_message("read this", ["--- begin file a ---", "[no b]"])
    assert message["content"] == "read this\n\n--- begin file a ---\n\n[no b]"


def test_assistant_message_keeps_raw_arguments_and_the_finish_reason() -> None:
    calls = [StreamedToolCall("c1", "display_quiz", "{not json")]
    message = assistant_message("", calls, "tool_calls")
    assert message == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "display_quiz", "arguments": "{not json"},
            }
        ],
        "finish_reason": "tool_calls",
    }
    assert assistant_message("hi", (), None) == {
        "role": "assistant",
        "content": "hi",
        "finish_reason": "stop",
    }


@pytest.mark.parametrize(
    ("message", "status", "texts", "calls"),
    [
        (assistant_message("x = 1", (), "stop"), RunStatus.COMPLETED, ["x = 1"], []),
        (assistant_message("", (), "stop"), RunStatus.COMPLETED, [], []),
        (assistant_message("x =", (), "length"), RunStatus.INCOMPLETE, ["x ="], []),
        (assistant_message("no", (), "content_filter"), RunStatus.INCOMPLETE, ["no"], []),
        (assistant_message("I sa", (), "cancelled"), RunStatus.CANCELLED, ["I sa"], []),
        (
            assistant_message(
                "Quiz:", [StreamedToolCall("c1", "display_quiz", "{}")], "tool_calls"
            ),
            RunStatus.REQUIRES_ACTION,
            ["Quiz:"],
            [ToolCall("c1", "display_quiz", "{}")],
        ),
        # Older Ollama ends a call with "stop"; a call cut off by the length limit still
        # goes to the quiz validator, whose error output the model can act on.
        (
            assistant_message("", [StreamedToolCall("c1", "display_quiz", "{")], "stop"),
            RunStatus.REQUIRES_ACTION,
            [],
            [ToolCall("c1", "display_quiz", "{")],
        ),
        (
            assistant_message("", [StreamedToolCall("c1", "display_quiz", '{"ti')], "length"),
            RunStatus.REQUIRES_ACTION,
            [],
            [ToolCall("c1", "display_quiz", '{"ti')],
        ),
    ],
)
def test_result_of_a_stored_answer(
    message: dict[str, Any], status: RunStatus, texts: list[str], calls: list[ToolCall]
) -> None:
    result = result_of("run_9", message)
    assert result.run_id == "run_9"
    assert result.status is status
    assert [m.text for m in result.messages] == texts
    assert result.tool_calls == calls
    assert (result.error is not None) == (status is RunStatus.INCOMPLETE)


def test_answer_of_finds_the_runs_assistant_message() -> None:
    records = [user("q", "r1"), said("a", "r1"), user("q2", "r2")]
    assert answer_of(records, "r1") == records[1].message
    assert answer_of(records, "r2") is None
    assert answer_of([], "r1") is None


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        ([], None),
        ([user("q"), said("a")], None),
        ([user("q"), asked("r1", ("c1", "{}"), ("c2", "{}"))], Awaiting("r1", ("c1", "c2"))),
        (
            [user("q"), asked("r1", ("c1", "{}"), ("c2", "{}")), answered("c2", "r2")],
            Awaiting("r1", ("c1",)),
        ),
        (
            [user("q"), asked("r1", ("c1", "{}")), answered("c1", "r2")],
            None,
        ),
        (
            [user("q"), asked("r1", ("c1", "{}")), answered("c1", "r2"), said("ok", "r2")],
            None,
        ),
        # A second round of calls: only the latest one waits.
        (
            [
                user("q"),
                asked("r1", ("c1", "{}")),
                answered("c1", "r2"),
                asked("r2", ("c9", "{}")),
            ],
            Awaiting("r2", ("c9",)),
        ),
    ],
)
def test_awaiting(records: list[ChatRecord], expected: Awaiting | None) -> None:
    assert awaiting(records) == expected


@pytest.mark.parametrize(
    ("records", "taken_by"),
    [
        ([], None),
        ([user("q"), asked("r1", ("c1", "{}"))], None),  # still waiting
        ([user("q"), asked("r1", ("c1", "{}")), answered("c1", "r2")], "r2"),
        # The next run answered already: too late to take them again.
        ([user("q"), asked("r1", ("c1", "{}")), answered("c1", "r2"), said("ok", "r2")], None),
        # Closed by a new message (skipped), not by a submission.
        ([user("q"), asked("r1", ("c1", "{}")), answered("c1", "r2"), user("new", "r2")], None),
        # Outputs of another run's calls.
        ([user("q"), asked("r0", ("c0", "{}")), answered("c0", "r2")], None),
    ],
)
def test_run_taking_outputs(records: list[ChatRecord], taken_by: str | None) -> None:
    assert run_taking_outputs(records, "r1") == taken_by


def test_outputs_in_call_order_answer_every_call_once() -> None:
    messages, missing = outputs_in_call_order(
        ["c1", "c2", "c3"], {"c3": "three", "c1": "one", "zz": "not asked"}
    )
    assert [(m["tool_call_id"], m["content"]) for m in messages] == [
        ("c1", "one"),
        ("c2", NO_OUTPUT),
        ("c3", "three"),
    ]
    assert missing == ["c2"]
    assert all(m["role"] == "tool" for m in messages)


def test_unique_call_ids_renames_ids_the_conversation_already_used() -> None:
    used = {"call_0"}
    calls = [
        StreamedToolCall("call_0", "display_quiz", "{}"),
        StreamedToolCall("call_1", "display_quiz", "{}"),
        StreamedToolCall("call_1", "display_quiz", "{}"),
    ]
    renamed = unique_call_ids(calls, used, "chatrun_abc123")
    ids = [c.id for c in renamed]
    assert ids[1] == "call_1"
    assert len(set(ids)) == 3 and "call_0" not in ids
    assert all(i.startswith("call_abc123_") for i in (ids[0], ids[2]))
    assert used >= set(ids)


def test_wire_messages_send_only_what_servers_accept() -> None:
    records = [
        user("quiz me", "r1"),
        asked("r1", ("c1", "{not json"), ("c2", '{"title": "T"}'), text="Here:"),
        answered("c1", "r2", '{"error": "bad"}'),
        answered("c2", "r2", '["4"]'),
        said("Well done", "r2"),
    ]
    wire = wire_messages(records)
    assert roles(wire) == ["user", "assistant", "tool", "tool", "assistant"]
    assert wire[1] == {
        "role": "assistant",
        "content": "Here:",
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "display_quiz", "arguments": "{}"},
            },
            {
                "id": "c2",
                "type": "function",
                "function": {"name": "display_quiz", "arguments": '{"title": "T"}'},
            },
        ],
    }
    assert wire[4] == {"role": "assistant", "content": "Well done"}  # no finish_reason
    # The stored history keeps what the model wrote.
    assert records[1].message["tool_calls"][0]["function"]["arguments"] == "{not json"


def test_wire_messages_never_leave_a_call_without_a_tool_message() -> None:
    records = [
        user("q", "r1"),
        asked("r1", ("c1", "{}"), ("c2", "{}")),
        answered("c2", "r2"),
        answered("c7", "r2"),  # a call nobody made
        user("moving on", "r2"),
    ]
    wire = wire_messages(records)
    assert roles(wire) == ["user", "assistant", "tool", "tool", "user"]
    assert {m["tool_call_id"]: m["content"] for m in wire if m["role"] == "tool"} == {
        "c1": NO_OUTPUT,
        "c2": '["4"]',
    }
    # Calls still open at the end are closed too (never expected; keeps the request valid).
    assert roles(wire_messages([user("q"), asked("r1", ("c1", "{}"))])) == [
        "user",
        "assistant",
        "tool",
    ]


def test_an_unanswered_message_is_followed_by_a_note_not_by_the_next_one() -> None:
    records = [user("slow question", "r1"), user("again", "r2"), said("ok", "r2")]
    wire = wire_messages(records)
    assert wire == [
        {"role": "user", "content": "slow question"},
        {"role": "assistant", "content": UNANSWERED},
        {"role": "user", "content": "again"},
        {"role": "assistant", "content": "ok"},
    ]


def test_a_stopped_answer_is_kept_as_what_was_said() -> None:
    records = [user("q", "r1"), said("I was say", "r1", "cancelled"), user("go on", "r2")]
    assert json.dumps(wire_messages(records)) == json.dumps(
        [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "I was say"},
            {"role": "user", "content": "go on"},
        ]
    )
