"""Working one turn: start (or resume) a run, stream its answer into Slack, settle it.

A turn ends COMPLETED, FAILED/CANCELLED/EXPIRED (the student is told in plain words) or
parked as NEEDS_TOOL_OUTPUTS while a quiz waits for the student. Every change of its state
goes through ``TurnLifecycle``; what Slack shows goes through ``AnswerWriter``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bot.agent.context import context_note
from bot.core.extras import FAILURE_PART, already_posted, post_extras, reply_metadata
from bot.core.lifecycle import TurnLifecycle
from bot.core.workers import Guard
from bot.domain import Thread, Turn, TurnKind, TurnStatus
from bot.files import FileIntake
from bot.quiz.flow import QuizFlow, QuizSkip, run_id_of
from bot.rendering import error_text
from bot.rendering._citations import apply_citations
from bot.rendering._messages import NO_ANSWER
from bot.replies import SlackError
from bot.runtime.base import (
    Finished,
    MissingToolOutputs,
    RemoteThreadGone,
    RunNotAwaitingOutputs,
    RunResult,
    RunStatus,
    RunStream,
    Runtime,
    RunTimedOut,
    RuntimeError_,
    StepUpdate,
    TextDelta,
    ToolOutput,
    UserInput,
)
from bot.slack.answer import AnswerWriter, Progress, SlackUnavailable
from bot.slack.budget import SlackBudget
from bot.slack.status import (
    NOT_HERE,
    UNINSTALLED,
    NotInChannel,
    StatusIndicator,
    StatusIndicators,
)
from bot.slack.surface import Surface
from bot.telemetry.base import Outcome, Telemetry, TurnTrace
from bot.telemetry.parked import ParkedTraces
from bot.thread_context import LOST_MEMORY_NOTE, earlier_context, with_context
from bot.workspaces import current_team
from store.base import LeaseLost, Store, StoreError

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_INPUT_CHARS = 32_000
LONG_INPUT_NOTE = "_Your message was very long, so I read only its first {limit:,} characters._"
INCOMPLETE_NOTE = "_The answer was cut short. Ask me to continue if you need the rest._"
EMPTY_PROMPT = (
    "Hi! I'm your tutor. Ask me a question — for example _“Solve 3x + 11 = 14”_ — "
    "or try `/tutor quiz fractions`."
)
STATUS_MESSAGES = {
    RunStatus.FAILED: "Sorry — the model service failed while answering. Please send your "
    "message again.",
    RunStatus.CANCELLED: "This answer was cancelled before it finished. Send your message "
    "again to retry.",
    RunStatus.EXPIRED: "This answer expired before it finished. Please ask again.",
}
_FINAL_STATUS = {
    RunStatus.FAILED: TurnStatus.FAILED,
    RunStatus.CANCELLED: TurnStatus.CANCELLED,
    RunStatus.EXPIRED: TurnStatus.EXPIRED,
}
THINKING = "is thinking…"
STEP_STATUS = {
    "code": "is writing and running code…",
    "file_search": "is reading your files…",
    "quiz": "is preparing a quiz…",
}
NOT_IN_CHANNEL_NOTE = (
    "I can't answer in <#{channel}> because I'm not a member there. Invite me with "
    "`/invite @tutorbot` in that channel, or ask me right here."
)
# An answer Slack has not taken after this long is recorded as ready to post.
POSTING_AFTER = 1.0
# A turn that fails while this process's hold on its thread is in doubt (the database is
# unreachable) waits this long for the hold to come back before it tells the student.
HOLD_WAIT = 60.0
FRESH_NOTE = "_I lost the earlier part of this conversation, so I'm starting fresh._"


class Stopped(Exception):
    """The student stopped the answer (Slack's Stop button)."""


@dataclass(slots=True)
class _Context:
    thread: Thread
    turn: Turn
    trace: TurnTrace
    status: StatusIndicator
    lifecycle: TurnLifecycle
    may_write: Callable[[], bool] | None = None  # Slack writes wait while this is False
    open_quiz: bool = True  # a quiz may wait in the thread (False: the worker saw none)
    writer: AnswerWriter | None = None
    notes: list[str] = field(default_factory=list)  # said under the answer (footer)
    parked: bool = False  # waiting on a quiz: the trace stays open for the answers
    # Worked before (resumed, or begun again): what it posted may not have been recorded.
    worked_before: bool = False
    stop: asyncio.Event = field(default_factory=asyncio.Event)


AnswerBlocks = Callable[[Turn], Sequence[dict[str, Any]]]


class TurnRunner:
    def __init__(
        self,
        *,
        store: Store,
        runtime: Runtime,
        replies: Surface,
        budget: SlackBudget,
        telemetry: Telemetry,
        quizzes: QuizFlow,
        files: FileIntake,
        run_timeout: float,
        answer_blocks: AnswerBlocks | None = None,
        post_deadline: float = 900.0,
    ) -> None:
        self._store = store
        self.lifecycle = TurnLifecycle(store)
        self._runtime = runtime
        self._replies = replies
        self._budget = budget
        self._statuses = StatusIndicators(replies, budget)
        self._telemetry = telemetry
        self._quizzes = quizzes
        self._files = files
        self._run_timeout = run_timeout
        self._answer_blocks = answer_blocks
        self._post_deadline = post_deadline
        self._critical: set[asyncio.Future[Any]] = set()
        self._parked = ParkedTraces()
        self._active: dict[int, _Context] = {}  # thread id -> the turn being worked

    # -- the outside ---------------------------------------------------------------------

    def stop(self, thread_id: int) -> bool:
        """Stop the answer being written in a thread (Slack's Stop); False if none."""
        ctx = self._active.get(thread_id)
        if ctx is None:
            return False
        ctx.stop.set()
        return True

    async def cancel_runs(self, thread: Thread, turns: Sequence[Turn]) -> None:
        """Stop reached this process, but another works the thread: cancel the turns' runs
        at the model service (that process's stream then ends, and it sees the Stop)."""
        remote = self._remote_thread(thread)
        for turn in turns:
            if remote is not None and turn.remote_run_id:
                await self._runtime.cancel(remote, turn.remote_run_id)

    async def drain(self, timeout: float = 10.0) -> bool:
        """At shutdown: let the steps that must not stop half-way finish; True if they did."""
        if self._critical:
            _, pending = await asyncio.wait(set(self._critical), timeout=timeout)
            return not pending
        return True

    def close_traces(self) -> None:
        """At shutdown: traces of turns still waiting on a quiz end undecided."""
        self._parked.end_all()

    async def _shielded(self, step: Awaitable[T], name: str) -> T:
        """Run ``step`` to its end even if the turn's task is cancelled (shutdown): between
        the model service accepting a run and the store learning its id, and between an
        answer shown and its turn recorded. ``drain()`` waits for these at shutdown."""
        task = asyncio.ensure_future(step)
        task.set_name(name)
        self._critical.add(task)
        task.add_done_callback(self._critical.discard)
        return await asyncio.shield(task)

    # -- one turn ----------------------------------------------------------------------------

    async def process(self, turn: Turn, guard: Guard | None = None) -> None:
        """Work one turn to an end state. Errors go to the thread and the log; a turn the
        store could not record stays as it was and is resumed later (``StoreError`` is
        raised on to the worker, which waits for the database).

        ``guard``: the thread's lease; every write for the turn is fenced with it, and a
        lost lease raises ``LeaseLost`` (another process works the thread now)."""
        thread = guard.thread if guard is not None else None
        if thread is None:
            thread = await self._store.get_thread_by_id(turn.thread_id)
        if thread is None:  # pragma: no cover - foreign keys make this impossible
            return
        current_team.set(thread.key.team)  # this turn's Slack calls speak for its workspace
        trace = self._trace_for(thread, turn)
        ctx = _Context(
            thread,
            turn,
            trace,
            self._statuses.for_turn(thread.key),
            lifecycle=self.lifecycle.fenced(guard.fence if guard is not None else None),
            may_write=guard.check if guard is not None else None,
            open_quiz=guard.open_quiz if guard is not None else True,
        )
        self._active[thread.id] = ctx
        outcome: Outcome = "Indeterminate"
        try:
            outcome = await self._process(ctx)
        except Stopped:
            outcome = "Indeterminate"
        except NotInChannel as exc:
            log.info(
                "turn %s: not in %s (%s); telling the student", turn.id, exc.channel, exc.error
            )
            await self._not_in_channel(ctx, exc.error)
            outcome = "Fail"
        except RuntimeError_ as exc:
            log.warning("turn %s on %s failed: %s", turn.id, thread.key, exc)
            await self._fail(ctx, exc.user_message, str(exc))
            outcome = "Fail"
        except LeaseLost:
            log.warning("turn %s on %s: another process took the thread over", turn.id, thread.key)
            raise
        except StoreError as exc:
            log.error(
                "turn %s on %s: the store failed (%s); it will be resumed", turn.id, thread.key, exc
            )
            raise
        except SlackUnavailable as exc:
            log.error("turn %s on %s: Slack stayed unreachable (%s)", turn.id, thread.key, exc)
        except SlackError as exc:
            log.warning("turn %s on %s: Slack refused %s", turn.id, thread.key, exc)
            if exc.error in NOT_HERE:
                await self._not_in_channel(ctx, exc.error)
            else:
                await self._fail(
                    ctx, "Sorry — Slack refused my answer. Please try again.", str(exc)
                )
            outcome = "Fail"
        except Exception as exc:
            log.exception("turn %s on %s crashed", turn.id, thread.key)
            await self._fail(
                ctx,
                "Sorry — something went wrong on my side. Please try again.",
                type(exc).__name__,
            )
            outcome = "Fail"
        finally:
            self._active.pop(thread.id, None)
            if ctx.writer is not None and not ctx.writer.closed:
                await ctx.writer.abandon()
            await ctx.status.aclose()
            if ctx.parked:
                self._parked.park(turn, trace)  # continued by the quiz answers' turn
            else:
                trace.end(outcome)

    def _trace_for(self, thread: Thread, turn: Turn) -> TurnTrace:
        """The turn's trace: a quiz continuation carries on its run's trace when it is here."""
        self._parked.end_stale()
        if turn.kind is TurnKind.QUIZ_ANSWERS and turn.parent_turn_id is not None:
            resumed = self._parked.resume(turn.parent_turn_id)
            if resumed is not None:
                resumed.set_attribute("quiz_continuation_turn_id", turn.id)
                return resumed
        # A new message moves on from any quiz still open in the thread.
        self._parked.end_thread(thread.id)
        trace = self._telemetry.start_turn(
            runtime=self._runtime.name,
            team=thread.key.team,
            channel=thread.key.channel,
            thread_key=str(thread.key),
            turn_id=turn.id,
            text=turn.text if turn.kind is TurnKind.MESSAGE else None,
        )
        trace.set_attribute("turn_kind", turn.kind.value)
        if turn.parent_turn_id is not None:
            trace.set_attribute("parent_turn_id", turn.parent_turn_id)
        return trace

    async def _process(self, ctx: _Context) -> Outcome:
        turn = ctx.turn
        if turn.status in (TurnStatus.RUNNING, TurnStatus.POSTING) and await self._told_failed(ctx):
            return "Fail"
        if turn.status in (TurnStatus.RUNNING, TurnStatus.POSTING) and turn.remote_run_id:
            log.info("resuming turn %s (run %s)", turn.id, turn.remote_run_id)
            ctx.worked_before = True
            return await self._resume(ctx)
        if turn.kind is TurnKind.QUIZ_ANSWERS:
            return await self._submit_quiz_answers(ctx)
        if turn.status is TurnStatus.RUNNING and turn.attempts >= 2:
            await self._fail(
                ctx,
                "I was restarted while answering this and couldn't finish. "
                "Please send your message again.",
                "interrupted twice",
            )
            return "Fail"
        if not turn.text.strip() and not turn.files:
            await self._replies.post(
                ctx.thread.key.channel, EMPTY_PROMPT, thread_ts=ctx.thread.key.thread_ts
            )
            await ctx.lifecycle.complete(turn)
            return "Success"
        retrying = turn.status is TurnStatus.RUNNING
        ctx.worked_before = retrying
        await ctx.lifecycle.begin(turn)
        await ctx.status.show(THINKING)
        user_input = await self._user_input(ctx)
        skip = await self._quizzes.plan_skip(ctx.thread) if ctx.open_quiz else None
        stream = None
        if retrying and ctx.thread.remote_id is not None:
            # The previous attempt may have started the run before it stopped: look first.
            stream = await self._runtime.find_run(ctx.thread.remote_id, user_input)
        if stream is None:
            stream = await self._start(ctx, user_input, skip)
        else:
            await self._recorded(ctx, stream, skip)
        return await self._consume(ctx, stream, Progress())

    async def _user_input(self, ctx: _Context) -> UserInput:
        turn = ctx.turn
        text = turn.text
        if len(text) > MAX_INPUT_CHARS:
            text = text[:MAX_INPUT_CHARS]
            ctx.notes.append(LONG_INPUT_NOTE.format(limit=MAX_INPUT_CHARS))
        text = text or "(The student shared files without a message.)"
        fresh = ctx.thread.remote_id is None or ctx.thread.runtime != self._runtime.name
        if fresh and turn.message_ts != ctx.thread.key.thread_ts:
            text = await self._with_thread_context(ctx, text)
        note = await self._viewing_note(ctx)
        if note:
            text = f"[{note}]\n\n{text}"
        if turn.files:
            await ctx.status.show("is reading your files…")
        files, notes = await self._files.prepare(ctx.thread, turn.files)
        for note in notes:
            await self._say(ctx, note)
        return UserInput(text=text, files=files)

    async def _viewing_note(self, ctx: _Context) -> str | None:
        """Where the student is in Slack, when they opened the tutor from a channel (the
        agent's Messages tab or side panel, both DMs with the app): the channel's name."""
        key = ctx.thread.key
        if not key.channel.startswith("D"):
            return None
        viewed = await self._store.viewing_context(key.team, key.channel, key.thread_ts)
        return context_note(viewed.name) if viewed is not None else None

    async def _say(self, ctx: _Context, text: str) -> None:
        """A short note in the thread before the answer (a file that could not be read)."""
        key = ctx.thread.key
        await self._replies.post(key.channel, text, thread_ts=key.thread_ts)
        ctx.status.replied()
        await ctx.status.show(THINKING)

    async def _with_thread_context(self, ctx: _Context, text: str) -> str:
        """The bot's conversation starts inside an existing Slack thread: read it first."""
        key = ctx.thread.key
        try:
            bot_user_id, bot_id = await self._replies.identity()
            messages = await self._replies.thread_messages(
                key.channel, key.thread_ts, before_ts=ctx.turn.message_ts
            )
        except SlackError as exc:
            log.info("could not read the earlier messages of %s: %s", key, exc)
            return text
        context = earlier_context(
            messages, before_ts=ctx.turn.message_ts, bot_user_id=bot_user_id, bot_id=bot_id
        )
        if context.bot_was_here:
            await self._say(ctx, LOST_MEMORY_NOTE)
        return with_context(context, text)

    def _remote_thread(self, thread: Thread) -> str | None:
        if thread.remote_id is not None and thread.runtime == self._runtime.name:
            return thread.remote_id
        return None

    async def _start(
        self, ctx: _Context, user_input: UserInput, skip: QuizSkip | None
    ) -> RunStream:
        """Start the run and record it (with the quizzes its input closes), as one step."""
        thread = ctx.thread
        metadata = {
            "slack_team": thread.key.team,
            "slack_channel": thread.key.channel,
            "slack_thread_ts": thread.key.thread_ts,
        }

        async def thread_created(remote_id: str) -> None:
            # Recorded before the run starts there: a retry after a crash looks for the
            # run on this thread (``find_run``) instead of asking again in a new one.
            await ctx.lifecycle.thread_created(ctx.turn, thread, self._runtime.name, remote_id)

        async def start(outputs: Sequence[ToolOutput], pending_run: str | None) -> RunStream:
            stream = await self._runtime.start_run(
                self._remote_thread(thread),
                user_input,
                metadata=metadata,
                pending_run_id=pending_run,
                pending_outputs=outputs,
                on_thread_created=thread_created,
            )
            await self._recorded(ctx, stream, skip)
            return stream

        outputs = skip.outputs if skip else []
        pending_run = skip.run_id if skip else None
        with ctx.trace.model_call(
            "start_run", runtime=self._runtime.name, model=self._runtime.model
        ):
            try:
                return await self._shielded(
                    start(outputs, pending_run), f"start-turn-{ctx.turn.id}"
                )
            except MissingToolOutputs as exc:
                # A thread an older version left owing outputs: rebuild them, once.
                log.warning("thread %s owes outputs for %s; sending them", thread.key, exc.call_ids)
                owed = await self._quizzes.outputs_for_calls(thread, exc.call_ids)
                outputs = _unique([*owed, *outputs])
                return await self._shielded(
                    start(outputs, pending_run), f"start-turn-{ctx.turn.id}"
                )
            except RemoteThreadGone:
                # The model service lost the thread (deleted, another account): start over.
                log.warning("remote thread of %s is gone; starting fresh", thread.key)
                thread.remote_id = None
                await self._say(ctx, FRESH_NOTE)
                return await self._shielded(start([], None), f"start-turn-{ctx.turn.id}")

    async def _recorded(self, ctx: _Context, stream: RunStream, skip: QuizSkip | None) -> None:
        thread = ctx.thread
        remote: tuple[str, str] | None = None
        if stream.thread_id and stream.thread_id != thread.remote_id:
            remote = (self._runtime.name, stream.thread_id)
        await ctx.lifecycle.run_started(
            ctx.turn,
            stream.run_id,
            thread_id=thread.id,
            thread_remote=remote,
            quiz_moves=skip.moves if skip else (),
            complete_turns=skip.parked_turns if skip else (),
        )
        if remote is not None:
            thread.runtime, thread.remote_id = remote
        ctx.trace.set_attribute("run_id", stream.run_id)
        if skip is not None and skip.quizzes:
            await self._quizzes.refresh_all(skip.quizzes)

    async def _resume(self, ctx: _Context) -> Outcome:
        turn, thread = ctx.turn, ctx.thread
        progress = Progress.from_json(turn.progress)
        assert turn.remote_run_id is not None and thread.remote_id is not None
        if not progress.ts and not progress.parts:
            await ctx.status.show(THINKING)
        stream = await self._runtime.resume(
            thread.remote_id, turn.remote_run_id, cursor=progress.cursor
        )
        if getattr(stream, "regenerates", False):
            # Written anew: the message shown so far is replaced by the new answer.
            progress.text, progress.raw, progress.cursor = "", 0, None
        return await self._consume(ctx, stream, progress, resumed=True)

    # -- streaming the answer ------------------------------------------------------------------

    async def _consume(
        self, ctx: _Context, stream: RunStream, progress: Progress, *, resumed: bool = False
    ) -> Outcome:
        turn, key = ctx.turn, ctx.thread.key
        recipient = await self._student_of(turn)
        ctx.writer = AnswerWriter(
            self._replies,
            self._budget,
            key=key,
            recipient_user=recipient,
            after_ts=turn.message_ts if not turn.message_ts.startswith("quiz:") else key.thread_ts,
            on_progress=lambda p: ctx.lifecycle.checkpoint(turn, p.to_json()),
            on_first_reply=ctx.status.replied,
            progress=progress,
            may_write=ctx.may_write,
            metadata=reply_metadata(turn, "answer"),
            look_first=resumed and progress.ts is None,
            on_stopped_by_user=ctx.stop.set,
        )
        if not ctx.stop.is_set() and await self._store.stop_requested(turn.id):
            # Stop reached another process (which marked the turn) before this run was
            # recorded, so it could not cancel the run: stop it here.
            ctx.stop.set()
        while True:
            result = await self._read(ctx, stream)
            outcome, stream_next = await self._shielded(
                self._settle(ctx, result), f"settle-turn-{turn.id}"
            )
            if stream_next is None:
                return outcome
            stream = stream_next

    async def _read(self, ctx: _Context, stream: RunStream) -> RunResult:
        """Feed the run's events to the answer until it ends; bounded by the run timeout and
        by the student's Stop."""
        reader = asyncio.ensure_future(self._feed(ctx, stream))
        stopped = asyncio.ensure_future(ctx.stop.wait())
        try:
            with ctx.trace.model_call(
                "stream_run", model=self._runtime.model, run_id=stream.run_id
            ):
                done, _ = await asyncio.wait(
                    {reader, stopped},
                    timeout=self._run_timeout,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if reader in done and reader.exception() is not None:
                    raise reader.exception()  # type: ignore[misc]
        finally:
            stopped.cancel()
            if not reader.done():
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
            await stream.aclose()
        if reader in done:
            return reader.result()
        if stopped in done:
            await self._stopped(ctx, stream)
            raise Stopped()
        await self._runtime.cancel(stream.thread_id, stream.run_id)
        raise RunTimedOut(f"run {stream.run_id} still running after {self._run_timeout:.0f}s")

    async def _feed(self, ctx: _Context, stream: RunStream) -> RunResult:
        writer = ctx.writer
        assert writer is not None
        texts = 0
        async for event in stream:
            if isinstance(event, TextDelta):
                texts += 1
                writer.text(event)
            elif isinstance(event, StepUpdate):
                writer.step(event)
                if not writer.has_text:
                    await ctx.status.show(STEP_STATUS.get(event.kind.value, THINKING))
            elif isinstance(event, Finished):
                if texts == 0:
                    # A polled run (or one resumed without a cursor): its text comes whole.
                    for index, message in enumerate(event.result.messages):
                        writer.text(TextDelta(message.text, message=index))
                return event.result
        raise RuntimeError_(f"run {stream.run_id}: the stream ended without a result")

    async def _stopped(self, ctx: _Context, stream: RunStream) -> None:
        """The student pressed Stop: cancel the run, end the answer with what was said."""
        await self._runtime.cancel(stream.thread_id, stream.run_id)
        await self._end_stopped(ctx)

    async def _end_stopped(self, ctx: _Context) -> None:
        """The answer stays as the student saw it when they pressed Stop; nothing more is
        posted; the turn is recorded as cancelled, and the thread's next message works."""
        log.info("turn %s stopped by the student", ctx.turn.id)
        writer = ctx.writer
        if writer is not None:
            await writer.halt()
        await ctx.status.clear()
        await ctx.lifecycle.fail(ctx.turn, "stopped by the student", status=TurnStatus.CANCELLED)
        ctx.trace.set_attribute("stopped_by_student", True)

    async def _settle(self, ctx: _Context, result: RunResult) -> tuple[Outcome, RunStream | None]:
        """Finish what a run produced and record where the turn stands.

        Returns the outcome, or the stream to read next (when every function call was
        invalid and the errors went straight back to the model)."""
        writer = ctx.writer
        assert writer is not None
        turn = ctx.turn
        if result.status is RunStatus.REQUIRES_ACTION:
            return await self._settle_action(ctx, result)
        if result.status is RunStatus.CANCELLED and (
            ctx.stop.is_set() or await self._store.stop_requested(turn.id)
        ):
            # Cancelled by the student's Stop (perhaps through another process).
            await self._end_stopped(ctx)
            raise Stopped()
        if result.status in STATUS_MESSAGES:
            log.warning("run %s ended %s: %s", result.run_id, result.status, result.error)
            await self._fail(
                ctx,
                STATUS_MESSAGES[result.status],
                result.error or str(result.status),
                status=_FINAL_STATUS[result.status],
            )
            return "Fail", None
        _, sources = apply_citations(result.messages)
        notes = [n for n in (sources, *ctx.notes) if n]
        if result.status is RunStatus.INCOMPLETE:
            notes.append(INCOMPLETE_NOTE)
        blocks = list(self._answer_blocks(turn)) if self._answer_blocks is not None else None
        finishing = asyncio.ensure_future(
            writer.finish(
                footer="\n\n".join(notes),
                blocks=blocks,
                fallback=NO_ANSWER,
                deadline=self._post_deadline,
            )
        )
        # Slack usually takes the end of the answer at once; when it does not (it is down),
        # the turn is recorded as ready to post while the writer keeps trying.
        done, _ = await asyncio.wait({finishing}, timeout=POSTING_AFTER)
        if not done:
            await ctx.lifecycle.answered(turn, writer.snapshot().to_json())
        await finishing
        progress = writer.progress
        if writer.stopped_by_user:
            await self._end_stopped(ctx)
            raise Stopped()
        await post_extras(
            self._replies,
            self._runtime,
            ctx.thread.key,
            turn,
            result,
            progress,
            on_posted=lambda: ctx.lifecycle.checkpoint(turn, progress.to_json()),
        )
        await ctx.lifecycle.complete(turn, progress.to_json())
        return ("Success" if result.status is RunStatus.COMPLETED else "Indeterminate"), None

    async def _settle_action(
        self, ctx: _Context, result: RunResult
    ) -> tuple[Outcome, RunStream | None]:
        writer = ctx.writer
        assert writer is not None
        turn, thread = ctx.turn, ctx.thread
        await writer.pause(deadline=self._post_deadline)
        student = await self._student_of(turn)
        immediate = await self._quizzes.open_quizzes(
            thread, turn, result, student, look_first=ctx.worked_before
        )
        if immediate is None:
            # Parked: the quiz waits for the student; this worker moves on.
            ctx.status.replied()
            await ctx.lifecycle.park(turn, result.run_id, writer.snapshot().to_json())
            ctx.parked = True
            return "Indeterminate", None
        # Every call was invalid: hand the errors straight back so the model can retry.
        remote = thread.remote_id
        assert remote is not None
        with ctx.trace.model_call(
            "submit_tool_outputs", model=self._runtime.model, run_id=result.run_id
        ):
            stream = await self._runtime.submit_tool_outputs(remote, result.run_id, immediate)
        await ctx.lifecycle.continued(turn, stream.run_id)
        return "Indeterminate", stream

    async def _student_of(self, turn: Turn) -> str | None:
        if turn.kind is TurnKind.QUIZ_ANSWERS and turn.parent_turn_id is not None:
            parent = await self._store.get_turn(turn.parent_turn_id)
            if parent is not None and parent.user_id:
                return parent.user_id
        return turn.user_id

    # -- quiz answers ----------------------------------------------------------------------

    async def _submit_quiz_answers(self, ctx: _Context) -> Outcome:
        turn, thread = ctx.turn, ctx.thread
        batch = turn.text
        remote_thread = thread.remote_id
        submission = await self._quizzes.claim_submission(batch)
        if submission is None or remote_thread is None:
            log.info("turn %s: nothing to submit for %s", turn.id, batch)
            await ctx.lifecycle.complete(turn)
            return "Indeterminate"
        retrying = turn.status is TurnStatus.RUNNING
        await ctx.lifecycle.begin(turn)
        await ctx.status.show("is checking your answers…")
        parents = [turn.parent_turn_id] if turn.parent_turn_id is not None else []

        async def submit() -> RunStream:
            stream = await self._runtime.submit_tool_outputs(
                remote_thread, run_id_of(batch), submission.outputs
            )
            await ctx.lifecycle.run_started(
                turn, stream.run_id, thread_id=thread.id, complete_turns=parents
            )
            # In the same shielded step: answers the model has must never go out again.
            await self._quizzes.mark_submitted(submission)
            return stream

        async def resend() -> RunStream:
            # Marked first and resent in one shielded step; a process stopped in between
            # finds the EXPIRED quizzes again (claim_submission) and resends them.
            await self._quizzes.mark_expired(submission)
            stream = await self._runtime.start_run(
                remote_thread,
                UserInput(text=submission.as_message),
                metadata={},
                pending_run_id=run_id_of(batch),
                pending_outputs=submission.resent_outputs,
            )
            await ctx.lifecycle.run_started(
                turn, stream.run_id, thread_id=thread.id, complete_turns=parents
            )
            return stream

        async def submitted(found: RunStream) -> RunStream:
            await ctx.lifecycle.run_started(
                turn, found.run_id, thread_id=thread.id, complete_turns=parents
            )
            await self._quizzes.mark_submitted(submission)
            return found

        stream: RunStream | None = None
        if retrying and not submission.resend:
            # The previous attempt may have submitted them before it stopped: look first.
            found = await self._runtime.find_submitted(
                remote_thread, run_id_of(batch), submission.outputs
            )
            if found is not None:
                log.info("turn %s: the answers were submitted before a restart", turn.id)
                stream = await self._shielded(submitted(found), f"start-turn-{turn.id}")
        if stream is None and not submission.resend:
            try:
                with ctx.trace.model_call(
                    "submit_tool_outputs", model=self._runtime.model, run_id=run_id_of(batch)
                ):
                    stream = await self._shielded(submit(), f"start-turn-{turn.id}")
            except RunNotAwaitingOutputs:
                log.info("run %s no longer takes outputs; sending the answers as a message", batch)
        if stream is None:
            await self._say(
                ctx, "The quiz's run had already ended, so I've sent your answers as a new message."
            )
            with ctx.trace.model_call(
                "start_run", runtime=self._runtime.name, model=self._runtime.model
            ):
                stream = await self._shielded(resend(), f"start-turn-{turn.id}")
        ctx.trace.set_attribute("run_id", stream.run_id)
        return await self._consume(ctx, stream, Progress())

    # -- failing ---------------------------------------------------------------------------

    async def _not_in_channel(self, ctx: _Context, error: str) -> None:
        """The bot is not in the conversation: tell the student in a direct message how
        to invite it (nothing can be said where they asked)."""
        try:
            await ctx.lifecycle.fail(ctx.turn, f"Slack: {error}")
        except StoreError as exc:
            log.error("turn %s: could not record its failure: %s", ctx.turn.id, exc)
        if not ctx.turn.user_id or error in UNINSTALLED:
            return  # nobody to tell, or no way left to tell them
        channel = ctx.thread.key.channel
        note = NOT_IN_CHANNEL_NOTE.format(channel=channel)
        try:
            await self._replies.post(ctx.turn.user_id, note)
        except SlackError as exc:
            log.warning(
                "could not tell %s that the bot is not in %s: %s", ctx.turn.user_id, channel, exc
            )

    async def _fail(
        self,
        ctx: _Context,
        user_message: str,
        error: str,
        *,
        status: TurnStatus = TurnStatus.FAILED,
    ) -> None:
        """End the answer with what was said, tell the student, record the failure.
        Never raises: this is where errors end up.

        The student is told before the failure is recorded: a process killed in between
        leaves the turn in flight, and the turn, resumed, finds the notice by its metadata
        (``_told_failed``) instead of leaving the student without a word."""
        key = ctx.thread.key
        if ctx.writer is not None:
            try:
                await ctx.writer.close()
            except (SlackError, SlackUnavailable) as exc:
                log.warning("could not close the answer in %s: %s", key, exc)
        if not await self._may_tell(ctx, error):
            return  # left in flight: whoever holds the thread resumes it, and tells
        await self._tell_failed(ctx, user_message)
        try:
            await ctx.lifecycle.fail(ctx.turn, error, status=status)
        except StoreError as exc:
            log.error("turn %s: could not record its failure: %s", ctx.turn.id, exc)

    async def _may_tell(self, ctx: _Context, error: str) -> bool:
        """Whether this process may tell the student now. While its hold on the thread is
        in doubt (its heartbeat could not reach the database), it waits for the hold to be
        confirmed rather than record a failure nobody was told of; False when the lease
        was lost or stays in doubt (the turn is then left in flight, and resumed)."""
        if ctx.may_write is None:
            return True
        give_up = time.monotonic() + HOLD_WAIT
        warned = False
        while True:
            try:
                if ctx.may_write():
                    return True
            except LeaseLost:
                log.warning(
                    "turn %s failed after its thread was taken over: %s", ctx.turn.id, error
                )
                return False
            if time.monotonic() >= give_up:
                log.warning(
                    "turn %s failed; its lease is still in doubt: left to resume", ctx.turn.id
                )
                return False
            if not warned:
                log.warning("turn %s failed while its lease is in doubt: %s", ctx.turn.id, error)
                warned = True
            await asyncio.sleep(0.5)

    async def _tell_failed(self, ctx: _Context, user_message: str) -> None:
        """The failure notice, carrying the turn in its metadata (best effort)."""
        key = ctx.thread.key
        message = error_text(user_message)
        try:
            await self._replies.post(
                key.channel,
                message.text,
                thread_ts=key.thread_ts,
                blocks=message.blocks,
                metadata=reply_metadata(ctx.turn, FAILURE_PART),
            )
            ctx.status.replied()
        except SlackError as exc:
            log.warning("could not tell %s about a failure: %s", key, exc)
            try:
                await ctx.status.clear()
            except SlackError:
                pass

    async def _told_failed(self, ctx: _Context) -> bool:
        """A turn found in flight (its process died): was the student already told it
        failed? Then the failure is recorded now, and nothing more is said."""
        turn = ctx.turn
        if FAILURE_PART not in await already_posted(self._replies, ctx.thread.key, turn):
            return False
        log.info("turn %s: its failure notice was posted before a restart", turn.id)
        await ctx.lifecycle.fail(turn, "failed before a restart", status=TurnStatus.FAILED)
        return True


def _unique(outputs: Sequence[ToolOutput]) -> list[ToolOutput]:
    seen: set[str] = set()
    unique = []
    for output in outputs:
        if output.call_id not in seen:
            seen.add(output.call_id)
            unique.append(output)
    return unique
