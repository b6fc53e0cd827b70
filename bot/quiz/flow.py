"""The quiz's life: a ``display_quiz`` call becomes a message, clicks become answers, and
complete answers become the call's tool output.

Everything about an open quiz lives in the store, so clicks after a restart work, and
decisions use the store's copy only: a payload's ``value`` or ``private_metadata`` merely
points at a quiz, which is then checked (channel, message, student, status, indices).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from bot.domain import QuestionType, Quiz, QuizMove, QuizStatus, Thread, Turn
from bot.quiz.answers import (
    answers_as_user_message,
    choice_answer,
    skipped_output,
    tool_output_for,
    validate_free_answer,
)
from bot.quiz.blocks import (
    FREE_INPUT_BLOCK,
    QuizPayloadError,
    closed_quiz_message,
    free_response_modal,
    quiz_message,
)
from bot.quiz.schema import DISPLAY_QUIZ_NAME
from bot.quiz.validate import QuizValidationError, error_output, parse_quiz_arguments
from bot.replies import SlackError
from bot.runtime.base import RunResult, ToolOutput
from bot.slack.surface import Surface
from store.base import Store

log = logging.getLogger(__name__)

QUIZ_METADATA_EVENT = "tutorbot_quiz"
# A click on a quiz posted a moment ago waits for its message to be recorded (seconds).
RECORD_WAITS = (0.05, 0.1, 0.2, 0.4, 0.75)


def quiz_metadata(quiz_id: int) -> dict[str, object]:
    """Slack message metadata naming the quiz its message shows (see ``_posted_before``)."""
    return {"event_type": QUIZ_METADATA_EVENT, "event_payload": {"quiz": quiz_id}}


# Called with (thread id, parent turn id, batch run id, user) once a run's quizzes are answered.
EnqueueAnswers = Callable[[int, int, str, str | None], Awaitable[object]]

NOT_FOUND = "I can't find that quiz any more."
NOT_YOURS = "This quiz is for <@{student}>. Ask me for your own with `/tutor quiz <topic>`."
CLOSED = {
    QuizStatus.ANSWERED: "This quiz was already submitted.",
    QuizStatus.SUBMITTED: "This quiz was already submitted.",
    QuizStatus.SKIPPED: "This quiz was skipped because the conversation moved on.",
    QuizStatus.EXPIRED: "This quiz has expired; your answers were sent as a message.",
    QuizStatus.INVALID: NOT_FOUND,
}
INCOMPLETE = "Please answer every question first ({missing} left), then press Submit."
CLICK_AGAIN = "That took a little too long — please click the button again."


def batch_key(run_id: str, first_call_id: str) -> str:
    """Names one round of function calls: an Assistants run keeps its id across rounds."""
    return f"{run_id}#{first_call_id}"


def run_id_of(batch: str) -> str:
    return batch.split("#", 1)[0]


@dataclass(frozen=True, slots=True)
class Submission:
    """The answers of one run's quizzes, ready to go back to the model."""

    batch_run_id: str
    quizzes: list[Quiz]
    outputs: list[ToolOutput]
    # The run can no longer take them: the answers go in as a user message instead.
    resend: bool = False

    @property
    def resent_outputs(self) -> list[ToolOutput]:
        """Outputs that close the calls when the answers go in as a message instead."""
        note = json.dumps(
            {
                "status": "answered_in_message",
                "message": "The student's answers follow in their next message.",
            }
        )
        return [
            ToolOutput(
                q.call_id,
                q.error_output if q.status is QuizStatus.INVALID and q.error_output else note,
            )
            for q in self.quizzes
        ]

    @property
    def as_message(self) -> str:
        return answers_as_user_message(
            [q for q in self.quizzes if q.status is not QuizStatus.INVALID]
        )


@dataclass(slots=True)
class QuizSkip:
    """What a new message owes the quizzes still open in its thread (see ``plan_skip``)."""

    run_id: str | None  # the run that asked
    outputs: list[ToolOutput] = field(default_factory=list)
    moves: list[QuizMove] = field(default_factory=list)
    parked_turns: list[int] = field(default_factory=list)
    quizzes: list[Quiz] = field(default_factory=list)  # to refresh once recorded


@dataclass(frozen=True, slots=True)
class FreeResponseResult:
    errors: dict[str, str] | None  # view_submission field errors (keep the modal open)
    quiz: Quiz | None  # the updated quiz, whose message should be refreshed after the ack


