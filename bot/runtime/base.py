"""The one small interface every model protocol adapter implements.

The conversation core speaks only these types; ``ResponsesRuntime`` and ``AssistantsRuntime``
translate them to the wire. Remote ids are opaque strings (``conv_…``/``thread_…`` for
threads, ``resp_…``/``run_…`` for runs).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Sequence
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


class RunTimedOut(RuntimeError_):
    user_message = "This is taking too long, so I stopped. Please ask again."


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


# Called with a short label ("Writing code…") whenever the run's visible progress changes.
ProgressCallback = Callable[[str], Awaitable[None]]


class Runtime(Protocol):
    """A model protocol adapter. Every method may raise a ``RuntimeError_`` subclass."""

    name: str
    model: str

    async def start(self) -> None:
        """Prepare once at start (e.g. create or look up the assistant)."""

    async def create_thread(self, metadata: dict[str, str]) -> str:
        """Create a model-side thread; returns its id."""

    async def start_run(
        self,
        thread_id: str,
        user_input: UserInput,
        *,
        pending_run_id: str | None = None,
        pending_outputs: Sequence[ToolOutput] = (),
    ) -> str:
        """Add the user's message and start a run; returns the run id.

        ``pending_outputs`` answer function calls still open on the thread (a skipped quiz)
        so the service accepts the new message; ``pending_run_id`` is the run that asked.
        """

    async def submit_tool_outputs(
        self, thread_id: str, run_id: str, outputs: Sequence[ToolOutput]
    ) -> str:
        """Answer a run's function calls; returns the id of the run to await next.

        Raises ``RunNotAwaitingOutputs`` when the run can no longer take them.
        """

    async def wait(
        self,
        thread_id: str,
        run_id: str,
        *,
        on_progress: ProgressCallback | None = None,
        timeout: float = 600.0,
    ) -> RunResult:
        """Await the run until it finishes or needs tool outputs, without blocking the loop."""

    async def cancel(self, thread_id: str, run_id: str) -> None:
        """Best effort: stop a run that is still working."""

    async def upload_file(self, filename: str, content: bytes) -> str:
        """Upload a user's file to the model service; returns its file id."""

    async def download_file(self, file: GeneratedFile) -> bytes:
        """Fetch the bytes of a file the model produced."""

    async def aclose(self) -> None: ...
