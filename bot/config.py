"""Configuration from the environment (and ``.env``), validated once at start.

A missing or malformed setting raises ``ConfigError`` with one line naming it and where to
get it; ``python -m bot`` prints that line and exits without a traceback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_INSTRUCTIONS = (
    "You are a personal math tutor. Answer questions briefly, in a sentence or less. "
    "Write and run code to answer math questions when it helps. "
    "When you want to check the student's understanding, call display_quiz with a short "
    "quiz; after the answers come back, give feedback on each one."
)

RUNTIMES = ("responses", "assistants")
TOOLS = ("code_interpreter", "file_search", "display_quiz")


class ConfigError(Exception):
    """A setting is missing or malformed; each line of the message names one and says
    where to get it."""


@dataclass(frozen=True, slots=True)
class Settings:
    slack_bot_token: str
    slack_signing_secret: str | None
    slack_app_token: str | None
    slack_api_url: str
    openai_api_key: str
    openai_base_url: str | None
    openai_model: str
    runtime: str
    assistant_id: str | None
    instructions: str
    database_url: str
    port: int
    tools: tuple[str, ...]
    slash_command: str
    agentops_api_key: str | None
    agentops_redact_content: bool
    log_level: str
    run_timeout: float
    max_file_bytes: int
    # In Socket Mode the HTTP server (GET /healthz) runs only when PORT is set explicitly.
    port_set: bool = False

    @property
    def socket_mode(self) -> bool:
        return self.slack_app_token is not None


def _need(env: Mapping[str, str], name: str, where: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is not set: {where}")
    return value


def _opt(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum:g}, got {raw!r}")
    return value


_SLACK_APPS = "https://api.slack.com/apps -> your app"


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise ``ConfigError`` on the first bad one."""
    env = os.environ if env is None else env

    # Report every missing credential at once: a newcomer fixes them in one go.
    missing = []
    if not _opt(env, "SLACK_BOT_TOKEN"):
        missing.append(
            "SLACK_BOT_TOKEN is not set: "
            f"{_SLACK_APPS} -> OAuth & Permissions -> Bot User OAuth Token (xoxb-…)"
        )
    app_token = _opt(env, "SLACK_APP_TOKEN")
    signing_secret = _opt(env, "SLACK_SIGNING_SECRET")
    if app_token is None and signing_secret is None:
        missing.append(
            f"SLACK_SIGNING_SECRET is not set: {_SLACK_APPS} -> Basic Information -> Signing "
            "Secret (or set SLACK_APP_TOKEN, xapp-…, to use Socket Mode instead)"
        )
    if not _opt(env, "OPENAI_API_KEY"):
        missing.append("OPENAI_API_KEY is not set: https://platform.openai.com/api-keys")
    if missing:
        raise ConfigError("\n".join(missing))

    bot_token = _need(env, "SLACK_BOT_TOKEN", "")
    if not bot_token.startswith("xoxb-"):
        raise ConfigError("SLACK_BOT_TOKEN must be a bot token starting with xoxb-")
    if app_token is not None and not app_token.startswith("xapp-"):
        raise ConfigError(
            "SLACK_APP_TOKEN must be an app-level token starting with xapp- "
            f"({_SLACK_APPS} -> Basic Information -> App-Level Tokens, scope connections:write)"
        )

    api_url = _opt(env, "SLACK_API_URL") or "https://slack.com/api/"
    if not re.match(r"^https?://", api_url):
        raise ConfigError(f"SLACK_API_URL must be an http(s) URL, got {api_url!r}")
    if not api_url.endswith("/"):
        api_url += "/"

    openai_key = _need(env, "OPENAI_API_KEY", "")
    base_url = _opt(env, "OPENAI_BASE_URL")
    if base_url is not None and not re.match(r"^https?://", base_url):
        raise ConfigError(f"OPENAI_BASE_URL must be an http(s) URL, got {base_url!r}")

    runtime = (_opt(env, "ASSISTANT_RUNTIME") or "responses").lower()
    if runtime not in RUNTIMES:
        raise ConfigError(
            f"ASSISTANT_RUNTIME must be one of {', '.join(RUNTIMES)}, got {runtime!r}"
        )

    database_url = _opt(env, "DATABASE_URL") or "sqlite:///tutorbot.db"
    if not re.match(r"^(sqlite|postgres|postgresql)://", database_url):
        raise ConfigError(
            "DATABASE_URL must look like sqlite:///tutorbot.db or postgresql://user@host/db"
        )

    port_raw = _opt(env, "PORT") or "3000"
    if not port_raw.isdigit() or not 0 < int(port_raw) < 65536:
        raise ConfigError(f"PORT must be a TCP port number, got {port_raw!r}")

    tools_raw = env.get("ASSISTANT_TOOLS")
    if tools_raw is None or not tools_raw.strip():
        tools: tuple[str, ...] = ("code_interpreter", "file_search", "display_quiz")
    elif tools_raw.strip().lower() == "none":
        tools = ()
    else:
        tools = tuple(t.strip().lower() for t in tools_raw.split(",") if t.strip())
        unknown = [t for t in tools if t not in TOOLS]
        if unknown:
            raise ConfigError(
                f"ASSISTANT_TOOLS has unknown tool {unknown[0]!r}; use a comma-separated "
                f"list of {', '.join(TOOLS)} (or none)"
            )

    command = _opt(env, "SLASH_COMMAND") or "/tutor"
    if not re.match(r"^/[a-z0-9_\-]{1,31}$", command):
        raise ConfigError(f"SLASH_COMMAND must look like /tutor, got {command!r}")

    log_level = (_opt(env, "LOG_LEVEL") or "INFO").upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}")

    return Settings(
        slack_bot_token=bot_token,
        slack_signing_secret=signing_secret,
        slack_app_token=app_token,
        slack_api_url=api_url,
        openai_api_key=openai_key,
        openai_base_url=base_url,
        openai_model=_opt(env, "OPENAI_MODEL") or "gpt-4o-mini",
        runtime=runtime,
        assistant_id=_opt(env, "OPENAI_ASSISTANT_ID"),
        instructions=_opt(env, "ASSISTANT_INSTRUCTIONS") or DEFAULT_INSTRUCTIONS,
        database_url=database_url,
        port=int(port_raw),
        tools=tools,
        slash_command=command,
        agentops_api_key=_opt(env, "AGENTOPS_API_KEY"),
        agentops_redact_content=_bool(env, "AGENTOPS_REDACT_CONTENT", False),
        log_level=log_level,
        run_timeout=_number(env, "RUN_TIMEOUT_SECONDS", 600.0, minimum=1),
        max_file_bytes=int(_number(env, "MAX_FILE_MB", 20.0, minimum=0.001) * 1024 * 1024),
        port_set=_opt(env, "PORT") is not None,
    )
