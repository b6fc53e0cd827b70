"""One turn's answer, put into Slack as the model writes it.

Each message of an answer picks how it appears from the workspace's budget (see
``budget``): a native stream (``chat.startStream`` / ``appendStream`` / ``stopStream``,
with the run's tool steps as ``task_update`` chunks), else one message edited with
``chat.update``, else one post once the answer is complete. Text is coalesced: the first
words go out ~0.1 s after the model's first token, then at most two appends a second (an
edit every 1.5 s). A long answer rolls over to a new message before Slack's limits, code
fences closed and reopened.

Nothing is lost and nothing doubled when Slack misbehaves: a stream Slack closed (after
~5 minutes, or stopped by the student) is finished with ``chat.update`` and the answer
goes on in a new message; a call that may have taken effect (a dropped connection) is never
repeated blindly — the message is stopped and rewritten whole with ``chat.update``; a
channel that refuses streams gets an edited message. When Slack cannot be reached at all,
``finish`` keeps trying (``SlackUnavailable`` once its deadline passes).

``Progress`` is what a restarted process needs to carry on: the message being written,
its text and the model-side position it reflects. A resumed writer rewrites that message
whole before going on, so what Slack showed past the last checkpoint is neither lost nor
repeated.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bot.domain import ThreadKey
from bot.rendering._live import LiveText, open_fence, roll_over
from bot.replies import SlackError
from bot.runtime.base import StepKind, StepState, StepUpdate, TextDelta
from bot.slack.budget import SlackBudget
from bot.slack.surface import Surface

log = logging.getLogger(__name__)

FIRST_FLUSH = 0.1  # gather the first words this long after the first token
APPEND_EVERY = 0.5  # at most two appends a second per message
EDIT_EVERY = 1.5  # chat.update is Tier 3
CHECKPOINT_EVERY = 2.0
MESSAGE_LIMIT = 10_000  # characters per message (Slack: 12,000 per call and per update)
OFFLINE_RETRY = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)

# Slack will not stream here: fall back to an edited message.
STREAM_REFUSED = frozenset(
    {
        "channel_type_not_supported",
        "not_allowed",
        "feature_not_enabled",
        "unknown_method",
        "method_deprecated",
        "missing_scope",
        "not_allowed_token_type",
        "invalid_arguments",
        "missing_recipient_user_id",
        "missing_recipient_team_id",
        "team_not_found",
        "user_not_found",
    }
)
# Slack closed the stream: finish the message with chat.update, go on in a new one.
STREAM_CLOSED = frozenset(
    {"message_not_in_streaming_state", "stopped_by_user", "streaming_state_conflict"}
)

_TASK_TITLES = {
    (StepKind.CODE, StepState.WRITING): ("Writing code", "in_progress"),
    (StepKind.CODE, StepState.RUNNING): ("Running code", "in_progress"),
    (StepKind.CODE, StepState.DONE): ("Ran code", "complete"),
    (StepKind.CODE, StepState.FAILED): ("Running code", "error"),
    (StepKind.FILE_SEARCH, StepState.WRITING): ("Reading your file", "in_progress"),
    (StepKind.FILE_SEARCH, StepState.RUNNING): ("Reading your file", "in_progress"),
    (StepKind.FILE_SEARCH, StepState.DONE): ("Read your file", "complete"),
    (StepKind.FILE_SEARCH, StepState.FAILED): ("Reading your file", "error"),
    (StepKind.QUIZ, StepState.WRITING): ("Preparing a quiz", "in_progress"),
    (StepKind.QUIZ, StepState.RUNNING): ("Preparing a quiz", "in_progress"),
    (StepKind.QUIZ, StepState.DONE): ("Prepared a quiz", "complete"),
    (StepKind.QUIZ, StepState.FAILED): ("Preparing a quiz", "error"),
}
_OUTCOMES = {"complete": "Done", "error": "It failed"}


class SlackUnavailable(Exception):
    """Slack could not be reached before the deadline; the answer is still in hand."""


def task_chunk(update: StepUpdate) -> dict[str, Any]:
    """A run step as a ``task_update`` chunk of the answer's timeline."""
    title, status = _TASK_TITLES[(update.kind, update.state)]
    chunk: dict[str, Any] = {
        "type": "task_update",
        "id": update.step_id[:64],
        "title": title,
        "status": status,
    }
    if status in _OUTCOMES:
        chunk["output"] = _OUTCOMES[status]
    return chunk


