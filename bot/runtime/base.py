"""The one small interface every model protocol adapter implements.

The conversation core speaks only these types; ``ResponsesRuntime`` and ``AssistantsRuntime``
translate them to the wire. Remote ids are opaque strings (``conv_…``/``thread_…`` for
threads, ``resp_…``/``run_…`` for runs).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol


class RuntimeError_(Exception):
    """Base of the errors a runtime raises; ``user_message`` is safe to show in Slack."""

    user_message = "I couldn't reach the model service. Please try again in a moment."


class ModelServiceError(RuntimeError_):
    """The model service failed after the SDK's bounded retries (429, 5xx, timeouts, 4xx)."""


class RemoteThreadGone(RuntimeError_):
    """The model-side thread/conversation no longer exists (404); start a fresh one."""


class RunNotAwaitingOutputs(RuntimeError_):
    """The run can no longer take tool outputs (expired, cancelled, finished)."""

    user_message = "That quiz's run has ended, so I sent your answers as a new message."


class MissingToolOutputs(RuntimeError_):
    """The service still waits for outputs to these function calls before it takes input."""

    def __init__(self, message: str, call_ids: Sequence[str]) -> None:
        super().__init__(message)
        self.call_ids = tuple(call_ids)


class RunTimedOut(RuntimeError_):
    user_message = "This is taking too long, so I stopped. Please ask again."


class RunStuck(RuntimeError_):
    """The service accepted the run but never started it (stuck ``queued``); cancelled."""

    user_message = (
        "The model service never started on this answer, so I stopped it. "
        "Please send your message again."
    )


class RunStatus(enum.StrEnum):
    IN_PROGRESS = "in_progress"
    REQUIRES_ACTION = "requires_action"  # function calls wait for tool outputs
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    INCOMPLETE = "incomplete"


@dataclass(frozen=True, slots=True)
class InputFile:
    """A file already uploaded to the model service, attached to a user message."""

    file_id: str
    filename: str
    # "file_search" for documents (PDF, text), "code_interpreter" for data (CSV),
    # "image" for pictures the model should look at.
    use: str = "file_search"


@dataclass(frozen=True, slots=True)
class UserInput:
    text: str
    files: Sequence[InputFile] = ()


@dataclass(frozen=True, slots=True)
class ToolCall:
    call_id: str
    name: str
    arguments: str  # raw JSON text, exactly as the model produced it


@dataclass(frozen=True, slots=True)
class ToolOutput:
    call_id: str
    output: str


@dataclass(frozen=True, slots=True)
class Citation:
    """A reference in an answer: ``marker`` is the raw text in the message to replace."""

    marker: str
    filename: str
    file_id: str | None = None
    quote: str | None = None


@dataclass(frozen=True, slots=True)
class AssistantMessage:
    text: str
    citations: Sequence[Citation] = ()


@dataclass(frozen=True, slots=True)
class GeneratedFile:
    """A file the model produced (a plot, a CSV), to be downloaded and shared in Slack."""

    file_id: str
    filename: str
    container_id: str | None = None  # Responses code interpreter files live in a container
    content: bytes | None = None  # already in hand (an inline image output)


@dataclass(frozen=True, slots=True)
class CodeStep:
    """One code interpreter call: the code it ran and what came out."""

    code: str
    logs: str = ""
    files: Sequence[GeneratedFile] = ()


@dataclass(slots=True)
class RunResult:
    run_id: str
    status: RunStatus
    messages: list[AssistantMessage] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    steps: list[CodeStep] = field(default_factory=list)
    files: list[GeneratedFile] = field(default_factory=list)
    error: str | None = None  # the service's reason, for logs (not shown verbatim)


# -- streaming -------------------------------------------------------------------------
# A run is consumed as a stream of events: text as the model writes it, the steps of its
# tools (each with the position to resume after it), and finally the whole result.
# Runtimes that cannot stream (a server without it) poll and yield steps and the result.


@dataclass(frozen=True, slots=True)
class TextDelta:
    """More of the answer, in the model's Markdown. ``message`` numbers the assistant
    messages of a run (an Assistants run may write several, e.g. before and after code)."""

    text: str
    message: int = 0
    cursor: int | None = None  # resume right after this (Responses: its sequence number)


