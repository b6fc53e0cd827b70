"""The fake's agent-app Web API methods: suggested prompts, thread titles, agent sessions.

Same contract as :mod:`tests.fakes.slack_methods` (one function per method over FakeSlack's
state, raising ``SlackFailure``); importing this module adds them to its ``METHODS``
(``slack_methods`` imports it last). What they record on the fake:

- ``suggested_prompts``: one dict per ``assistant.threads.setSuggestedPrompts`` call
  (``channel_id``, ``thread_ts``, ``title``, ``prompts``, ``shown``);
- ``titles``: one dict per ``assistant.threads.setTitle`` / ``agents.sessions.rename``
  (``via``, ``channel_id``, ``thread_ts``, ``title``);
- ``sessions``: ``(channel_id, thread_ts)`` -> the agent session (``status``, ``statuses``
  so far, ``title``, ``initiator_user_id``).

Toggles on the fake: ``app_surface`` ("agent_view", "assistant_view" for the legacy
container, "none" for a plain bot: ``not_agent_app``), ``missing_scopes`` (``missing_scope``
with ``needed``), ``stop_event_subscribed`` (without it ``agents.sessions.setStatus`` warns
``missing_agent_session_stopped_event_subscription``, as Slack does).

Sources: docs.slack.dev method pages (assistant.threads.setSuggestedPrompts, setTitle,
agents.sessions.setStatus, rename; the agent_session_stopped event) and slack_sdk 3.48's
``AsyncWebClient``. Where the docs name no error code for a bad argument, the fake answers
``invalid_arguments`` like Slack's schema validation does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.fakes.slack_methods import (
    METHODS,
    Args,
    Handler,
    SlackFailure,
    _required,
    channel_arg,
    invalid_arguments,
    require_member,
)
from tests.fakes.slack_payloads import agent_session_stopped

if TYPE_CHECKING:
    from tests.fakes.slack_server import FakeSlack

MAX_PROMPTS = 4  # "set up to four suggested prompts"
MAX_SESSION_TITLE = 200  # agents.sessions.*: "1-200 characters"
SESSION_STATUSES = frozenset({"active", "processing", "suspended", "closed"})
STOP_WARNING = "missing_agent_session_stopped_event_subscription"


def _need(fake: FakeSlack, scope: str, *, agent_only: bool = True) -> None:
    """Slack refuses a token without the scope first, then a non-agent app."""
    if scope in fake.missing_scopes:
        raise SlackFailure("missing_scope", needed=scope)
    if agent_only and fake.app_surface == "none":
        raise SlackFailure("not_agent_app")


def _prompts(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise invalid_arguments("prompts must be a non-empty array")
    if len(value) > MAX_PROMPTS:
        raise invalid_arguments(f"no more than {MAX_PROMPTS} items allowed [json-pointer:/prompts]")
    prompts: list[dict[str, str]] = []
    for i, prompt in enumerate(value):
        if not isinstance(prompt, dict):
            raise invalid_arguments(f"must be an object [json-pointer:/prompts/{i}]")
        for key in ("title", "message"):
            if not isinstance(prompt.get(key), str) or not prompt[key].strip():
                raise invalid_arguments(
                    f"missing required field: {key} [json-pointer:/prompts/{i}]"
                )
        prompts.append({"title": prompt["title"], "message": prompt["message"]})
    return prompts


def assistant_threads_set_suggested_prompts(fake: FakeSlack, args: Args) -> dict[str, Any]:
    _need(fake, "assistant:write")
    channel = channel_arg(fake, {"channel": _required(args, "channel_id")})
    prompts = _prompts(_required(args, "prompts"))
    thread_ts = str(args["thread_ts"]) if args.get("thread_ts") else None
    fake.suggested_prompts.append(
        {
            "channel_id": channel,
            "thread_ts": thread_ts,
            "title": args.get("title"),
            "prompts": prompts,
            # The docs: thread_ts is for the legacy assistant container only; an agent app's
            # call with it "will silently fail" (ok, but nothing is shown).
            "shown": not (thread_ts and fake.app_surface == "agent_view"),
        }
    )
    return {}


def assistant_threads_set_title(fake: FakeSlack, args: Args) -> dict[str, Any]:
    _need(fake, "assistant:write")
    channel = channel_arg(fake, {"channel": _required(args, "channel_id")})
    thread_ts = str(_required(args, "thread_ts"))
    title = str(_required(args, "title"))
    fake.titles.append(
        {
            "via": "assistant.threads.setTitle",
            "channel_id": channel,
            "thread_ts": thread_ts,
            "title": title,
        }
    )
    session = fake.sessions.get((channel, thread_ts))
    if session is not None:  # bridged to the agent session of that thread
        session["title"] = title
    return {}


def _session_target(fake: FakeSlack, args: Args) -> tuple[str, str]:
    channel = channel_arg(fake, {"channel": _required(args, "channel_id")})
    # Sessions here are thread-based (a DM or channel thread), where thread_ts is required;
    # the fake has no "session channels".
    thread_ts = str(_required(args, "thread_ts"))
    require_member(fake, channel)
    return channel, thread_ts


def _session_title(value: Any, *, required: bool) -> str | None:
    if value is None or value == "":
        if required:
            raise invalid_arguments("missing required field: title")
        return None
    title = str(value)
    if len(title) > MAX_SESSION_TITLE:
        raise invalid_arguments(f"title must be 1-{MAX_SESSION_TITLE} characters")
    return title


def agents_sessions_set_status(fake: FakeSlack, args: Args) -> dict[str, Any]:
    _need(fake, "chat:write")
    status = str(_required(args, "status"))
    if status not in SESSION_STATUSES:
        raise invalid_arguments(
            "status must be one of the provided values: " + ", ".join(sorted(SESSION_STATUSES))
        )
    key = _session_target(fake, args)
    title = _session_title(args.get("title"), required=False)
    session = fake.sessions.get(key)
    if session is None:  # created on first use; title and initiator only count then
        session = {
            "channel_id": key[0],
            "thread_ts": key[1],
            "status": status,
            "statuses": [],
            "title": title,
            "initiator_user_id": args.get("initiator_user_id"),
        }
        fake.sessions[key] = session
    session["status"] = status
    session["statuses"].append(status)
    result: dict[str, Any] = {"status": status}
    if session["title"] is not None:
        result["title"] = session["title"]
    if status == "processing" and not fake.stop_event_subscribed:
        # Slack shows a non-interactive spinner instead of a Stop button, and says why.
        result["warning"] = STOP_WARNING
        result["response_metadata"] = {"warnings": [STOP_WARNING]}
    return result


def agents_sessions_rename(fake: FakeSlack, args: Args) -> dict[str, Any]:
    _need(fake, "chat:write")
    title = _session_title(args.get("title"), required=True)
    key = _session_target(fake, args)
    session = fake.sessions.get(key)
    if session is None:
        raise SlackFailure("session_not_found")
    session["title"] = title
    fake.titles.append(
        {"via": "agents.sessions.rename", "channel_id": key[0], "thread_ts": key[1], "title": title}
    )
    return {"title": title}


def stop_session(
    fake: FakeSlack, *, channel: str, thread_ts: str, user: str = "U1"
) -> dict[str, Any]:
    """A student presses Stop in ``thread_ts``: Slack stops the app's live streams there.

    Returns the ``agent_session_stopped`` event to deliver (``SlackSender.post_event``).
    The stopped streams leave the streaming state and are listed in ``stopped_streams``;
    the session keeps its status (the docs: the app must move it out of "processing").
    """
    stopped = sorted(
        ts
        for stream_channel, ts in list(fake.streams)
        if stream_channel == channel
        and fake.is_streaming(channel, ts)
        and (
            ts == thread_ts or (fake.find_message(channel, ts) or {}).get("thread_ts") == thread_ts
        )
    )
    for ts in stopped:
        fake.stop_stream_by_user(channel, ts)
        fake.stopped_streams.add((channel, ts))
    return agent_session_stopped(
        user=user, channel=channel, thread_ts=thread_ts, streaming_message_ts=stopped
    )


AGENT_METHODS: dict[str, Handler] = {
    "assistant.threads.setSuggestedPrompts": assistant_threads_set_suggested_prompts,
    "assistant.threads.setTitle": assistant_threads_set_title,
    "agents.sessions.setStatus": agents_sessions_set_status,
    "agents.sessions.rename": agents_sessions_rename,
}
METHODS.update(AGENT_METHODS)