def _text_chunk(text: str) -> dict[str, Any]:
    return {"type": "markdown_text", "text": text}


@dataclass(slots=True)
class Progress:
    """Where an answer stands in Slack, kept with the turn (see the module docstring)."""

    ts: str | None = None  # the message being written
    mode: str = ""  # "stream" | "edit" | "post"
    text: str = ""  # that message's text, up to ``cursor``
    cursor: int | None = None  # model-side position the text reflects
    raw: int = 0  # raw model characters taken in (resuming runs that have no cursor)
    parts: int = 0  # messages of this answer finished before this one
    done: bool = False  # the answer is complete in Slack
    posted: list[str] = field(default_factory=list)  # extras posted after it ("work", …)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | None) -> Progress:
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
            return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        except (ValueError, TypeError):
            return cls()


class AnswerWriter:
    """Writes one answer. Feed it with ``text``/``step`` (cheap, never blocks), then end it
    with ``finish``, ``pause`` (a quiz follows) or ``close`` (stopped, failed)."""

    def __init__(
        self,
        replies: Surface,
        budget: SlackBudget,
        *,
        key: ThreadKey,
        recipient_user: str | None,
        after_ts: str,
        on_progress: Callable[[Progress], Awaitable[None]],
        on_first_reply: Callable[[], None] | None = None,
        progress: Progress | None = None,
        may_write: Callable[[], bool] | None = None,
        metadata: dict[str, Any] | None = None,
        look_first: bool = False,
        on_stopped_by_user: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._replies = replies
        # Slack said the student stopped the stream (``stopped_by_user``): the turn stops.
        self._on_stopped_by_user = on_stopped_by_user
        # False while this process's hold on the thread is in doubt: writes wait (as if
        # Slack were unreachable) rather than race another process that may take over.
        self._may_write = may_write
        # Slack message metadata naming the turn, on every message of the answer; a turn
        # resumed after a crash looks for it before posting (``look_first``), so a reply
        # posted but not recorded is taken up, not posted again.
        self._metadata = metadata
        self._look_first = look_first
        self._budget = budget
        self._key = key
        self._recipient = recipient_user
        self._after_ts = after_ts  # the student's message this answers
        self._on_progress = on_progress
        self._on_first_reply = on_first_reply
        self._clock = clock
        self.progress = progress or Progress()
        self._live = LiveText()
        self._live.raw_chars = self.progress.raw
        self._pending = ""  # cleaned text not sent yet
        # While a full message is being ended: the start of the next one, and the text that
        # arrives meanwhile after it (``_roll_over``).
        self._rolling: str | None = None
        self._tasks: dict[str, StepUpdate] = {}  # task updates not sent yet
        self._tasks_sent: dict[str, StepUpdate] = {}  # ...and those in the call under way
        self._stream_ok = True
        # A resumed message may show more than its checkpoint says: rewrite it whole first.
        self._rewrite = bool(self.progress.ts) and not self.progress.done
        # Runs that resume without a cursor replay their text: skip what was taken in.
        self._skip_raw = self.progress.raw if self.progress.cursor is None else 0
        self._first_at: float | None = None
        self._last_flush = 0.0
        self._last_checkpoint = 0.0
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._unreachable_until = 0.0
        self._ending = False  # the answer's last flush is under way
        self.closed = False
        self.stopped_by_user = False

    @property
    def has_text(self) -> bool:
        """Whether the student has seen (or will see) any of the answer."""
        return bool(self.progress.parts or self.progress.ts or self._pending.strip())

    # -- feeding ---------------------------------------------------------------------------

    def text(self, delta: TextDelta) -> None:
        text = delta.text
        if self._skip_raw:
            skipped = min(self._skip_raw, len(text))
            self._skip_raw -= skipped
            text = text[skipped:]
        if text:
            cleaned = self._live.feed(text, message=delta.message)
            if self._rolling is not None:
                self._rolling += cleaned  # it follows the next message's start
            else:
                self._pending += cleaned
        if delta.cursor is not None:
            self.progress.cursor = delta.cursor
        self._kick()

    def step(self, update: StepUpdate) -> None:
        if update.cursor is not None:
            self.progress.cursor = update.cursor
        if update.kind is StepKind.QUIZ:
            return  # the quiz itself is the next message: no card saying it is coming
        self._tasks[update.step_id] = update
        self._kick()

    def _kick(self) -> None:
        if self.closed:
            return
        if self._first_at is None:
            self._first_at = self._clock()
        self._wake.set()
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_loop(), name="answer-flusher")

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            delay = self._delay()
            if delay > 0:
                await asyncio.sleep(delay)
            async with self._lock:
                try:
                    await self._flush(final=False)
                except SlackUnavailable:
                    pass  # the end of the answer keeps trying
                except SlackError as exc:
                    log.warning("streaming an answer to %s: %s", self._key, exc)
                except Exception:
                    log.exception("streaming an answer to %s failed", self._key)

    def _delay(self) -> float:
        now = self._clock()
        if now < self._unreachable_until:
            return self._unreachable_until - now
        if self.progress.ts is None and self._first_at is not None:
            return max(0.0, self._first_at + FIRST_FLUSH - now)
        every = APPEND_EVERY if self.progress.mode == "stream" else EDIT_EVERY
        return max(0.0, self._last_flush + every - now)

    async def _stop_flusher(self) -> None:
        if self._flusher is not None:
            # Under the lock: a flush in flight (its text taken, its call under way) ends
            # first; cancelled mid-call, its text would be lost.
            async with self._lock:
                self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
            self._flusher = None

    # -- ending ----------------------------------------------------------------------------

    async def finish(
        self,
        *,
        footer: str = "",
        blocks: Sequence[dict[str, Any]] | None = None,
        fallback: str = "",
        deadline: float = 900.0,
    ) -> None:
        """The answer is complete: show all of it, then ``footer`` (e.g. the sources) and
        ``blocks`` (feedback buttons) under it; ``fallback`` when the model wrote nothing.
        Keeps trying while Slack is unreachable, up to ``deadline`` seconds."""
        await self._stop_flusher()
        self._pending += self._live.flush()
        if footer:
            self._pending += ("\n\n" if (self._pending or self.progress.text) else "") + footer
        if not self.has_text and fallback:
            self._pending = fallback
        await self._end(blocks=blocks, deadline=deadline)
        self.closed = True

    async def pause(self, *, deadline: float = 900.0) -> None:
        """A quiz comes next: end the message with what was said so far (if anything)."""
        await self._stop_flusher()
        self._pending += self._live.flush()
        self._tasks.clear()
        if self.progress.ts is not None or self._pending.strip():
            await self._end(blocks=None, deadline=deadline)

    async def close(self, *, deadline: float = 60.0) -> None:
        """Stopped or failed: end the message with what was said; nothing more is sent."""
        await self._stop_flusher()
        self.closed = True
        self._pending += self._live.flush()
        if self.progress.ts is None and not self._pending.strip():
            return
        try:
            await self._end(blocks=None, deadline=deadline)
        except SlackUnavailable:
            log.warning("could not close the answer in %s: Slack unreachable", self._key)

    async def halt(self) -> None:
        """The student pressed Stop: the answer ends with what they saw. Text not yet
        sent is dropped; a stream Slack has not stopped itself is stopped, with nothing
        added."""
        await self._stop_flusher()
        self.closed = True
        self._pending, self._tasks = "", {}
        ts = self.progress.ts
        if ts is not None and self.progress.mode == "stream" and not self.stopped_by_user:
            await self._quietly_stop(ts)

    def _stopped_by_user(self) -> None:
        self.stopped_by_user = True
        if self._on_stopped_by_user is not None:
            self._on_stopped_by_user()

    async def abandon(self) -> None:
        """The turn stops without ending the answer (shutdown): stop sending; a resumed
        turn carries on from the last checkpoint."""
        self.closed = True
        await self._stop_flusher()

    async def _end(self, *, blocks: Sequence[dict[str, Any]] | None, deadline: float) -> None:
        self._ending = True
        give_up = self._clock() + deadline
        attempt = 0
        while True:
            async with self._lock:
                try:
                    await self._flush(final=True, blocks=blocks)
                    break
                except SlackUnavailable as exc:
                    if self._clock() >= give_up:
                        raise
                    reason = exc
                except SlackError as exc:
                    if not blocks or exc.error not in _BLOCKS_REFUSED:
                        raise
                    log.warning("Slack refused the answer's blocks (%s); ending without", exc)
                    blocks = None
                    continue
            wait = OFFLINE_RETRY[min(attempt, len(OFFLINE_RETRY) - 1)]
            attempt += 1
            log.info("Slack unreachable (%s); trying %s again in %.0f s", reason, self._key, wait)
            await asyncio.sleep(min(wait, max(give_up - self._clock(), 0.1)))
        self.progress.done = True

    # -- sending ---------------------------------------------------------------------------

    async def _flush(self, *, final: bool, blocks: Sequence[dict[str, Any]] | None = None) -> None:
        """Send what is pending; with ``final``, end the current message too."""
        if self._look_first:
            await self._adopt_recorded_reply()
        if self._rewrite:
            await self._rewrite_resumed()
        while len(self.progress.text) + len(self._pending) > MESSAGE_LIMIT:
            await self._roll_over()
        if not self.progress.mode:
            if not final and not self._pending.strip() and not self._tasks:
                return
            self.progress.mode = self._choose_mode(final)
        if self.progress.mode == "stream":
            await self._flush_stream(final=final, blocks=blocks)
        elif self.progress.mode == "edit":
            await self._flush_edit(final=final, blocks=blocks)
        elif final:
            await self._post_whole(blocks)
        self._last_flush = self._clock()

    def _choose_mode(self, final: bool) -> str:
        team = self._key.team
        if final:
            # The answer is complete already: one post says it for a third of the calls.
            return "post"
        if self._stream_ok and self._budget.take(team, "chat.startStream", "chat.stopStream"):
            return "stream"
        if self._budget.available(team, "chat.update") >= 3:
            return "edit"
        return "post"

    def _take(self) -> tuple[str, list[dict[str, Any]]]:
        """Take what is pending for one call (given back with ``_give_back`` on failure)."""
        text, self._pending = self._pending, ""
        tasks = [task_chunk(t) for t in self._tasks.values()]
        self._tasks_sent = dict(self._tasks)
        self._tasks = {}
        return text, tasks

    def _give_back(self, text: str) -> None:
        self._pending = text + self._pending
        for step_id, update in self._tasks_sent.items():
            self._tasks.setdefault(step_id, update)

    async def _call(self, call: Awaitable[Any]) -> Any:
        """One Slack call: unreachable Slack becomes ``SlackUnavailable``; a 429 empties the
        method's budget until ``Retry-After``."""
        if self._may_write is not None and not self._may_write():
            if inspect.iscoroutine(call):
                call.close()
            self._unreachable_until = self._clock() + 1.0
            raise SlackUnavailable("this process's hold on the thread is in doubt")
        try:
            return await call
        except SlackError as exc:
            if exc.error == "connection_error":
                self._unreachable_until = self._clock() + 2.0
                raise SlackUnavailable(str(exc)) from exc
            if exc.error == "ratelimited":
                self._budget.rate_limited(self._key.team, exc.method, exc.retry_after or 1.0)
            raise

    # stream mode

    async def _flush_stream(self, *, final: bool, blocks: Sequence[dict[str, Any]] | None) -> None:
        key = self._key
        ts = self.progress.ts
        if ts is None:
            text, tasks = self._take()
            chunks = ([_text_chunk(text)] if text else []) + tasks
            try:
                ts = await self._call(
                    self._replies.start_stream(
                        key.channel,
                        key.thread_ts,
                        recipient_user=self._recipient,
                        recipient_team=key.team,
                        chunks=chunks or [_text_chunk(" ")],
                    )
                )
            except (SlackError, SlackUnavailable) as exc:
                self._give_back(text)
                self._budget.refund(key.team, "chat.stopStream")
                await self._stream_start_failed(exc)
                return await self._flush(final=final, blocks=blocks)
            await self._sent(text, ts=ts)
            if not final:
                return
        elif not final:
            if not (self._pending or self._tasks):
                return
            if not self._budget.take(key.team, "chat.appendStream"):
                return  # over budget: the text waits for a later append, or the stop
            text, tasks = self._take()
            chunks = ([_text_chunk(text)] if text else []) + tasks
            try:
                await self._call(self._replies.append_stream(key.channel, ts, chunks))
            except SlackUnavailable:
                # The append may have gone through: never append it again blindly.
                self._give_back(text)
                await self._rewrite_message(final=False, blocks=None)
                return
            except SlackError as exc:
                self._give_back(text)
                if exc.error == "ratelimited":
                    return
                if exc.error == "stopped_by_user":
                    self._stopped_by_user()
                    return
                if exc.error not in STREAM_CLOSED and not exc.ambiguous:
                    raise
                log.info("stream %s in %s ended (%s); finishing it", ts, key, exc.error)
                await self._rewrite_message(final=False, blocks=None, stop=exc.ambiguous)
                return
            await self._sent(text)
            return
        # The end: the rest of the text, the last task states and the blocks, in the stop.
        text, tasks = self._take()
        chunks = ([_text_chunk(text)] if text else []) + tasks
        assert ts is not None
        try:
            await self._call(
                self._replies.stop_stream(
                    key.channel, ts, chunks=chunks, blocks=blocks, metadata=self._metadata
                )
            )
        except SlackUnavailable:
            self._give_back(text)
            await self._rewrite_message(final=True, blocks=blocks)
            return
        except SlackError as exc:
            self._give_back(text)
            if exc.error == "ratelimited":
                await asyncio.sleep(min(exc.retry_after or 1.0, 30.0))
                raise SlackUnavailable("chat.stopStream is rate limited") from exc
            if exc.error == "stopped_by_user":
                # The student stopped it before its end arrived: it stays as they saw it.
                self._stopped_by_user()
                self._message_done()
                return
            if exc.error not in STREAM_CLOSED and not exc.ambiguous:
                raise
            await self._rewrite_message(final=True, blocks=blocks, stop=exc.ambiguous)
            return
        await self._sent(text)
        self._message_done()

    async def _stream_start_failed(self, exc: SlackError | SlackUnavailable) -> None:
        """After a failed ``chat.startStream``: adopt the message if the start went
        through after all, else fall back to an edited message (or one post)."""
        ambiguous = isinstance(exc, SlackUnavailable) or exc.ambiguous
        if ambiguous and await self._adopt_lost_message():
            return
        if isinstance(exc, SlackUnavailable):
            raise exc
        if exc.error in STREAM_REFUSED:
            log.info("Slack refused a stream in %s (%s)", self._key.channel, exc.error)
            self._stream_ok = False
        elif exc.error != "ratelimited" and not ambiguous:
            raise exc
        can_edit = self._budget.available(self._key.team, "chat.update") >= 3
        self.progress.mode = "edit" if can_edit else "post"

    async def _rewrite_message(
        self, *, final: bool, blocks: Sequence[dict[str, Any]] | None, stop: bool = True
    ) -> None:
        """End the current message by rewriting it whole (``chat.update``): after a call
        that may or may not have taken effect, or a stream Slack closed."""
        ts = self.progress.ts
        assert ts is not None
        if stop:
            await self._quietly_stop(ts)
        text, _ = self._take()
        whole, carried = self._fit(text, ending=not final)
        try:
            await self._call(
                self._replies.update_markdown(
                    self._key.channel,
                    ts,
                    whole or " ",
                    blocks=_with_markdown(whole, blocks) if final and blocks else None,
                    wait=True,
                )
            )
        except (SlackError, SlackUnavailable):
            self._give_back(text)
            raise
        self._pending = carried + self._pending
        self.progress.text = whole
        await self._sent("")
        self._message_done()

    def _fit(self, text: str, *, ending: bool) -> tuple[str, str]:
        """The current message's whole text with ``text`` taken in: (whole, carried over
        to the next message). Cut where it would outgrow the message (text arrives while a
        call is awaited); and when the message ends mid-answer (``ending``) inside code,
        at a line break, its fence closed here and reopened in the next message."""
        whole = self.progress.text + text
        if len(whole) <= MESSAGE_LIMIT and not (ending and open_fence(whole) is not None):
            return whole, ""
        room = min(MESSAGE_LIMIT, len(whole) + 8)  # roll_over keeps 8 for a closing fence
        cut = roll_over(whole, room, keep=len(self.progress.text))
        return cut.head, cut.tail

    async def _quietly_stop(self, ts: str) -> None:
        """Stop a stream that may already be stopped."""
        try:
            await self._call(self._replies.stop_stream(self._key.channel, ts))
        except SlackError as exc:
            log.debug("stopping stream %s: %s", ts, exc.error)

    # edit mode

    async def _flush_edit(self, *, final: bool, blocks: Sequence[dict[str, Any]] | None) -> None:
        key = self._key
        self._tasks.clear()  # an edited message has no timeline; the status shows progress
        ts = self.progress.ts
        if ts is None:
            if final:
                return await self._post_whole(blocks)
            if not self._pending.strip():
                return
            text, _ = self._take()
            try:
                ts = await self._post(text)
            except (SlackError, SlackUnavailable):
                self._give_back(text)
                raise
            await self._sent(text, ts=ts)
            return
        if not final and (not self._pending or not self._budget.take(key.team, "chat.update")):
            return
        if final and not self._pending and not blocks:
            self._message_done()  # the message already says it all
            return
        text, _ = self._take()
        whole = self.progress.text + text
        try:
            await self._call(
                self._replies.update_markdown(
                    key.channel,
                    ts,
                    whole or " ",
                    blocks=_with_markdown(whole, blocks) if final and blocks else None,
                    wait=final,
                )
            )
        except SlackError as exc:
            self._give_back(text)
            if not final and (exc.error == "ratelimited" or exc.ambiguous):
                return  # the next edit sends the whole text again
            raise
        except SlackUnavailable:
            self._give_back(text)
            raise
        await self._sent(text)
        if final:
            self._message_done()

    # post mode

    async def _post_whole(self, blocks: Sequence[dict[str, Any]] | None) -> None:
        if not self._pending.strip():
            return
        text, _ = self._take()
        try:
            ts = await self._post(text, blocks)
        except (SlackError, SlackUnavailable):
            self._give_back(text)
            raise
        await self._sent(text, ts=ts, last=self._ending and not self._pending)
        self._message_done()

    async def _post(self, text: str, blocks: Sequence[dict[str, Any]] | None = None) -> str:
        """``chat.postMessage``, never repeated blindly: after a failure that may have
        posted, the thread is read first."""
        key = self._key
        try:
            return str(
                await self._call(
                    self._replies.post_markdown(
                        key.channel,
                        key.thread_ts,
                        text,
                        blocks=_with_markdown(text, blocks) if blocks else None,
                        metadata=self._metadata,
                    )
                )
            )
        except SlackError as exc:
            if not exc.ambiguous:
                raise
        except SlackUnavailable:
            pass
        found = await self._find_posted(text)
        if found is None:
            raise SlackUnavailable("chat.postMessage failed; the thread does not show it")
        return found

    async def _find_posted(self, text: str) -> str | None:
        """Our message in the thread that starts with ``text``, if Slack has it."""
        key = self._key
        try:
            mine = await self._replies.bot_replies_after(key.channel, key.thread_ts, self._after_ts)
        except SlackError:
            return None
        probe = text.strip()[:100]
        for message in reversed(mine):
            shown = str(message.get("text") or message.get("markdown_text") or "")
            if probe and shown.strip().startswith(probe):
                return str(message["ts"])
        return None

    async def _adopt_recorded_reply(self) -> None:
        """A resumed turn: if Slack already has this answer's message (posted before the
        process stopped, never recorded), write into it instead of posting another."""
        self._look_first = False
        if self._metadata is None or self.progress.ts is not None:
            return
        key = self._key
        try:
            mine = await self._replies.bot_replies_after(key.channel, key.thread_ts, self._after_ts)
        except SlackError as exc:
            log.info("could not look for an earlier answer in %s: %s", key, exc.error)
            return
        wanted = self._metadata.get("event_payload")
        for message in reversed(mine):
            metadata = message.get("metadata") or {}
            if metadata.get("event_payload") == wanted:
                log.info("turn's answer %s was posted before a restart; using it", message["ts"])
                self.progress.ts = str(message["ts"])
                self.progress.mode = "edit"
                self._rewrite = True
                return

    async def _adopt_lost_message(self) -> bool:
        """A stream start failed in transit but did create the message: write into it."""
        found = await self._find_posted(self._pending) if self._pending.strip() else None
        if found is None:
            return False
        log.info("a stream start in %s went through after all; using %s", self._key, found)
        self.progress.ts = found
        self.progress.mode = "edit"
        self._rewrite = True
        await self._rewrite_resumed()
        return True

    # both

    async def _roll_over(self) -> None:
        """The current message is full: end it and start the next with the rest."""
        shown = len(self.progress.text)
        # Never into what is already shown: the head starts with it, fences closed after.
        cut = roll_over(self.progress.text + self._pending, MESSAGE_LIMIT, keep=shown)
        self._pending = cut.head[shown:]
        tail = cut.tail
        # Text that arrives while this message is ended goes after ``tail``, not into the
        # message being ended (nor before ``tail``, if the end fails and is given back).
        self._rolling = tail
        if not self.progress.mode:
            self.progress.mode = self._choose_mode(False)
        try:
            await self._flush(final=True)
        finally:
            rest, self._rolling = self._rolling, None
            self._pending += rest

    async def _rewrite_resumed(self) -> None:
        """After a restart: stop the old stream (if still live) and make its text exactly
        ours; then go on editing it."""
        ts = self.progress.ts
        assert ts is not None
        await self._quietly_stop(ts)
        text, _ = self._take()
        whole, carried = self._fit(text, ending=False)
        try:
            await self._call(
                self._replies.update_markdown(self._key.channel, ts, whole or " ", wait=True)
            )
        except (SlackError, SlackUnavailable):
            self._give_back(text)
            raise
        self._rewrite = False
        self.progress.mode = "edit"
        self.progress.text = whole
        self._pending = carried + self._pending
        await self._sent("")
        if carried:  # the message is full: the rest goes to the next one
            self._message_done()

    async def _sent(self, text: str, *, ts: str | None = None, last: bool = False) -> None:
        """Bookkeeping after a successful write; a checkpoint when the message is new or
        the last one is a while ago. ``last``: the answer ends with this write, and the
        turn's own record follows at once (no checkpoint needed in between)."""
        first = ts is not None and ts != self.progress.ts
        if ts is not None:
            self.progress.ts = ts
        self.progress.text += text
        if first and self._on_first_reply is not None:
            self._on_first_reply()
            self._on_first_reply = None
        now = self._clock()
        if last:
            return
        if first or now - self._last_checkpoint >= CHECKPOINT_EVERY:
            self._last_checkpoint = now
            await self._checkpoint()

    async def _checkpoint(self) -> None:
        try:
            await self._on_progress(self.snapshot())
        except Exception as exc:  # a later checkpoint, or the end of the turn, records it
            log.warning("could not record an answer's progress in %s: %s", self._key, exc)

    def snapshot(self) -> Progress:
        """The progress to record: the current message's text with everything taken in
        (what a resume rewrites it to), the position that text reflects."""
        snapshot = Progress(**asdict(self.progress))
        snapshot.posted = list(self.progress.posted)
        if snapshot.ts is not None:
            snapshot.text = self.progress.text + self._pending + self._live.held
        snapshot.raw = self._live.raw_chars
        return snapshot

    def _message_done(self) -> None:
        self.progress.parts += 1
        self.progress.ts = None
        self.progress.text = ""
        self.progress.mode = ""


_BLOCKS_REFUSED = ("invalid_blocks", "invalid_blocks_format", "msg_blocks_too_long")


def _with_markdown(text: str, blocks: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"type": "markdown", "text": text or " "}, *blocks]
