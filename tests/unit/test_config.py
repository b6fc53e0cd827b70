"""Configuration: every bad or missing setting is one clear line, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from bot.config import ConfigError, load_console_settings, load_database_settings, load_settings

GOOD = {
    "SLACK_BOT_TOKEN": "xoxb-1",
    "SLACK_SIGNING_SECRET": "secret",
    "OPENAI_API_KEY": "sk-1",
}


def test_defaults():
    s = load_settings(GOOD)
    assert s.runtime == "responses"
    assert s.openai_model == "gpt-4o-mini"
    assert s.database_url == "sqlite:///tutorbot.db"
    assert s.port == 3000
    assert s.slack_api_url == "https://slack.com/api/"
    assert s.socket_mode is False
    assert s.tools == ("code_interpreter", "file_search", "display_quiz")
    assert s.slash_command == "/tutor"
    assert (s.database_pool_size, s.database_max_overflow) == (5, 5)


def test_database_settings_need_nothing_else():
    """What ``python -m bot migrate`` reads: DATABASE_URL and the pool, no credentials."""
    database = load_database_settings(
        {"DATABASE_URL": "postgres://u@db/bot", "DATABASE_POOL_SIZE": "3"}
    )
    assert (database.url, database.pool_size, database.max_overflow) == (
        "postgres://u@db/bot",
        3,
        5,
    )
    assert load_database_settings({}).url == "sqlite:///tutorbot.db"


def test_socket_mode_needs_no_signing_secret():
    env = {**GOOD, "SLACK_APP_TOKEN": "xapp-1"}
    del env["SLACK_SIGNING_SECRET"]
    assert load_settings(env).socket_mode is True


@pytest.mark.parametrize(
    ("override", "names"),
    [
        ({"SLACK_BOT_TOKEN": ""}, "SLACK_BOT_TOKEN"),
        ({"SLACK_BOT_TOKEN": "xoxp-user"}, "SLACK_BOT_TOKEN"),
        ({"SLACK_SIGNING_SECRET": ""}, "SLACK_SIGNING_SECRET"),
        ({"SLACK_APP_TOKEN": "xoxb-wrong"}, "SLACK_APP_TOKEN"),
        ({"OPENAI_API_KEY": " "}, "OPENAI_API_KEY"),
        ({"OPENAI_BASE_URL": "localhost:8080"}, "OPENAI_BASE_URL"),
        ({"SLACK_API_URL": "slack.com/api"}, "SLACK_API_URL"),
        ({"ASSISTANT_RUNTIME": "completions"}, "ASSISTANT_RUNTIME"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"DATABASE_POOL_SIZE": "0"}, "DATABASE_POOL_SIZE"),
        ({"DATABASE_MAX_OVERFLOW": "many"}, "DATABASE_MAX_OVERFLOW"),
        ({"PORT": "http"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"ASSISTANT_TOOLS": "code_interpreter,browser"}, "ASSISTANT_TOOLS"),
        ({"SLASH_COMMAND": "tutor"}, "SLASH_COMMAND"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        ({"RUN_TIMEOUT_SECONDS": "soon"}, "RUN_TIMEOUT_SECONDS"),
        ({"MAX_FILE_MB": "-1"}, "MAX_FILE_MB"),
        ({"AGENTOPS_REDACT_CONTENT": "maybe"}, "AGENTOPS_REDACT_CONTENT"),
        ({"CHAT_HISTORY_TOKENS": "0"}, "CHAT_HISTORY_TOKENS"),
        ({"CHAT_HISTORY_TOKENS": "-5"}, "CHAT_HISTORY_TOKENS"),
        ({"CHAT_HISTORY_TOKENS": "12k"}, "CHAT_HISTORY_TOKENS"),
        ({"CHAT_HISTORY_TOKENS": "1.5"}, "CHAT_HISTORY_TOKENS"),
        ({"CHAT_HISTORY_TOKENS": "\u00b2"}, "CHAT_HISTORY_TOKENS"),
    ],
)
def test_bad_settings_name_themselves(override, names):
    with pytest.raises(ConfigError) as info:
        load_settings({**GOOD, **override})
    message = str(info.value)
    assert names in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("raw", "tokens"), [(None, 12_000), ("", 12_000), (" 32000 ", 32_000), ("1", 1)]
)
def test_chat_history_tokens(raw, tokens):
    env = GOOD if raw is None else {**GOOD, "CHAT_HISTORY_TOKENS": raw}
    assert load_settings(env).chat_history_tokens == tokens


@pytest.mark.parametrize("runtime", ["responses", "assistants", "chat", "Chat"])
def test_every_runtime_can_be_chosen(runtime):
    assert load_settings({**GOOD, "ASSISTANT_RUNTIME": runtime}).runtime == runtime.lower()


def test_tools_can_be_turned_off():
    assert load_settings({**GOOD, "ASSISTANT_TOOLS": "none"}).tools == ()
    assert load_settings({**GOOD, "ASSISTANT_TOOLS": "display_quiz"}).tools == ("display_quiz",)


def test_python_m_bot_without_credentials_says_what_to_set(tmp_path: Path):
    """The first thing a newcomer runs: no traceback, every missing setting named."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-m", "bot"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "OPENAI_API_KEY"):
        assert name in proc.stderr


