"""``python -m bot migrate``: a release step that needs only DATABASE_URL, run twice."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from pathlib import Path

import pytest

from store.migrate import heads
from tests.databases import postgres_backend

ROOT = Path(__file__).resolve().parents[2]


async def _migrate(workdir: Path, database_url: str) -> tuple[int, str]:
    """``python -m bot migrate`` with no other setting (no Slack or OpenAI credentials)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "migrate",
        cwd=workdir,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(ROOT),
            "HOME": str(workdir),
            "DATABASE_URL": database_url,
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_migrate_creates_the_sqlite_schema_once(tmp_path: Path) -> None:
    code, output = await _migrate(tmp_path, "sqlite:///data/tutorbot.db")
    assert code == 0, output
    assert "migrated from nothing to" in output
    assert "Traceback" not in output

    code, again = await _migrate(tmp_path, "sqlite:///data/tutorbot.db")
    assert code == 0, again
    assert "migrated" not in again  # nothing left to do
    assert "up to date" in again

    with sqlite3.connect(tmp_path / "data" / "tutorbot.db") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        version = db.execute("SELECT version_num FROM alembic_version").fetchall()
    assert {"threads", "turns", "quizzes", "files", "settings"} <= tables
    assert version == [(heads()[0],)]


async def test_migrate_creates_the_postgres_schema_once(tmp_path: Path) -> None:
    async with postgres_backend("test_migrate") as database:
        code, output = await _migrate(tmp_path, database.url)
        assert code == 0, output
        assert "migrated from nothing to" in output
        code, again = await _migrate(tmp_path, database.url)
        assert code == 0, again
        assert "migrated" not in again
        assert await database.query("SELECT version_num FROM alembic_version") == [(heads()[0],)]
        assert await database.query("SELECT count(*) FROM threads") == [(0,)]


@pytest.mark.parametrize(
    "url", ["mysql://u@db/bot", "postgresql://root@127.0.0.1:1/nothing-listens-here"]
)
async def test_migrate_failures_are_one_line(tmp_path: Path, url: str) -> None:
    code, output = await _migrate(tmp_path, url)
    assert code in (1, 2)
    assert "Traceback" not in output
    assert "tutorbot:" in output
