"""``python -m bot console`` in a pseudo-terminal, driven as a person at a keyboard would.

The child gets the pty's slave end as stdin, stdout and stderr and, as a session leader
that opens it, as its controlling terminal: the line discipline echoes what is typed, turns
Enter into a newline, Ctrl-D at the start of a line into end-of-input and Ctrl-C into
SIGINT, exactly as in a real terminal. The test reads the master end without blocking its
event loop (the fakes run in that loop).
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Opening the terminal makes it the session's controlling terminal (Linux, BSDs); then run
# the bot exactly as ``python -m bot`` does.
_WRAPPER = """
import os, runpy, sys
os.close(os.open(os.ttyname(0), os.O_RDWR))
runpy.run_module("bot", run_name="__main__", alter_sys=True)
"""
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class ConsoleProcess:
    def __init__(self, workdir: Path, env: dict[str, str], *args: str) -> None:
        self.workdir = workdir
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(ROOT),
            "PYTHONIOENCODING": "utf-8",
            "HOME": str(workdir),
            "TERM": "xterm",
            **env,
        }
        self.args = args
        self.raw = b""
        self._seen = 0  # ``expect`` looks after this position of ``text``
        self._master: int | None = None
        self._changed = asyncio.Event()
        self._closed = False
        self.process: asyncio.subprocess.Process | None = None

    @property
    def text(self) -> str:
        """Everything the terminal showed, styles and carriage returns removed."""
        shown = self.raw.decode("utf-8", errors="replace")
        return _ANSI.sub("", shown).replace("\r", "")

    async def start(self) -> ConsoleProcess:
        master, slave = os.openpty()
        self._master = master
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                _WRAPPER,
                "console",
                *self.args,
                cwd=self.workdir,
                env=self.env,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                start_new_session=True,
            )
        finally:
            os.close(slave)
        asyncio.get_running_loop().add_reader(master, self._on_output)
        return self

    def _on_output(self) -> None:
        assert self._master is not None
        try:
            data = os.read(self._master, 65536)
        except OSError:  # EIO: every slave end is closed (the console exited)
            data = b""
        if data:
            self.raw += data
        else:
            self._stop_reading()
        self._changed.set()

    def _stop_reading(self) -> None:
        if not self._closed and self._master is not None:
            asyncio.get_running_loop().remove_reader(self._master)
            self._closed = True

    async def expect(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """Wait until ``pattern`` (a regex) shows after what earlier expects matched."""
        regex = re.compile(pattern)

        async def found() -> re.Match[str]:
            while True:
                match = regex.search(self.text, self._seen)
                if match:
                    self._seen = match.end()
                    return match
                if self._closed:
                    raise AssertionError(f"console ended without {pattern!r}:\n{self.text}")
                self._changed.clear()
                await self._changed.wait()

        try:
            return await asyncio.wait_for(found(), timeout)
        except TimeoutError:
            raise AssertionError(f"no {pattern!r} within {timeout}s:\n{self.text}") from None

    def type(self, line: str) -> None:
        """Type a line and press Enter."""
        self._key(line.encode() + b"\r")

    def ctrl_c(self) -> None:
        self._key(b"\x03")

    def ctrl_d(self) -> None:
        self._key(b"\x04")

    def _key(self, data: bytes) -> None:
        assert self._master is not None
        os.write(self._master, data)

    async def wait(self, timeout: float = 20.0) -> int:
        """The exit code, once the console has exited and all its output was read."""
        assert self.process is not None
        try:
            code = await asyncio.wait_for(self.process.wait(), timeout)
            while not self._closed:
                self._changed.clear()
                await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"the console did not exit:\n{self.text}") from None
        return code

    async def close(self) -> None:
        """Kill the console if it still runs; release the terminal."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        self._stop_reading()
        if self._master is not None:
            os.close(self._master)
            self._master = None
