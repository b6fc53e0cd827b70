"""Recording arriving messages as turns, many to a transaction (group commit).

Slack is acknowledged only once a message is durably recorded, so a burst of deliveries
would otherwise queue one transaction each behind the database's write lock. Here each
delivery waits for the next batch: while one transaction is being written, the messages
that arrive meanwhile gather for the one after it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from store.base import NewMessage, Recorded, Store

log = logging.getLogger(__name__)

MAX_BATCH = 200


class Intake:
    def __init__(self, store: Store, *, max_batch: int = MAX_BATCH) -> None:
        self._store = store
        self._max_batch = max_batch
        self._waiting: list[tuple[NewMessage, asyncio.Future[Recorded]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def record(self, message: NewMessage) -> Recorded:
        """Record ``message`` (with the others arriving now); raises ``StoreError``."""
        future: asyncio.Future[Recorded] = asyncio.get_running_loop().create_future()
        self._waiting.append((message, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write(), name="intake")
        return await future

    async def _write(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = (
                    self._waiting[: self._max_batch],
                    self._waiting[self._max_batch :],
                )
                await self._write_batch(batch)
        finally:
            self._writer = None

    async def _write_batch(
        self, batch: Sequence[tuple[NewMessage, asyncio.Future[Recorded]]]
    ) -> None:
        try:
            recorded = await self._store.record_messages([m for m, _ in batch])
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), result in zip(batch, recorded, strict=True):
            if not future.done():
                future.set_result(result)

    async def close(self) -> None:
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
