"""``python -m bot``: read the settings, then serve (Socket Mode or HTTP) until stopped."""

from __future__ import annotations

import asyncio
import logging
import sys

from dotenv import load_dotenv

from bot.config import ConfigError, load_settings


def main() -> int:
    load_dotenv(override=False)
    try:
        settings = load_settings()
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(f"tutorbot: {line}", file=sys.stderr)
        print("tutorbot: see .env.example and the README for every setting.", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Request-level chatter from the HTTP clients would log URLs at INFO; keep it quiet.
    for noisy in ("httpx", "httpx2", "openai", "slack_bolt", "slack_sdk"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    from bot.app import run

    try:
        asyncio.run(run(settings))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