def test_the_console_needs_only_a_model_key():
    s = load_console_settings({"OPENAI_API_KEY": "ollama", "ASSISTANT_RUNTIME": "chat"})
    assert s.runtime == "chat" and s.openai_api_key == "ollama"
    assert s.slack_bot_token == "" and s.slack_signing_secret is None and not s.socket_mode
    assert s.database_url == "sqlite:///tutorbot.db"
    # Everything shared is parsed exactly as for Slack.
    slack = load_settings({**GOOD, "OPENAI_MODEL": "m", "DATABASE_URL": "sqlite:///x.db"})
    console = load_console_settings(
        {"OPENAI_API_KEY": "sk-1", "OPENAI_MODEL": "m", "DATABASE_URL": "sqlite:///x.db"}
    )
    assert (
        replace(
            slack,
            slack_bot_token="",
            slack_signing_secret=None,
            slack_app_token=None,
            port_set=False,
        )
        == console
    )


@pytest.mark.parametrize("key", [None, "", "  "])
def test_the_console_without_a_key_says_what_to_set_in_one_line(key):
    env = {} if key is None else {"OPENAI_API_KEY": key}
    with pytest.raises(ConfigError) as info:
        load_console_settings(env)
    message = str(info.value)
    assert "\n" not in message
    assert "OPENAI_API_KEY" in message and "OPENAI_BASE_URL" in message
    assert "SLACK" not in message


@pytest.mark.parametrize(
    "override",
    [{"ASSISTANT_RUNTIME": "completions"}, {"DATABASE_URL": "mysql://x"}, {"LOG_LEVEL": "loud"}],
)
def test_the_console_names_a_bad_setting(override):
    with pytest.raises(ConfigError) as info:
        load_console_settings({"OPENAI_API_KEY": "sk-1", **override})
    assert next(iter(override)) in str(info.value)


MANY = {
    "SLACK_CLIENT_ID": "1111.2222",
    "SLACK_CLIENT_SECRET": "client-secret",
    "SLACK_STATE_SECRET": "state-secret",
    "SLACK_SIGNING_SECRET": "secret",
    "OPENAI_API_KEY": "sk-1",
}


def test_many_workspaces_need_the_oauth_settings_instead_of_a_bot_token():
    s = load_settings(MANY)
    assert s.many_workspaces and s.slack_bot_token == ""
    assert (s.slack_client_id, s.slack_client_secret, s.slack_state_secret) == (
        "1111.2222",
        "client-secret",
        "state-secret",
    )
    assert s.slack_redirect_uri is None
    assert not load_settings(GOOD).many_workspaces
    redirect = "https://tutor.example.edu/slack/oauth_redirect"
    assert load_settings({**MANY, "SLACK_REDIRECT_URI": redirect}).slack_redirect_uri == redirect
    # Socket Mode too (the install pages are still served over HTTP).
    socket = {**MANY, "SLACK_APP_TOKEN": "xapp-1"}
    del socket["SLACK_SIGNING_SECRET"]
    assert load_settings(socket).many_workspaces


@pytest.mark.parametrize(
    "left_out", ["SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET", "SLACK_STATE_SECRET"]
)
def test_an_incomplete_oauth_setup_names_what_is_missing(left_out):
    env = {**MANY, left_out: ""}
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert str(info.value).startswith(f"{left_out} is not set: ")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("override", "names"),
    [
        ({"SLACK_BOT_TOKEN": "xoxb-1"}, "SLACK_BOT_TOKEN and SLACK_CLIENT_ID are both set"),
        ({"DATABASE_URL": "sqlite://"}, "DATABASE_URL"),
        ({"DATABASE_URL": "sqlite:///:memory:"}, "DATABASE_URL"),
        ({"SLACK_REDIRECT_URI": "https://tutor.example.edu/oauth"}, "SLACK_REDIRECT_URI"),
    ],
)
def test_bad_oauth_settings_name_themselves(override, names):
    with pytest.raises(ConfigError) as info:
        load_settings({**MANY, **override})
    assert names in str(info.value)
    assert "\n" not in str(info.value)


def test_without_any_slack_credentials_both_modes_are_offered():
    with pytest.raises(ConfigError) as info:
        load_settings({"SLACK_SIGNING_SECRET": "s", "OPENAI_API_KEY": "sk-1"})
    message = str(info.value)
    assert message.startswith("SLACK_BOT_TOKEN is not set")
    assert "SLACK_CLIENT_ID, SLACK_CLIENT_SECRET, SLACK_STATE_SECRET" in message
    assert "\n" not in message
