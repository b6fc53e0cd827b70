"""Observability for turns: AgentOps when an API key is set, nothing at all otherwise.

Without a key neither agentops nor OpenTelemetry is imported: no hooks, no threads, no
files. With one, see ``agentops_telemetry`` for what is sent and how.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from bot.telemetry.base import NoopTelemetry, NoopTurnTrace, Outcome, Telemetry, TurnTrace

__all__ = [
    "DEFAULT_TAGS",
    "NoopTelemetry",
    "NoopTurnTrace",
    "Outcome",
    "Telemetry",
    "TurnTrace",
    "create_telemetry",
]

log = logging.getLogger("bot.telemetry")

DEFAULT_TAGS: tuple[str, ...] = ("openai", "beta-assistants")


def create_telemetry(
    *,
    api_key: str | None,
    tags: Sequence[str] = DEFAULT_TAGS,
    redact_content: bool = False,
) -> Telemetry:
    """The telemetry for this process; call once, at startup (importing agentops takes ~1 s).

    ``tags`` go on every turn's trace, with ``runtime:…``, ``team:…`` and ``channel:…``.
    ``redact_content`` keeps message text out of every span. If agentops cannot start,
    one warning is logged and the bot runs without telemetry.
    """
    if not api_key:
        return NoopTelemetry()
    # agentops writes ./agentops.log (and fails if it cannot) unless told not to.
    os.environ.setdefault("AGENTOPS_LOGGING_TO_FILE", "false")
    try:
        from bot.telemetry.agentops_telemetry import start_agentops_telemetry

        return start_agentops_telemetry(api_key=api_key, tags=tags, redact_content=redact_content)
    except Exception as error:
        reason = f"{type(error).__name__}: {error}".replace(api_key, "***")
        log.warning("AgentOps telemetry is off, it could not start: %s", reason)
        return NoopTelemetry()
