"""``python -m bot``: read the settings, then serve (Socket Mode or HTTP) until stopped.

``python -m bot console [--new]`` chats with the tutor in the terminal instead (no Slack).
``python -m bot migrate`` applies the database migrations and exits; it needs only
``DATABASE_URL`` (a release step, before the new version serves).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence

from dotenv import load_dotenv

from bot.config import ConfigError, load_database_settings, load_settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    load_dotenv(override=False)
    if args[:1] == ["console"]:
        from bot.console.app import main as console

        return console(args[1:])
    if args == ["migrate"]:
        return migrate()
    if args:
        print(
            f"tutorbot: unknown command {' '.join(args)!r} (try: console, migrate)",
            file=sys.stderr,
        )
        return 2
    try:
        settings = load_settings()
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(f"tutorbot: {line}", file=sys.stderr)
        print("tutorbot: see .env.example and the README for every setting.", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format=LOG_FORMAT)
    # Request-level chatter from the HTTP clients would log URLs at INFO; keep it quiet.
    for noisy in ("httpx", "httpx2", "openai", "slack_bolt", "slack_sdk", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    from bot.app import run

    try:
        asyncio.run(run(settings))
    except KeyboardInterrupt:
        pass
    return 0


def migrate() -> int:
    """Apply pending migrations to ``DATABASE_URL`` and exit: 0 done, 1 failed, 2 bad URL."""
    try:
        database = load_database_settings()
    except ConfigError as exc:
        print(f"tutorbot: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # store.migrate says what it did
    from store import Pool, StoreError, open_store

    async def apply() -> None:
        store = open_store(database.url, pool=Pool(size=1, max_overflow=0))
        await store.open()  # connects and migrates, under the migration lock
        await store.close()

    try:
        asyncio.run(apply())
    except (StoreError, ValueError) as exc:
        print(f"tutorbot: migration failed: {exc}", file=sys.stderr)
        return 1
    print("tutorbot: the database is up to date", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
