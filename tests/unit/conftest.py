"""Fixtures for the store tests: ``backend`` runs a test once on SQLite, once on PostgreSQL;
``store`` is an open store on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from store import Store
from tests.databases import Backend, postgres_backend, sqlite_backend


@pytest.fixture(params=["sqlite", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        yield sqlite_backend(tmp_path / "data" / "tutorbot.db")
        return
    async with postgres_backend("test_store") as database:
        yield database


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    opened = backend.make()
    await opened.open()
    yield opened
    await opened.close()
