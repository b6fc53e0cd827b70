"""Configuration from the environment (and ``.env``), validated once at start.

A missing or malformed setting raises ``ConfigError`` with one line naming it and where to
get it; ``python -m bot`` prints that line and exits without a traceback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

DEFAULT_INSTRUCTIONS = (
    "You are a personal math tutor. Answer questions briefly, in a sentence or less. "
    "Write and run code to answer math questions when it helps. "
    "When you want to check the student's understanding, call display_quiz with a short "
    "quiz; after the answers come back, give feedback on each one."
)

RUNTIMES = ("responses", "assistants", "chat")
# chat runtime: the stored conversation sent with each request is trimmed to this estimate.
DEFAULT_CHAT_HISTORY_TOKENS = 12_000
TOOLS = ("code_interpreter", "file_search", "display_quiz")
DEFAULT_SLACK_API_URL = "https://slack.com/api/"


class ConfigError(Exception):
    """A setting is missing or malformed; each line of the message names one and says
    where to get it."""


@dataclass(frozen=True, slots=True)
class Settings:
    # Slack's settings: left empty (or default) for the console (``load_console_settings``).
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
    # None: stream, and poll instead if the server refuses; True/False: always/never stream.
    model_streaming: bool | None = None
    # In Socket Mode the HTTP server (GET /healthz) runs only when PORT is set explicitly.
    port_set: bool = False
    chat_history_tokens: int = DEFAULT_CHAT_HISTORY_TOKENS
    # Connections per process: the store uses up to the pool size; the overflow is
    # headroom for transactions and other users of the engine.
    database_pool_size: int = 5
    database_max_overflow: int = 5
    # Many workspaces (Slack's OAuth install flow) instead of ``slack_bot_token`` (then "").
    slack_client_id: str | None = None
    slack_client_secret: str | None = None
    slack_state_secret: str | None = None
    slack_redirect_uri: str | None = None

    @property
    def socket_mode(self) -> bool:
        return self.slack_app_token is not None

    @property
    def many_workspaces(self) -> bool:
        """Installed through ``/slack/install`` into any number of workspaces."""
        return self.slack_client_id is not None


def _need(env: Mapping[str, str], name: str, where: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is not set: {where}")
    return value


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    """The settings ``python -m bot migrate`` needs, and nothing else."""

    url: str
    pool_size: int
    max_overflow: int


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


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{name} must be a whole number above 0, got {raw!r}")
    return value


_SLACK_APPS = "https://api.slack.com/apps -> your app"
# Many workspaces: every one of these instead of SLACK_BOT_TOKEN, and where to get it.
OAUTH_SETTINGS = {
    "SLACK_CLIENT_ID": f"{_SLACK_APPS} -> Basic Information -> App Credentials -> Client ID",
    "SLACK_CLIENT_SECRET": (
        f"{_SLACK_APPS} -> Basic Information -> App Credentials -> Client Secret"
    ),
    "SLACK_STATE_SECRET": "any long random text of your own (e.g. openssl rand -hex 32)",
}
IN_MEMORY_DATABASES = ("sqlite://", "sqlite:///:memory:")


def _count(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < minimum:
        raise ConfigError(f"{name} must be a whole number of at least {minimum}, got {raw!r}")
    return int(raw)


def load_database_settings(env: Mapping[str, str] | None = None) -> DatabaseSettings:
    """``DATABASE_URL`` and the pool settings; raise ``ConfigError`` on a bad one."""
    env = os.environ if env is None else env
    url = _opt(env, "DATABASE_URL") or "sqlite:///tutorbot.db"
    if not re.match(r"^(sqlite|postgres|postgresql)://", url):
        raise ConfigError(
            "DATABASE_URL must look like sqlite:///tutorbot.db or postgresql://user@host/db"
        )
    return DatabaseSettings(
        url=url,
        pool_size=_count(env, "DATABASE_POOL_SIZE", 5, minimum=1),
        max_overflow=_count(env, "DATABASE_MAX_OVERFLOW", 5, minimum=0),
    )


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise ``ConfigError`` on the first bad one."""
    env = os.environ if env is None else env

    # One workspace (its bot token) or many (the OAuth install flow's credentials).
    oauth_given = [name for name in OAUTH_SETTINGS if _opt(env, name)]
    if oauth_given and _opt(env, "SLACK_BOT_TOKEN"):
        raise ConfigError(
            f"SLACK_BOT_TOKEN and {oauth_given[0]} are both set: keep SLACK_BOT_TOKEN for one "
            f"workspace, or {', '.join(OAUTH_SETTINGS)} to install the app in many"
        )

    # Report every missing credential at once: a newcomer fixes them in one go.
    missing = []
    if oauth_given:
        missing += [
            f"{name} is not set: {where}"
            for name, where in OAUTH_SETTINGS.items()
            if name not in oauth_given
        ]
    elif not _opt(env, "SLACK_BOT_TOKEN"):
        missing.append(
            "SLACK_BOT_TOKEN is not set: "
            f"{_SLACK_APPS} -> OAuth & Permissions -> Bot User OAuth Token (xoxb-…); to "
            f"install the app in many workspaces set {', '.join(OAUTH_SETTINGS)} instead"
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

    bot_token = "" if oauth_given else _need(env, "SLACK_BOT_TOKEN", "")
    if not oauth_given and not bot_token.startswith("xoxb-"):
        raise ConfigError("SLACK_BOT_TOKEN must be a bot token starting with xoxb-")
    redirect_uri = _opt(env, "SLACK_REDIRECT_URI")
    redirect_shape = r"^https?://\S+/slack/oauth_redirect$"
    if redirect_uri is not None and not re.match(redirect_shape, redirect_uri):
        raise ConfigError(
            "SLACK_REDIRECT_URI must be the bot's URL ending in /slack/oauth_redirect, "
            f"got {redirect_uri!r}"
        )
    if app_token is not None and not app_token.startswith("xapp-"):
        raise ConfigError(
            "SLACK_APP_TOKEN must be an app-level token starting with xapp- "
            f"({_SLACK_APPS} -> Basic Information -> App-Level Tokens, scope connections:write)"
        )

    api_url = _opt(env, "SLACK_API_URL") or DEFAULT_SLACK_API_URL
    if not re.match(r"^https?://", api_url):
        raise ConfigError(f"SLACK_API_URL must be an http(s) URL, got {api_url!r}")
    if not api_url.endswith("/"):
        api_url += "/"

    port_raw = _opt(env, "PORT") or "3000"
    if not port_raw.isdigit() or not 0 < int(port_raw) < 65536:
        raise ConfigError(f"PORT must be a TCP port number, got {port_raw!r}")

    command = _opt(env, "SLASH_COMMAND") or "/tutor"
    if not re.match(r"^/[a-z0-9_\-]{1,31}$", command):
        raise ConfigError(f"SLASH_COMMAND must look like /tutor, got {command!r}")

    core = _core_settings(env)
    if oauth_given and core.database_url.strip() in IN_MEMORY_DATABASES:
        raise ConfigError(
            f"DATABASE_URL {core.database_url} is in memory, and installations would be lost "
            "at every restart: use a file (sqlite:///tutorbot.db) or PostgreSQL"
        )
    return replace(
        core,
        slack_bot_token=bot_token,
        slack_signing_secret=signing_secret,
        slack_app_token=app_token,
        slack_api_url=api_url,
        port=int(port_raw),
        port_set=_opt(env, "PORT") is not None,
        slash_command=command,
        slack_client_id=_opt(env, "SLACK_CLIENT_ID"),
        slack_client_secret=_opt(env, "SLACK_CLIENT_SECRET"),
        slack_state_secret=_opt(env, "SLACK_STATE_SECRET"),
        slack_redirect_uri=redirect_uri if oauth_given else None,
    )


CONSOLE_NEEDS_KEY = (
    "set OPENAI_API_KEY to your key from https://platform.openai.com/api-keys "
    "(a local model server without keys takes any text: OPENAI_API_KEY=ollama "
    "ASSISTANT_RUNTIME=chat OPENAI_BASE_URL=http://localhost:11434/v1)"
)


def load_console_settings(env: Mapping[str, str] | None = None) -> Settings:
    """The settings of ``python -m bot console``: the model service's, the store's and the
    core's, parsed as for Slack; no Slack setting is needed (those fields stay empty)."""
    env = os.environ if env is None else env
    if not _opt(env, "OPENAI_API_KEY"):
        raise ConfigError(CONSOLE_NEEDS_KEY)
    return _core_settings(env)


def _core_settings(env: Mapping[str, str]) -> Settings:
    """Everything but Slack's settings (left empty for the caller to fill in)."""
    openai_key = _need(env, "OPENAI_API_KEY", "https://platform.openai.com/api-keys")
    base_url = _opt(env, "OPENAI_BASE_URL")
    if base_url is not None and not re.match(r"^https?://", base_url):
        raise ConfigError(f"OPENAI_BASE_URL must be an http(s) URL, got {base_url!r}")

    runtime = (_opt(env, "ASSISTANT_RUNTIME") or "responses").lower()
    if runtime not in RUNTIMES:
        raise ConfigError(
            f"ASSISTANT_RUNTIME must be one of {', '.join(RUNTIMES)}, got {runtime!r}"
        )

    database = load_database_settings(env)

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

    streaming_raw = (_opt(env, "MODEL_STREAMING") or "auto").lower()
    streaming_values = {"auto": None, "on": True, "true": True, "off": False, "false": False}
    if streaming_raw not in streaming_values:
        raise ConfigError(f"MODEL_STREAMING must be auto, on or off, got {streaming_raw!r}")

    log_level = (_opt(env, "LOG_LEVEL") or "INFO").upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}")

    return Settings(
        slack_bot_token="",
        slack_signing_secret=None,
        slack_app_token=None,
        slack_api_url=DEFAULT_SLACK_API_URL,
        openai_api_key=openai_key,
        openai_base_url=base_url,
        openai_model=_opt(env, "OPENAI_MODEL") or "gpt-4o-mini",
        runtime=runtime,
        assistant_id=_opt(env, "OPENAI_ASSISTANT_ID"),
        instructions=_opt(env, "ASSISTANT_INSTRUCTIONS") or DEFAULT_INSTRUCTIONS,
        database_url=database.url,
        port=3000,
        tools=tools,
        slash_command="/tutor",
        agentops_api_key=_opt(env, "AGENTOPS_API_KEY"),
        agentops_redact_content=_bool(env, "AGENTOPS_REDACT_CONTENT", False),
        log_level=log_level,
        run_timeout=_number(env, "RUN_TIMEOUT_SECONDS", 600.0, minimum=1),
        max_file_bytes=int(_number(env, "MAX_FILE_MB", 20.0, minimum=0.001) * 1024 * 1024),
        model_streaming=streaming_values[streaming_raw],
        chat_history_tokens=_positive_int(env, "CHAT_HISTORY_TOKENS", DEFAULT_CHAT_HISTORY_TOKENS),
        database_pool_size=database.pool_size,
        database_max_overflow=database.max_overflow,
    )
