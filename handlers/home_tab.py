"""The app's Home tab: each student's own page, published when they open it
(``app_home_opened`` with ``tab: "home"``; the Messages tab is another listener's).

Register before ``handlers.events``, whose catch-all event listener would take it.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext

from bot.replies import SlackError
from bot.student_pages import StudentPages
from bot.tasks import BackgroundTasks
from handlers.agent_parsing import HomeTab, parse_app_home_opened
from handlers.parsing import team_of
from store.base import StoreError

log = logging.getLogger(__name__)


async def is_home_tab(event: dict[str, Any]) -> bool:
    return event.get("tab") == HomeTab.HOME


def register(app: AsyncApp, pages: StudentPages, tasks: BackgroundTasks) -> None:
    @app.event("app_home_opened", matchers=[is_home_tab])
    async def on_home_opened(
        event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        opened = parse_app_home_opened(event)
        if opened is None:
            log.warning("ignoring an app_home_opened without a usable user or channel")
            return
        team = team_of(body, event, context.team_id)
        tasks.spawn(publish(team, opened.user), name="home-tab")

    async def publish(team: str, user: str) -> None:
        try:
            await pages.publish_home(team, user)
        except StoreError as exc:  # the next open publishes it again
            log.warning("Home tab of %s not published: the store failed (%s)", user, exc)
        except SlackError as exc:
            log.warning("Home tab of %s not published: Slack refused it (%s)", user, exc)
