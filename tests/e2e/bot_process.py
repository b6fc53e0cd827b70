"""The real bot as a subprocess (``python -m bot``), for tests that need a fresh interpreter.

agentops keeps process-wide state (tracer provider, client, atexit hooks), so the telemetry
tests run the bot exactly as production does: its own process, configured only through the
environment, stopped with SIGTERM. The fakes stay in the test's event loop.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import IO, Any

import aiohttp

from tests.fakes.slack_payloads import SlackSender, app_mention, next_ts
from tests.fakes.slack_server import FakeSlack

ROOT = Path(__file__).resolve().parents[2]
SIGNING_SECRET = "test-signing-secret"

# Runs the bot as ``python -m bot`` does and, when it exits, writes the names of the
# agentops / OpenTelemetry modules it had loaded to $TUTORBOT_MODULES_OUT.
_REPORT_MODULES = """
import atexit, os, runpy, sys
def _report():
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("agentops", "opentelemetry"))
    with open(os.environ["TUTORBOT_MODULES_OUT"], "w") as out:
        out.write("\\n".join(loaded))
atexit.register(_report)
runpy.run_module("bot", run_name="__main__", alter_sys=True)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class BotProcess:
    """``python -m bot`` in ``workdir`` with exactly the given settings (plus PATH/PYTHONPATH).

    stdout and stderr go to ``workdir/bot.log``. ``report_modules`` runs the bot through a
    wrapper that records which agentops/OpenTelemetry modules were ever loaded.
    """

    def __init__(
        self,
        workdir: Path,
        slack: FakeSlack,
        settings: dict[str, str],
        *,
        report_modules: bool = False,
    ) -> None:
        self.workdir = workdir
        self.slack = slack
        self.port = free_port()
        self.log_path = workdir / "bot.log"
        self.modules_path = workdir / "modules.txt"
        self.report_modules = report_modules
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "SLACK_BOT_TOKEN": slack.bot_token,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.api_url,
            "DATABASE_URL": f"sqlite:///{workdir / 'bot.db'}",
            "PORT": str(self.port),
            "LOG_LEVEL": "INFO",
            "RUN_TIMEOUT_SECONDS": "20",
            **settings,
        }
        if report_modules:
            self.env["TUTORBOT_MODULES_OUT"] = str(self.modules_path)
        self.sender = SlackSender(
            f"http://127.0.0.1:{self.port}/slack/events",
            SIGNING_SECRET,
            on_event=slack.add_message,
        )
        self.process: asyncio.subprocess.Process | None = None
        self.started_in: float | None = None
        self.stopped_in: float | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def loaded_modules(self) -> list[str]:
        """agentops/OpenTelemetry modules the bot had loaded when it exited (report_modules)."""
        return [line for line in self.modules_path.read_text().splitlines() if line]

    async def start(self, timeout: float = 20.0) -> BotProcess:
        """Spawn the bot and wait until GET /healthz answers."""
        self._log = self.log_path.open("wb")
        command = ["-c", _REPORT_MODULES] if self.report_modules else ["-m", "bot"]
        started = time.monotonic()
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            *command,
            cwd=self.workdir,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )
        deadline = started + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
            while True:
                if self.process.returncode is not None:
                    raise AssertionError(
                        f"the bot exited with {self.process.returncode}:\n{self.log}"
                    )
                try:
                    async with session.get(f"{self.url}/healthz") as resp:
                        if resp.status == 200:
                            break
                except (aiohttp.ClientError, TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"the bot did not listen within {timeout}s:\n{self.log}")
                await asyncio.sleep(0.05)
        self.started_in = time.monotonic() - started
        return self

    async def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until /healthz reports no thread being worked on (every turn has ended)."""
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while True:
                async with session.get(f"{self.url}/healthz") as resp:
                    if (await resp.json())["active_threads"] == 0:
                        return
                if time.monotonic() > deadline:
                    raise AssertionError(f"the bot was still busy after {timeout}s:\n{self.log}")
                await asyncio.sleep(0.02)

    async def stop(self, timeout: float = 10.0) -> float:
        """SIGTERM; returns the seconds until the process exited (killed after ``timeout``)."""
        process = self.process
        if process is None:
            return 0.0
        started = time.monotonic()
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                process.kill()
                await process.wait()
                raise AssertionError(
                    f"the bot did not exit within {timeout}s of SIGTERM:\n{self.log}"
                ) from None
        self.stopped_in = time.monotonic() - started
        if self._log is not None:
            self._log.close()
            self._log = None
        self.process = None
        assert process.returncode == 0, f"exit code {process.returncode}:\n{self.log}"
        return self.stopped_in

    async def kill(self) -> None:
        """Clean-up after a failed test: make sure the process is gone."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    # -- Slack ------------------------------------------------------------------------------

    async def mention(
        self, text: str, *, channel: str = "C1", user: str = "U1"
    ) -> tuple[dict[str, Any], float]:
        """Post an ``app_mention``; returns the event and the ack time in seconds."""
        event = app_mention(
            text=f"<@{self.slack.bot_user_id}> {text}", channel=channel, user=user, ts=next_ts()
        )
        result = await self.sender.post_event(event)
        assert result.status == 200, result.body
        return event, result.elapsed