class StepKind(enum.StrEnum):
    CODE = "code"  # the code interpreter
    FILE_SEARCH = "file_search"  # reading the student's files
    QUIZ = "quiz"  # the model is preparing a display_quiz call


class StepState(enum.StrEnum):
    WRITING = "writing"  # e.g. the code is being written
    RUNNING = "running"  # e.g. the code runs
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class StepUpdate:
    """A tool step of the run changed: shown as a task in the answer's timeline."""

    step_id: str
    kind: StepKind
    state: StepState
    cursor: int | None = None


@dataclass(frozen=True, slots=True)
class Finished:
    """The last event of a stream: the run ended or needs tool outputs."""

    result: RunResult


RunEvent = TextDelta | StepUpdate | Finished
# Awaited with a model-side thread's id once the service created it (``Runtime.start_run``).
ThreadCreated = Callable[[str], Awaitable[None]]


class RunStream(Protocol):
    """One run (or continuation) being consumed. Iterate it to its ``Finished`` event.

    ``run_id`` (and ``thread_id``, which a runtime may create while starting) are known
    before the first event, so the caller can record them before anything is shown.
    A dropped connection is resumed inside the stream; errors surface as ``RuntimeError_``.
    A resumed stream with ``regenerates`` true (a server that keeps nothing) writes its
    answer anew, possibly differently: what was shown of it is replaced, not continued.
    """

    run_id: str
    thread_id: str

    def __aiter__(self) -> AsyncIterator[RunEvent]: ...

    async def aclose(self) -> None:
        """Stop reading (the run itself goes on unless cancelled)."""


class Runtime(Protocol):
    """A model protocol adapter. Every method may raise a ``RuntimeError_`` subclass."""

    name: str
    model: str

    async def start(self) -> None:
        """Prepare once at start (e.g. create or look up the assistant)."""

    async def start_run(
        self,
        thread_id: str | None,
        user_input: UserInput,
        *,
        metadata: dict[str, str],
        pending_run_id: str | None = None,
        pending_outputs: Sequence[ToolOutput] = (),
        on_thread_created: ThreadCreated | None = None,
    ) -> RunStream:
        """Add the user's message and start a run; returns once its id is known.

        ``thread_id`` None creates the model-side thread (with ``metadata``) as part of
        starting; the stream's ``thread_id`` says which. A runtime whose threads live at
        the model service awaits ``on_thread_created`` with the new thread's id before it
        starts the run there: once recorded, a run start lost in a crash is found on that
        thread (``find_run``) rather than asked again in a new one. ``pending_outputs`` answer
        function calls still open on the thread (a skipped quiz) so the service accepts
        the new message; ``pending_run_id`` is the run that asked.
        """

    async def submit_tool_outputs(
        self, thread_id: str, run_id: str, outputs: Sequence[ToolOutput]
    ) -> RunStream:
        """Answer a run's function calls and go on streaming.

        Raises ``RunNotAwaitingOutputs`` when the run can no longer take them.
        """

    async def resume(self, thread_id: str, run_id: str, *, cursor: int | None) -> RunStream:
        """Pick up a run started earlier (by this or a previous process) after ``cursor``.

        ``cursor`` None: from wherever the runtime can (a finished run yields its result).
        """

    async def cancel(self, thread_id: str, run_id: str) -> None:
        """Best effort: stop a run that is still working."""

    async def find_run(self, thread_id: str, user_input: UserInput) -> RunStream | None:
        """The run a previous attempt started for ``user_input`` if the service has it
        (its start may have gone through although the attempt never learnt the id)."""

    async def find_submitted(
        self, thread_id: str, run_id: str, outputs: Sequence[ToolOutput]
    ) -> RunStream | None:
        """The run that took ``outputs`` if a previous attempt's submission reached the
        service (its answer was lost with the process), so they are not sent twice."""

    async def upload_file(self, filename: str, content: bytes) -> str:
        """Upload a user's file to the model service; returns its file id."""

    async def download_file(self, file: GeneratedFile) -> bytes:
        """Fetch the bytes of a file the model produced."""

    async def aclose(self) -> None: ...
