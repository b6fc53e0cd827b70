"""The console's output: answers as they stream in, whole lines for everything else, and one
transient status line ("tutorbot is thinking…") that the next output replaces.

It remembers whether the cursor is mid-line, so a line (a task step, a note, a log record)
never lands in the middle of streamed text. Styling and the transient line need a terminal;
piped output gets plain text and no status.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import TextIO

_STYLES = {"dim": "\x1b[2m", "bold": "\x1b[1m"}
_RESET = "\x1b[0m"
_ERASE_LINE = "\r\x1b[2K"


class Screen:
    def __init__(self, out: TextIO, *, styled: bool) -> None:
        self._out = out
        self._styled = styled
        self._lock = threading.Lock()  # log records may come from other threads
        self._at_line_start = True
        self._status = False  # a transient status line is on screen
        self._spoken = False  # something was printed since the last prompt

    @classmethod
    def for_stdout(cls) -> Screen:
        styled = (
            sys.stdout.isatty()
            and "NO_COLOR" not in os.environ
            and os.environ.get("TERM", "") != "dumb"
        )
        return cls(sys.stdout, styled=styled)

    def style(self, text: str, style: str) -> str:
        if not self._styled or style not in _STYLES or not text:
            return text
        return f"{_STYLES[style]}{text}{_RESET}"

    # -- output ----------------------------------------------------------------------------

    def begin(self) -> None:
        """A new message starts: on a line of its own, a blank line after the previous one."""
        with self._lock:
            self._unstatus()
            if self._spoken:
                self._newline()
                self._put("\n")
                self._at_line_start = True

    def write(self, text: str) -> None:
        """Streamed text, exactly where the previous text ended."""
        if not text:
            return
        with self._lock:
            self._unstatus()
            self._put(text)
            self._at_line_start = text.endswith("\n")
            self._spoken = True

    def line(self, text: str, style: str = "") -> None:
        """A whole line, never inside streamed text."""
        with self._lock:
            self._unstatus()
            self._newline()
            self._put(self.style(text, style) + "\n")
            self._at_line_start = True
            self._spoken = True

    def status(self, text: str) -> None:
        """Show (or replace) the transient status line; skipped mid-line and when piped."""
        with self._lock:
            if not self._styled or not (self._at_line_start or self._status):
                return
            self._put(_ERASE_LINE + self.style(text, "dim"))
            self._status = True

    def clear_status(self) -> None:
        with self._lock:
            self._unstatus()

    def prompt(self, text: str, *, gap: bool = True) -> None:
        """Ask for a line: the typed line and its Enter follow the prompt. ``gap``: a blank
        line between what was said and the prompt."""
        with self._lock:
            self._unstatus()
            self._newline()
            if gap and self._spoken:
                self._put("\n")
            self._put(self.style(text, "bold"))
            self._at_line_start = False
            self._spoken = False

    def typed(self, shown: str | None = None) -> None:
        """A line was entered at the prompt. A terminal echoed it, Enter included; piped
        input is ``shown`` here, so the output reads the same."""
        with self._lock:
            if shown is not None:
                self._put(shown + "\n")
            self._at_line_start = True

    def finish(self) -> None:
        """Leave the terminal on a fresh line (on the way out)."""
        with self._lock:
            self._unstatus()
            self._newline()

    # -- internals ---------------------------------------------------------------------------

    def _unstatus(self) -> None:
        if self._status:
            self._put(_ERASE_LINE)
            self._status = False

    def _newline(self) -> None:
        if not self._at_line_start:
            self._put("\n")
            self._at_line_start = True

    def _put(self, text: str) -> None:
        try:
            self._out.write(text)
            self._out.flush()
        except (OSError, ValueError):
            pass  # the terminal went away (closed window, closed pipe): nothing to show on


class ScreenLog(logging.Handler):
    """Log records as dim lines on the screen, never inside an answer being written."""

    def __init__(self, screen: Screen, level: int = logging.WARNING) -> None:
        super().__init__(level)
        self._screen = screen

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        self._screen.line(f"tutorbot: {record.levelname.lower()}: {message}", "dim")
