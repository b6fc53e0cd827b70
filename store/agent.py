"""What the agent app keeps around a conversation: students already greeted in the Messages
tab, what each was viewing when they opened the tutor, and Stop requests.

A mixin of ``SqlStore`` (it runs these through the store's own connections and errors);
the statements are built once per dialect, like ``store.statements``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from bot.domain import Turn
from store._rows import turn_from_row
from store.base import ViewedChannel
from store.dialects import Database, db_now, insert_for
from store.schema import agent_greetings, turns, viewing_contexts
from store.statements import IN_FLIGHT

_b = sa.bindparam
WHOLE_DM = ""  # ``viewing_contexts.thread_ts`` for a context that holds for a whole DM


@dataclass(frozen=True, slots=True)
class AgentStatements:
    greet: sa.Insert
    forget_greeting: sa.Delete
    set_context: sa.Insert
    name_context: sa.Update
    contexts: sa.Select[Any]
    request_stop: sa.Update
    stop_requested: sa.Select[Any]


@functools.cache
def agent_statements(dialect: str) -> AgentStatements:
    insert = insert_for(dialect)
    greet = insert(agent_greetings).values(
        team=_b("p_team"), user_id=_b("p_user_id"), greeted_at=db_now()
    )
    set_context = insert(viewing_contexts).values(
        team=_b("p_team"),
        channel=_b("p_channel"),
        thread_ts=_b("p_thread_ts"),
        viewed_channel=_b("p_viewed_channel"),
        viewed_name=_b("p_viewed_name"),
        updated_at=db_now(),
    )
    return AgentStatements(
        greet=greet.on_conflict_do_nothing(index_elements=["team", "user_id"]).returning(
            agent_greetings.c.user_id
        ),
        forget_greeting=sa.delete(agent_greetings).where(
            agent_greetings.c.team == _b("p_team"), agent_greetings.c.user_id == _b("p_user_id")
        ),
        set_context=set_context.on_conflict_do_update(
            index_elements=["team", "channel", "thread_ts"],
            set_={
                "viewed_channel": set_context.excluded.viewed_channel,
                "viewed_name": set_context.excluded.viewed_name,
                "updated_at": set_context.excluded.updated_at,
            },
        ),
        name_context=sa.update(viewing_contexts)
        .where(
            viewing_contexts.c.team == _b("p_team"),
            viewing_contexts.c.channel == _b("p_channel"),
            viewing_contexts.c.thread_ts == _b("p_thread_ts"),
            viewing_contexts.c.viewed_channel == _b("p_viewed_channel"),
        )
        .values(viewed_name=_b("p_viewed_name")),
        # The thread's own context and the DM's; the caller prefers the thread's.
        contexts=sa.select(
            viewing_contexts.c.thread_ts,
            viewing_contexts.c.viewed_channel,
            viewing_contexts.c.viewed_name,
        ).where(
            viewing_contexts.c.team == _b("p_team"),
            viewing_contexts.c.channel == _b("p_channel"),
            viewing_contexts.c.thread_ts.in_((_b("p_thread_ts"), WHOLE_DM)),
        ),
        request_stop=sa.update(turns)
        .where(
            turns.c.thread_id == _b("p_thread_id"),
            turns.c.status.in_(IN_FLIGHT),
            turns.c.stop_requested_at.is_(None),
        )
        .values(stop_requested_at=db_now())
        .returning(*turns.c),
        stop_requested=sa.select(turns.c.stop_requested_at).where(turns.c.id == _b("p_turn_id")),
    )


class AgentRecords:
    """``SqlStore``'s agent-app operations (each one statement, its own transaction)."""

    if TYPE_CHECKING:  # provided by SqlStore

        @property
        def database(self) -> Database: ...

        async def _read(
            self, action: str, statement: sa.Executable, params: Mapping[str, Any]
        ) -> Sequence[sa.Row[Any]]: ...

        async def _write(
            self, action: str, statement: sa.Executable, params: Mapping[str, Any]
        ) -> Sequence[sa.Row[Any]]: ...

    def _agent_sql(self) -> AgentStatements:
        return agent_statements(self.database.dialect)

    async def greet_once(self, team: str, user_id: str) -> bool:
        """True the first time a student is greeted in ``team`` (later opens: False)."""
        rows = await self._write(
            "greet_once", self._agent_sql().greet, {"p_team": team, "p_user_id": user_id}
        )
        return bool(rows)

    async def forget_greeting(self, team: str, user_id: str) -> None:
        """The greeting did not reach the student: greet them on their next open."""
        await self._write(
            "forget_greeting",
            self._agent_sql().forget_greeting,
            {"p_team": team, "p_user_id": user_id},
        )

    async def set_viewing_context(
        self, team: str, channel: str, thread_ts: str, viewed: ViewedChannel
    ) -> None:
        """What the student views now, for one thread (or a whole DM: ``thread_ts`` "")."""
        await self._write(
            "set_viewing_context",
            self._agent_sql().set_context,
            {
                "p_team": team,
                "p_channel": channel,
                "p_thread_ts": thread_ts,
                "p_viewed_channel": viewed.channel,
                "p_viewed_name": viewed.name,
            },
        )

    async def name_viewing_context(
        self, team: str, channel: str, thread_ts: str, viewed: ViewedChannel
    ) -> None:
        """Add the name of the channel viewed, if the student still views that one."""
        await self._write(
            "name_viewing_context",
            self._agent_sql().name_context,
            {
                "p_team": team,
                "p_channel": channel,
                "p_thread_ts": thread_ts,
                "p_viewed_channel": viewed.channel,
                "p_viewed_name": viewed.name,
            },
        )

    async def viewing_context(
        self, team: str, channel: str, thread_ts: str
    ) -> ViewedChannel | None:
        """The thread's own context, else its DM's; None when the student shared none."""
        rows = await self._read(
            "viewing_context",
            self._agent_sql().contexts,
            {"p_team": team, "p_channel": channel, "p_thread_ts": thread_ts},
        )
        best = sorted(rows, key=lambda row: row.thread_ts == WHOLE_DM)
        if not best:
            return None
        return ViewedChannel(best[0].viewed_channel, best[0].viewed_name)

    async def request_stop(self, thread_id: int) -> list[Turn]:
        """Mark the thread's turns in flight as stopped by the student; returns those
        newly marked (with their run ids, for cancelling at the model service)."""
        rows = await self._write(
            "request_stop", self._agent_sql().request_stop, {"p_thread_id": thread_id}
        )
        return [turn_from_row(row) for row in rows]

    async def stop_requested(self, turn_id: int) -> bool:
        rows = await self._read(
            "stop_requested", self._agent_sql().stop_requested, {"p_turn_id": turn_id}
        )
        return bool(rows) and rows[0].stop_requested_at is not None
