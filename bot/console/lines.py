"""Lines typed at the terminal, awaited without blocking the event loop.

A daemon thread reads the raw file descriptor and hands whole lines to the loop. Not
``input()`` in an executor: asyncio waits for its executor's threads at exit, so a read
still waiting would hang Ctrl-C; and not ``sys.stdin`` in a daemon thread: a thread blocked
inside a buffered read holds its lock, and Python aborts if that lock is needed at shutdown.
"""

from __future__ import annotations

import asyncio
import codecs
import os
import threading


class LineReader:
    def __init__(self, fd: int) -> None:
        self._fd = fd
        # A terminal shows what is typed; piped input is not shown unless echoed.
        self.echoes = os.isatty(fd)
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ended = False

    def start(self) -> None:
        """Start reading (from inside the running loop)."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._read_all, name="console-input", daemon=True)
        self._thread.start()

    async def read(self) -> str | None:
        """The next line, without its newline; None once the input has ended (Ctrl-D)."""
        if self._ended:
            return None
        line = await self._queue.get()
        if line is None:
            self._ended = True
        return line

    def _read_all(self) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""
        while True:
            try:
                data = os.read(self._fd, 4096)
            except OSError:  # the terminal is gone
                data = b""
            if not data:
                pending += decoder.decode(b"", final=True)
                if pending and not self._hand_over(pending):
                    return
                self._hand_over(None)
                return
            pending += decoder.decode(data)
            while "\n" in pending:
                line, pending = pending.split("\n", 1)
                if not self._hand_over(line.rstrip("\r")):
                    return

    def _hand_over(self, line: str | None) -> bool:
        """Give a line to the loop; False once the loop is gone (the console is closing)."""
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, line)
        except RuntimeError:
            return False
        return True
