"""Working one turn: start (or resume) a run, await it, post what it produced.

A turn ends COMPLETED, FAILED/CANCELLED/EXPIRED (the user is told in plain words) or
parked as NEEDS_TOOL_OUTPUTS while a quiz waits for the student.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from bot.domain import Thread, Turn, TurnKind, TurnStatus
from bot.files import FileIntake
from bot.quiz.flow import QuizFlow, run_id_of
from bot.rendering import error_text, render_answer, render_work
from bot.replies import Replies, SlackError
from bot.runtime.base import (
    RemoteThreadGone,
    RunNotAwaitingOutputs,
    RunResult,
    RunStatus,
    Runtime,
    RuntimeError_,
    UserInput,
)
from bot.status_line import StatusLine
from bot.telemetry.base import Outcome, Telemetry, TurnTrace
from bot.telemetry.parked import ParkedTraces
from bot.thread_context import LOST_MEMORY_NOTE, earlier_context, with_context
from store.base import Store

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_INPUT_CHARS = 32_000
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
    RunStatus.INCOMPLETE: TurnStatus.COMPLETED,
    RunStatus.COMPLETED: TurnStatus.COMPLETED,
}


@dataclass(slots=True)
class _Context:
    thread: Thread
    turn: Turn
    trace: TurnTrace
    status: StatusLine
    parked: bool = False  # waiting on a quiz: the trace stays open for the answers


class TurnProcessor:
    def __init__(
        self,
        *,
        store: Store,
        runtime: Runtime,
        replies: Replies,
        telemetry: Telemetry,
        quizzes: QuizFlow,
        files: FileIntake,
        run_timeout: float,
    ) -> None:
        self._store = store
        self._runtime = runtime
        self._replies = replies
        self._telemetry = telemetry
        self._quizzes = quizzes
        self._files = files
        self._run_timeout = run_timeout
        self._critical: set[asyncio.Future[Any]] = set()
        self._parked = ParkedTraces()

    async def _shielded(self, step: Awaitable[T], name: str) -> T:
        """Run ``step`` to its end even if this turn's task is cancelled (shutdown).

        Used where stopping half-way would repeat or lose work on restart: between the model
        service accepting a run and the store learning its id (a second run on a busy
        thread), and between posting a run's results and recording that (a doubled reply).
        ``drain()`` waits for these at shutdown.
        """
        task = asyncio.ensure_future(step)
        task.set_name(name)
        self._critical.add(task)
        task.add_done_callback(self._critical.discard)
        return await asyncio.shield(task)

    async def _start_recorded(self, turn: Turn, start: Callable[[], Awaitable[str]]) -> str:
        """Start a run (or submit outputs) and record the run id, as one shielded step."""

        async def step() -> str:
            run_id = await start()
            await self._store.update_turn(turn.id, remote_run_id=run_id)
            turn.remote_run_id = run_id
            return run_id

        return await self._shielded(step(), f"start-turn-{turn.id}")

    async def drain(self, timeout: float = 10.0) -> None:
        """At shutdown: let runs being started get their ids recorded."""
        if self._critical:
            await asyncio.wait(set(self._critical), timeout=timeout)

    async def process(self, turn: Turn) -> None:
        """Work one turn to an end state; never raises (errors go to the thread and the log)."""
        thread = await self._store.get_thread_by_id(turn.thread_id)
        if thread is None:  # pragma: no cover - foreign keys make this impossible
            await self._store.update_turn(turn.id, status=TurnStatus.FAILED, error="no thread")
            return
        trace = self._trace_for(thread, turn)
        status = StatusLine(self._replies, self._store, thread.key, turn.id, turn.status_message_ts)
        ctx = _Context(thread=thread, turn=turn, trace=trace, status=status)
        outcome: Outcome = "Indeterminate"
        try:
            outcome = await self._process(ctx)
        except RuntimeError_ as exc:
            log.warning("turn %s on %s failed: %s", turn.id, thread.key, exc)
            await self._fail(ctx, exc.user_message, str(exc))
            outcome = "Fail"
        except SlackError as exc:
            log.warning("turn %s on %s: Slack refused %s", turn.id, thread.key, exc)
            await self._store.update_turn(turn.id, status=TurnStatus.FAILED, error=str(exc))
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

    def close_traces(self) -> None:
        """At shutdown: traces of turns still waiting on a quiz end undecided."""
        self._parked.end_all()

    async def _process(self, ctx: _Context) -> Outcome:
        turn = ctx.turn
        if turn.status is TurnStatus.RUNNING and turn.remote_run_id:
            log.info("resuming turn %s (run %s)", turn.id, turn.remote_run_id)
            return await self._await_run(ctx, turn.remote_run_id)
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
            await self._store.update_turn(turn.id, status=TurnStatus.COMPLETED)
            return "Success"
        await ctx.status.show("Thinking…", force=True)
        await self._store.update_turn(
            turn.id, status=TurnStatus.RUNNING, attempts=turn.attempts + 1
        )
        fresh_thread = ctx.thread.remote_id is None or ctx.thread.runtime != self._runtime.name
        remote_thread = await self._remote_thread(ctx)
        text = turn.text[:MAX_INPUT_CHARS] or "(The student shared files without a message.)"
        if fresh_thread and turn.message_ts != ctx.thread.key.thread_ts:
            text = await self._with_thread_context(ctx, text)
        if turn.files:
            await ctx.status.show("Reading your files…", force=True)
        files, notes = await self._files.prepare(ctx.thread, turn.files)
        for note in notes:
            await ctx.status.replace(note)
        if ctx.status.ts is None:
            await ctx.status.show("Thinking…", force=True)
        pending_run, pending_outputs = await self._quizzes.skip_open(ctx.thread)
        user_input = UserInput(text=text, files=files)
        try:
            with ctx.trace.model_call(
                "start_run", runtime=self._runtime.name, model=self._runtime.model
            ):
                run_id = await self._start_recorded(
                    turn,
                    lambda: self._runtime.start_run(
                        remote_thread,
                        user_input,
                        pending_run_id=pending_run,
                        pending_outputs=pending_outputs,
                    ),
                )
        except RemoteThreadGone:
            # The model service lost the thread (deleted, or a different account): start over.
            log.warning(
                "remote thread %s of %s is gone; starting fresh", remote_thread, ctx.thread.key
            )
            await self._store.set_thread_remote(ctx.thread.id, self._runtime.name, None)
            ctx.thread.remote_id = None
            remote_thread = await self._remote_thread(ctx)
            await self._replies.post(
                ctx.thread.key.channel,
                "_I lost the earlier part of this conversation, so I'm starting fresh._",
                thread_ts=ctx.thread.key.thread_ts,
            )
            with ctx.trace.model_call(
                "start_run", runtime=self._runtime.name, model=self._runtime.model
            ):
                run_id = await self._start_recorded(
                    turn, lambda: self._runtime.start_run(remote_thread, user_input)
                )
        ctx.trace.set_attribute("run_id", run_id)
        return await self._await_run(ctx, run_id)

    async def _with_thread_context(self, ctx: _Context, text: str) -> str:
        """The bot's conversation starts inside an existing Slack thread: read it first."""
        key = ctx.thread.key
        try:
            bot_user_id, bot_id = await self._replies.identity()
            messages = await self._replies.thread_messages(key.channel, key.thread_ts)
        except SlackError as exc:
            log.info("could not read the earlier messages of %s: %s", key, exc)
            return text
        context = earlier_context(
            messages, before_ts=ctx.turn.message_ts, bot_user_id=bot_user_id, bot_id=bot_id
        )
        if context.bot_was_here:
            await ctx.status.replace(LOST_MEMORY_NOTE)
        return with_context(context, text)

    async def _remote_thread(self, ctx: _Context) -> str:
        thread = ctx.thread
        if thread.remote_id is not None and thread.runtime == self._runtime.name:
            return thread.remote_id
        metadata = {
            "slack_team": thread.key.team,
            "slack_channel": thread.key.channel,
            "slack_thread_ts": thread.key.thread_ts,
        }
        with ctx.trace.model_call("create_thread", runtime=self._runtime.name):
            remote_id = await self._runtime.create_thread(metadata)
        await self._store.set_thread_remote(thread.id, self._runtime.name, remote_id)
        thread.remote_id = remote_id
        thread.runtime = self._runtime.name
        ctx.trace.set_attribute("remote_thread_id", remote_id)
        return remote_id

    async def _await_run(self, ctx: _Context, run_id: str) -> Outcome:
        """Await a run through its tool-call rounds until it ends or parks on a quiz."""
        remote_thread = ctx.thread.remote_id
        assert remote_thread is not None
        while True:
            with ctx.trace.model_call("wait_run", model=self._runtime.model, run_id=run_id):
                result = await self._runtime.wait(
                    remote_thread,
                    run_id,
                    on_progress=ctx.status.show,
                    timeout=self._run_timeout,
                )
            outcome, next_run = await self._shielded(
                self._settle(ctx, result), f"settle-turn-{ctx.turn.id}"
            )
            if next_run is None:
                return outcome
            run_id = next_run

    async def _settle(self, ctx: _Context, result: RunResult) -> tuple[Outcome, str | None]:
        """Post what a run produced and record where the turn stands.

        Returns the outcome, or the id of the run to await next (when every function call
        was invalid and the errors went straight back to the model).
        """
        await self._post_results(ctx, result)
        if result.status is not RunStatus.REQUIRES_ACTION:
            return await self._finish(ctx, result), None
        student = await self._student_of(ctx.turn)
        immediate = await self._quizzes.open_quizzes(ctx.thread, ctx.turn, result, student)
        if immediate is None:
            # Parked: the quiz waits for the student; this worker moves on.
            await self._store.update_turn(
                ctx.turn.id, status=TurnStatus.NEEDS_TOOL_OUTPUTS, remote_run_id=result.run_id
            )
            await ctx.status.clear()
            ctx.parked = True
            return "Indeterminate", None
        # Every call was invalid: hand the errors straight back so the model can retry.
        remote_thread = ctx.thread.remote_id
        assert remote_thread is not None
        with ctx.trace.model_call(
            "submit_tool_outputs", model=self._runtime.model, run_id=result.run_id
        ):
            run_id = await self._runtime.submit_tool_outputs(
                remote_thread, result.run_id, immediate
            )
        await self._store.update_turn(ctx.turn.id, remote_run_id=run_id)
        return "Indeterminate", run_id

    async def _student_of(self, turn: Turn) -> str | None:
        if turn.kind is TurnKind.QUIZ_ANSWERS and turn.parent_turn_id is not None:
            parent = await self._store.get_turn(turn.parent_turn_id)
            if parent is not None and parent.user_id:
                return parent.user_id
        return turn.user_id

    async def _post_results(self, ctx: _Context, result: RunResult) -> None:
        key = ctx.thread.key
        chunks = render_answer(result.messages) if result.messages else []
        if result.status is RunStatus.COMPLETED or result.status is RunStatus.INCOMPLETE:
            if not chunks:
                chunks = render_answer([])
        for i, chunk in enumerate(chunks):
            if i == 0:
                await ctx.status.replace(chunk.text, blocks=chunk.blocks)
            else:
                await self._replies.post(
                    key.channel, chunk.text, thread_ts=key.thread_ts, blocks=chunk.blocks
                )
        # What the code made comes right after the answer (people look before they read);
        # the code itself follows as one compact "Show work" reply.
        for generated in result.files:
            try:
                content = await self._runtime.download_file(generated)
                await self._replies.upload(key.channel, key.thread_ts, generated.filename, content)
            except (RuntimeError_, SlackError) as exc:
                log.warning("could not share generated file %s: %s", generated.file_id, exc)
                await self._replies.post(
                    key.channel,
                    f"_I made a file ({generated.filename}) but couldn't share it._",
                    thread_ts=key.thread_ts,
                )
        for work in render_work(result.steps):
            await self._replies.post(
                key.channel, work.text, thread_ts=key.thread_ts, blocks=work.blocks
            )

    async def _finish(self, ctx: _Context, result: RunResult) -> Outcome:
        status = _FINAL_STATUS.get(result.status, TurnStatus.FAILED)
        if result.status is RunStatus.INCOMPLETE:
            await self._replies.post(
                ctx.thread.key.channel,
                "_The answer was cut short. Ask me to continue if you need the rest._",
                thread_ts=ctx.thread.key.thread_ts,
            )
        elif result.status in STATUS_MESSAGES:
            log.warning("run %s ended %s: %s", result.run_id, result.status, result.error)
            await self._fail(
                ctx,
                STATUS_MESSAGES[result.status],
                result.error or str(result.status),
                status=status,
            )
            return "Fail"
        await ctx.status.clear()
        await self._store.update_turn(ctx.turn.id, status=status, remote_run_id=result.run_id)
        return "Success" if result.status is RunStatus.COMPLETED else "Indeterminate"

    async def _submit_quiz_answers(self, ctx: _Context) -> Outcome:
        turn = ctx.turn
        batch = turn.text
        remote_thread = ctx.thread.remote_id
        submission = await self._quizzes.claim_submission(batch)
        if submission is None or remote_thread is None:
            log.info("turn %s: nothing to submit for %s", turn.id, batch)
            await self._store.update_turn(turn.id, status=TurnStatus.COMPLETED)
            return "Indeterminate"
        await ctx.status.show("Checking your answers…", force=True)
        await self._store.update_turn(
            turn.id, status=TurnStatus.RUNNING, attempts=turn.attempts + 1
        )
        if turn.parent_turn_id is not None:
            await self._store.update_turn(turn.parent_turn_id, status=TurnStatus.COMPLETED)

        async def submit() -> str:
            run_id = await self._runtime.submit_tool_outputs(
                remote_thread, run_id_of(batch), submission.outputs
            )
            # In the same shielded step: answers the model has must never go out again.
            await self._quizzes.mark_submitted(submission)
            return run_id

        async def resend() -> str:
            # Marked first and resent in one shielded step; a process killed in between
            # finds the EXPIRED quizzes again (claim_submission) and resends them.
            await self._quizzes.mark_expired(submission)
            # Calls still open on the thread are closed first (no-op on an expired run).
            return await self._runtime.start_run(
                remote_thread,
                UserInput(text=submission.as_message),
                pending_run_id=run_id_of(batch),
                pending_outputs=submission.resent_outputs,
            )

        run_id: str | None = None
        if not submission.resend:
            try:
                with ctx.trace.model_call(
                    "submit_tool_outputs", model=self._runtime.model, run_id=run_id_of(batch)
                ):
                    run_id = await self._start_recorded(turn, submit)
            except RunNotAwaitingOutputs:
                log.info("run %s no longer takes outputs; sending the answers as a message", batch)
        if run_id is None:
            await ctx.status.replace(
                "The quiz's run had already ended, so I've sent your answers as a new message."
            )
            await ctx.status.show("Thinking…", force=True)
            with ctx.trace.model_call(
                "start_run", runtime=self._runtime.name, model=self._runtime.model
            ):
                run_id = await self._start_recorded(turn, resend)
        ctx.trace.set_attribute("run_id", run_id)
        return await self._await_run(ctx, run_id)

    async def _fail(
        self,
        ctx: _Context,
        user_message: str,
        error: str,
        *,
        status: TurnStatus = TurnStatus.FAILED,
    ) -> None:
        await self._store.update_turn(ctx.turn.id, status=status, error=error[:500])
        message = error_text(user_message)
        try:
            await ctx.status.replace(message.text, blocks=message.blocks)
        except SlackError as exc:
            log.warning("could not tell %s about a failure: %s", ctx.thread.key, exc)