class QuizFlow:
    def __init__(self, *, store: Store, replies: Surface) -> None:
        self._store = store
        self._replies = replies
        self.enqueue_answers: EnqueueAnswers | None = None
        # One refresh of a quiz's message at a time (lock, and how many want it).
        self._refresh_locks: dict[int, tuple[asyncio.Lock, int]] = {}

    # -- from the run: open quizzes ------------------------------------------------------

    async def open_quizzes(
        self,
        thread: Thread,
        turn: Turn,
        result: RunResult,
        student: str | None,
        *,
        look_first: bool = False,
    ) -> list[ToolOutput] | None:
        """Post a message per valid ``display_quiz`` call of a run that requires action.
        ``look_first``: the turn was worked before, so Slack may show a quiz already.

        Returns None when at least one quiz now waits for the student; otherwise (every call
        invalid or unknown) the error outputs to submit right away.
        """
        outputs: list[ToolOutput] = []
        opened = False
        if not result.tool_calls:
            return outputs
        batch = batch_key(result.run_id, result.tool_calls[0].call_id)
        for call in result.tool_calls:
            error: str | None = None
            if call.name != DISPLAY_QUIZ_NAME:
                error = json.dumps(
                    {"error": f"Unknown function {call.name!r}; only {DISPLAY_QUIZ_NAME} exists."}
                )
            else:
                try:
                    spec = parse_quiz_arguments(call.arguments)
                except QuizValidationError as exc:
                    log.info("display_quiz %s rejected: %s", call.call_id, exc)
                    error = error_output(exc)
            if error is not None:
                # Remembered so the error goes out with the batch's other outputs.
                await self._create(
                    thread,
                    turn,
                    batch,
                    call.call_id,
                    student,
                    title="",
                    questions=(),
                    status=QuizStatus.INVALID,
                    error=error,
                )
                outputs.append(ToolOutput(call.call_id, error))
                continue
            quiz = await self._create(
                thread,
                turn,
                batch,
                call.call_id,
                student,
                title=spec.title,
                questions=spec.questions,
                status=QuizStatus.OPEN,
                error=None,
            )
            opened = True
            if quiz.message_ts is None:  # not recorded as posted (a resumed turn may have)
                ts = await self._posted_before(thread, turn, quiz) if look_first else None
                if ts is None:
                    text, blocks = quiz_message(quiz)
                    ts = await self._replies.post(
                        thread.key.channel,
                        text,
                        thread_ts=thread.key.thread_ts,
                        blocks=blocks,
                        metadata=quiz_metadata(quiz.id),
                    )
                await self._store.set_quiz_message(quiz.id, ts)
        return None if opened else outputs

    async def _posted_before(self, thread: Thread, turn: Turn, quiz: Quiz) -> str | None:
        """The quiz's message if an earlier attempt of the turn posted it but died (or lost
        the database) before recording it: posting again would leave the student two
        copies, one whose buttons no longer show what they do."""
        key = thread.key
        # Quiz-answer turns have no Slack message of their own: look at the whole thread.
        after = turn.message_ts if turn.message_ts[:1].isdigit() else key.thread_ts
        try:
            mine = await self._replies.bot_replies_after(key.channel, key.thread_ts, after)
        except SlackError as exc:
            log.info("could not look for quiz %s in %s: %s", quiz.id, key, exc.error)
            return None
        wanted = quiz_metadata(quiz.id)
        for message in mine:
            metadata = message.get("metadata") or {}
            if (
                metadata.get("event_type") == wanted["event_type"]
                and metadata.get("event_payload") == wanted["event_payload"]
            ):
                log.info(
                    "quiz %s was posted before a restart (%s); using it", quiz.id, message["ts"]
                )
                return str(message["ts"])
        return None

    async def _create(
        self,
        thread: Thread,
        turn: Turn,
        batch: str,
        call_id: str,
        student: str | None,
        *,
        title: str,
        questions: Sequence,
        status: QuizStatus,
        error: str | None,
    ) -> Quiz:
        return await self._store.create_quiz(
            turn_id=turn.id,
            thread_id=thread.id,
            call_id=call_id,
            title=title,
            questions=list(questions),
            status=status,
            channel=thread.key.channel,
            remote_run_id=batch,
            student_id=student,
            error_output=error,
        )

    # -- from the run: skip or submit ----------------------------------------------------

    async def plan_skip(self, thread: Thread) -> QuizSkip | None:
        """The student wrote again while a quiz was open: what closing it takes.

        Nothing is changed here: the moves are recorded together with the run that sends
        the outputs (``TurnLifecycle.run_started``), so a failed start leaves the quiz open
        and its outputs owed, to be sent by the next start. Unanswered quizzes get a "moved
        on" output; fully answered ones (waiting for their submission) their real answers.
        """
        waiting = await self._store.list_quizzes(
            thread_id=thread.id, statuses=[QuizStatus.OPEN, QuizStatus.ANSWERED]
        )
        if not waiting:
            return None
        batch = waiting[-1].remote_run_id
        batch_quizzes = await self._store.list_quizzes(thread_id=thread.id, remote_run_id=batch)
        skip = QuizSkip(run_id=run_id_of(batch) if batch else None)
        open_or_answered = (QuizStatus.OPEN, QuizStatus.ANSWERED)
        for quiz in batch_quizzes:
            if quiz.status is QuizStatus.INVALID:
                skip.outputs.append(ToolOutput(quiz.call_id, quiz.error_output or skipped_output()))
            elif quiz.status is QuizStatus.ANSWERED and quiz.is_complete:
                skip.outputs.append(ToolOutput(quiz.call_id, tool_output_for(quiz)))
                skip.moves.append(QuizMove(quiz.id, QuizStatus.SUBMITTED, (QuizStatus.ANSWERED,)))
            elif quiz.status in open_or_answered:
                skip.outputs.append(ToolOutput(quiz.call_id, skipped_output()))
                skip.moves.append(QuizMove(quiz.id, QuizStatus.SKIPPED, open_or_answered))
            else:
                continue
            skip.quizzes.append(quiz)
        # Older batches (should not exist) are closed too, without outputs: their runs are gone.
        for quiz in waiting:
            if quiz.remote_run_id != batch:
                skip.moves.append(QuizMove(quiz.id, QuizStatus.SKIPPED, open_or_answered))
                skip.quizzes.append(quiz)
        skip.parked_turns = sorted({q.turn_id for q in batch_quizzes})
        return skip

    async def outputs_for_calls(self, thread: Thread, call_ids: Sequence[str]) -> list[ToolOutput]:
        """Outputs for function calls the model service says were never answered (a
        thread wedged by an older version): rebuilt from what the store knows."""
        quizzes = {q.call_id: q for q in await self._store.list_quizzes(thread_id=thread.id)}
        outputs = []
        for call_id in call_ids:
            quiz = quizzes.get(call_id)
            if quiz is not None and quiz.status is QuizStatus.INVALID and quiz.error_output:
                outputs.append(ToolOutput(call_id, quiz.error_output))
            elif (
                quiz is not None
                and quiz.is_complete
                and quiz.status
                in (
                    QuizStatus.SUBMITTED,
                    QuizStatus.ANSWERED,
                )
            ):
                outputs.append(ToolOutput(call_id, tool_output_for(quiz)))
            else:
                outputs.append(ToolOutput(call_id, skipped_output()))
        return outputs

    async def refresh_all(self, quizzes: Sequence[Quiz]) -> None:
        """Show these quizzes as they are now in the store (after a recorded change)."""
        for quiz in quizzes:
            await self.refresh_message(quiz)

    async def claim_submission(self, batch_run_id: str) -> Submission | None:
        """The outputs of a run whose quizzes are all answered; None if nothing to submit.

        Quizzes already marked EXPIRED (their answers were about to go in as a message when
        the process stopped) come back as a submission to resend, never dropped.
        """
        quizzes = await self._store.list_quizzes(remote_run_id=batch_run_id)
        statuses = {q.status for q in quizzes}
        if statuses & {QuizStatus.OPEN, QuizStatus.SUBMITTED, QuizStatus.SKIPPED}:
            return None  # still being answered, or this batch was handled
        if QuizStatus.ANSWERED not in statuses:
            if QuizStatus.EXPIRED in statuses:
                return Submission(batch_run_id, quizzes, [], resend=True)
            return None
        outputs: list[ToolOutput] = []
        for quiz in quizzes:
            if quiz.status is QuizStatus.ANSWERED:
                outputs.append(ToolOutput(quiz.call_id, tool_output_for(quiz)))
            elif quiz.status is QuizStatus.INVALID:
                outputs.append(ToolOutput(quiz.call_id, quiz.error_output or "{}"))
        return Submission(batch_run_id, quizzes, outputs)

    async def mark_submitted(self, submission: Submission) -> None:
        await self._close(submission, QuizStatus.SUBMITTED)

    async def mark_expired(self, submission: Submission) -> None:
        await self._close(submission, QuizStatus.EXPIRED)

    async def _close(self, submission: Submission, status: QuizStatus) -> None:
        ids = [q.id for q in submission.quizzes if q.status is QuizStatus.ANSWERED]
        moved = set(
            await self._store.transition_quizzes(ids, status, from_statuses=[QuizStatus.ANSWERED])
        )
        for quiz in submission.quizzes:
            if quiz.id in moved:
                quiz.status = status
                await self.refresh_message(quiz)

    async def refresh_message(self, quiz: Quiz) -> None:
        """Show the quiz as the store has it now (buttons while open, answers once closed).

        Refreshes of one quiz run one at a time and render a fresh read, and a refresh
        that finds the row changed while it was updating Slack goes again: whatever the
        order clicks (or processes) land in, the message ends up showing what is stored.
        """
        lock, users = self._refresh_locks.get(quiz.id, (asyncio.Lock(), 0))
        self._refresh_locks[quiz.id] = (lock, users + 1)
        try:
            async with lock:
                for _ in range(5):
                    fresh = await self._store.get_quiz(quiz.id)
                    if fresh is None or fresh.message_ts is None:
                        return
                    await self._show(fresh)
                    again = await self._store.get_quiz(quiz.id)
                    if again is None or (again.answers, again.status) == (
                        fresh.answers,
                        fresh.status,
                    ):
                        return
        finally:
            lock, users = self._refresh_locks[quiz.id]
            if users <= 1:
                del self._refresh_locks[quiz.id]
            else:
                self._refresh_locks[quiz.id] = (lock, users - 1)

    async def _show(self, quiz: Quiz) -> None:
        assert quiz.message_ts is not None
        if quiz.status is QuizStatus.OPEN:
            text, blocks = quiz_message(quiz)
        else:
            others_open = False
            if quiz.status is QuizStatus.ANSWERED and quiz.remote_run_id is not None:
                batch = await self._store.list_quizzes(remote_run_id=quiz.remote_run_id)
                others_open = any(q.status is QuizStatus.OPEN and q.id != quiz.id for q in batch)
            text, blocks = closed_quiz_message(quiz, others_open=others_open)
        try:
            await self._replies.update(quiz.channel, quiz.message_ts, text, blocks=blocks)
        except SlackError as exc:
            log.warning("could not update quiz %s message: %s", quiz.id, exc)

    # -- from the student: clicks and the modal ------------------------------------------

    async def _usable(
        self,
        quiz_id: int,
        user: str,
        channel: str | None,
        message_ts: str | None,
        *,
        statuses: tuple[QuizStatus, ...] = (QuizStatus.OPEN,),
    ) -> tuple[Quiz | None, str | None]:
        """The quiz if this user may answer it from this message, else (None, why not)."""
        quiz = await self._store.get_quiz(quiz_id)
        if quiz is None or quiz.status is QuizStatus.INVALID:
            return None, NOT_FOUND
        if quiz.message_ts is None and channel == quiz.channel and message_ts is not None:
            # Posted, its message not recorded yet (the turn records it right after the
            # post): a quick student clicks in between. Wait for the record, briefly.
            quiz = await self._with_message_recorded(quiz)
        if channel is not None and (channel != quiz.channel or message_ts != quiz.message_ts):
            log.warning("quiz %s click from a foreign message %s/%s", quiz_id, channel, message_ts)
            return None, NOT_FOUND
        if quiz.student_id and user != quiz.student_id:
            return None, NOT_YOURS.format(student=quiz.student_id)
        if quiz.status not in statuses:
            return None, CLOSED[quiz.status]
        return quiz, None

    async def _with_message_recorded(self, quiz: Quiz) -> Quiz:
        """The quiz read again until its message's ts is recorded (at most ~1.5 s: a
        click is answered within Slack's 3 s)."""
        for delay in RECORD_WAITS:
            await asyncio.sleep(delay)
            fresh = await self._store.get_quiz(quiz.id)
            if fresh is None:
                return quiz
            quiz = fresh
            if quiz.message_ts is not None:
                break
        return quiz

    async def choose(
        self, quiz_id: int, question: int, choice: int, *, user: str, channel: str, message_ts: str
    ) -> str | None:
        """A multiple-choice click. Returns a note for the user (ephemeral) or None."""
        quiz, problem = await self._usable(quiz_id, user, channel, message_ts)
        if quiz is None:
            return problem
        try:
            answer = choice_answer(quiz, question, choice)
        except QuizPayloadError as exc:
            log.warning("quiz %s: %s", quiz_id, exc)
            return NOT_FOUND
        updated = await self._store.record_answer(quiz.id, question, answer)
        if updated is None:
            fresh = await self._store.get_quiz(quiz.id)
            return CLOSED.get(fresh.status, NOT_FOUND) if fresh else NOT_FOUND
        await self.refresh_message(updated)
        return None

    async def open_free_response(
        self,
        quiz_id: int,
        question: int,
        *,
        user: str,
        channel: str,
        message_ts: str,
        trigger_id: str,
    ) -> str | None:
        quiz, problem = await self._usable(quiz_id, user, channel, message_ts)
        if quiz is None:
            return problem
        if not 0 <= question < len(quiz.questions) or (
            quiz.questions[question].type is not QuestionType.FREE_RESPONSE
        ):
            return NOT_FOUND
        metadata = json.dumps({"quiz_id": quiz.id, "question": question})
        try:
            await self._replies.open_view(trigger_id, free_response_modal(quiz, question, metadata))
        except SlackError as exc:
            if exc.error in ("expired_trigger_id", "exchanged_trigger_id", "invalid_trigger_id"):
                return CLICK_AGAIN
            log.warning("could not open the answer modal for quiz %s: %s", quiz.id, exc)
            return "I couldn't open the answer box. Please try again."
        return None

    async def save_free_response(
        self, private_metadata: str | None, *, user: str, text: str | None
    ) -> FreeResponseResult:
        """A submitted answer modal. Field errors keep the modal open."""
        try:
            meta = json.loads(private_metadata or "")
            quiz_id, question = int(meta["quiz_id"]), int(meta["question"])
        except (ValueError, TypeError, KeyError):
            log.warning("answer modal with unreadable private_metadata from %s", user)
            return FreeResponseResult({FREE_INPUT_BLOCK: NOT_FOUND}, None)
        quiz, problem = await self._usable(quiz_id, user, None, None)
        if quiz is None:
            return FreeResponseResult({FREE_INPUT_BLOCK: problem or NOT_FOUND}, None)
        if not 0 <= question < len(quiz.questions) or (
            quiz.questions[question].type is not QuestionType.FREE_RESPONSE
        ):
            return FreeResponseResult({FREE_INPUT_BLOCK: NOT_FOUND}, None)
        error = validate_free_answer(text)
        if error is not None:
            return FreeResponseResult({FREE_INPUT_BLOCK: error}, None)
        updated = await self._store.record_answer(quiz.id, question, (text or "").strip())
        if updated is None:
            return FreeResponseResult({FREE_INPUT_BLOCK: CLOSED[QuizStatus.SUBMITTED]}, None)
        return FreeResponseResult(None, updated)

    async def submit(self, quiz_id: int, *, user: str, channel: str, message_ts: str) -> str | None:
        quiz, problem = await self._usable(
            quiz_id, user, channel, message_ts, statuses=(QuizStatus.OPEN, QuizStatus.ANSWERED)
        )
        if quiz is None:
            return problem
        if quiz.status is QuizStatus.ANSWERED:
            # Submitted already. If the process that took that click stopped before it
            # queued the answers (the message still shows its buttons), finish its job:
            # queueing is keyed by the batch, so answers queued already are not again.
            await self._answers_ready(quiz, user)
            return CLOSED[QuizStatus.ANSWERED]
        if not quiz.is_complete:
            missing = sum(1 for a in quiz.answers if a is None)
            return INCOMPLETE.format(missing=missing)
        if not await self._store.transition_quizzes(
            [quiz.id], QuizStatus.ANSWERED, from_statuses=[QuizStatus.OPEN]
        ):
            return CLOSED[QuizStatus.SUBMITTED]  # a click at the same moment submitted it
        quiz.status = QuizStatus.ANSWERED
        await self._answers_ready(quiz, user)
        return None

    async def _answers_ready(self, quiz: Quiz, user: str) -> None:
        """A quiz was submitted: its message says so, and once no quiz of its batch is
        still open, the batch's answers are queued for the model."""
        batch = await self._store.list_quizzes(remote_run_id=quiz.remote_run_id)
        await self.refresh_message(quiz)  # or "waiting for the other quiz"
        if any(q.status is QuizStatus.OPEN for q in batch):
            return
        if self.enqueue_answers is not None and quiz.remote_run_id is not None:
            await self.enqueue_answers(quiz.thread_id, quiz.turn_id, quiz.remote_run_id, user)
