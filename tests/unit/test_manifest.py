"""manifest.yml parses, asks for what an agent app needs, and subscribes to every event the
bot listens to (an event Slack never sends is a listener that silently never runs)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from slack_bolt.async_app import AsyncApp

from bot.agent.surfaces import SUGGESTED_PROMPTS, suggested_prompts_payload
from bot.app import TutorBot
from bot.config import load_settings
from bot.oauth import BOT_SCOPES, REDIRECT_PATH

MANIFEST = Path(__file__).resolve().parents[2] / "manifest.yml"
# A type no listener should name: a pattern matching it is a catch-all.
NOT_AN_EVENT = "zz_not_an_event_type"


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    data = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _bot_events(manifest: dict[str, Any]) -> set[str]:
    return set(manifest["settings"]["event_subscriptions"]["bot_events"])


def _subscribed(event_type: str, bot_events: set[str]) -> bool:
    """Whether Slack delivers ``event_type``: ``message`` comes from the message.* events."""
    if event_type == "message":
        return any(e.startswith("message.") for e in bot_events)
    return event_type in bot_events


def _closure_values(func: Any, depth: int = 0) -> Iterator[Any]:
    """The event constraints captured by Bolt's ``event()`` / ``message_event()`` matchers.

    Bolt 1.30 builds each event matcher as a closure (``event.<locals>.func`` over
    ``event_type`` or ``constraints``) wrapped in another for asyncio; walk the closures.
    """
    code, cells = getattr(func, "__code__", None), getattr(func, "__closure__", None) or ()
    if code is None or depth > 4:
        return
    is_event_matcher = func.__qualname__.startswith(("event.<locals>", "message_event.<locals>"))
    for name, cell in zip(code.co_freevars, cells, strict=True):
        value = cell.cell_contents
        if is_event_matcher and name in ("event_type", "constraints"):
            yield value
        elif callable(value):
            yield from _closure_values(value, depth + 1)


def listened_event_types(app: AsyncApp) -> tuple[set[str], int]:
    """(event types the app's listeners name, number of catch-all event listeners)."""
    types: set[str] = set()
    catch_alls = 0
    for listener in app._async_listeners:
        for matcher in listener.matchers:
            for constraint in _closure_values(getattr(matcher, "func", None)):
                kind = constraint["type"] if isinstance(constraint, dict) else constraint
                if isinstance(kind, str):
                    types.add(kind)
                elif isinstance(kind, re.Pattern) and kind.search(NOT_AN_EVENT):
                    catch_alls += 1
                else:
                    raise AssertionError(
                        f"listener {listener!r} matches events by {kind!r}: name the event "
                        "types instead, so this test can check the manifest subscribes to them"
                    )
    return types, catch_alls


def test_listener_introspection_sees_what_bolt_registered() -> None:
    """The helper itself: if Bolt's internals change, this fails instead of passing vacuously."""
    app = AsyncApp(token="xoxb-test", signing_secret="s")

    async def noop() -> None:
        return None

    app.event("app_home_opened")(noop)
    app.event({"type": "message", "subtype": None})(noop)
    app.message("hello")(noop)
    app.event(re.compile(".*"))(noop)
    app.action("turn_feedback")(noop)
    app.action(re.compile("quiz_.*"))(noop)
    app.command("/tutor")(noop)
    assert listened_event_types(app) == ({"app_home_opened", "message"}, 1)
    app.event(re.compile("app_.*"))(noop)
    with pytest.raises(AssertionError, match="name the event types"):
        listened_event_types(app)


ONE_WORKSPACE = {"SLACK_BOT_TOKEN": "xoxb-test"}
MANY_WORKSPACES = {
    "SLACK_CLIENT_ID": "1.2",
    "SLACK_CLIENT_SECRET": "client-secret",
    "SLACK_STATE_SECRET": "state-secret",
}


@pytest.mark.parametrize("workspaces", [ONE_WORKSPACE, MANY_WORKSPACES], ids=["one", "many"])
async def test_manifest_subscribes_to_every_event_the_bot_listens_to(
    manifest: dict[str, Any], tmp_path: Path, workspaces: dict[str, str]
) -> None:
    bot = TutorBot(
        load_settings(
            {
                **workspaces,
                "SLACK_SIGNING_SECRET": "secret",
                "OPENAI_API_KEY": "sk-test",
                "DATABASE_URL": f"sqlite:///{tmp_path / 'tutorbot.db'}",
            }
        )
    )
    try:
        types, catch_alls = listened_event_types(bot.bolt)
    finally:
        await bot.runtime.aclose()
        await bot.http.close()
    assert {"app_mention", "message"} <= types  # the helper found the real listeners
    if workspaces is MANY_WORKSPACES:
        assert {"app_uninstalled", "tokens_revoked"} <= types
    assert catch_alls <= 1  # the one no-op that acks everything else
    bot_events = _bot_events(manifest)
    missing = sorted(t for t in types if not _subscribed(t, bot_events))
    assert not missing, f"manifest.yml does not subscribe to {missing}"


def test_manifest_is_an_agent_app(manifest: dict[str, Any]) -> None:
    features = manifest["features"]
    agent_view = features["agent_view"]
    assert agent_view["agent_description"].strip()
    # Students see these before the first event; the bot sets the same ones.
    assert agent_view["suggested_prompts"] == suggested_prompts_payload(SUGGESTED_PROMPTS)
    assert features["app_home"]["home_tab_enabled"] is True
    assert features["app_home"]["messages_tab_enabled"] is True
    assert manifest["settings"]["interactivity"]["is_enabled"] is True  # feedback buttons

    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"assistant:write", "im:history", "chat:write", "commands", "channels:read"} <= scopes
    assert {
        "app_home_opened",
        "app_context_changed",
        "agent_session_stopped",
        "assistant_thread_started",
        "assistant_thread_context_changed",
        "message.im",
        "app_mention",
    } <= _bot_events(manifest)


def test_every_url_points_at_the_one_endpoint(manifest: dict[str, Any]) -> None:
    urls = [
        manifest["settings"]["event_subscriptions"]["request_url"],
        manifest["settings"]["interactivity"]["request_url"],
        *(c["url"] for c in manifest["features"]["slash_commands"]),
    ]
    assert set(urls) == {"https://YOUR-HOST/slack/events"}


def test_many_workspaces_ask_for_the_manifest_scopes_and_come_back_to_the_bot(
    manifest: dict[str, Any],
) -> None:
    """The install flow asks each workspace for what the manifest declares (a scope missing
    from one of them would be granted in one mode and not the other), and Slack may send
    the installer back only to the bot's redirect path."""
    oauth = manifest["oauth_config"]
    assert list(BOT_SCOPES) == oauth["scopes"]["bot"]
    assert oauth["redirect_urls"] == [f"https://YOUR-HOST{REDIRECT_PATH}"]
