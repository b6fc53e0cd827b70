"""Configuration: every bad or missing setting is one clear line, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import ConfigError, load_settings

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
        ({"ASSISTANT_RUNTIME": "chat"}, "ASSISTANT_RUNTIME"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"PORT": "http"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"ASSISTANT_TOOLS": "code_interpreter,browser"}, "ASSISTANT_TOOLS"),
        ({"SLASH_COMMAND": "tutor"}, "SLASH_COMMAND"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        ({"RUN_TIMEOUT_SECONDS": "soon"}, "RUN_TIMEOUT_SECONDS"),
        ({"MAX_FILE_MB": "-1"}, "MAX_FILE_MB"),
        ({"AGENTOPS_REDACT_CONTENT": "maybe"}, "AGENTOPS_REDACT_CONTENT"),
    ],
)
def test_bad_settings_name_themselves(override, names):
    with pytest.raises(ConfigError) as info:
        load_settings({**GOOD, **override})
    message = str(info.value)
    assert names in message
    assert "\n" not in message


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
