"""Tool calls put back together from streamed Chat Completions deltas.

OpenAI's convention: every delta of one call carries the call's ``index``; the first carries
``id`` and ``function.name``, later ones fragments of ``function.arguments``. Servers bend it:

- vLLM sends ``id: ""`` (not ``null``) on continuation deltas;
- Ollama gives every parallel call ``index: 0``, each call whole in one chunk with its own id
  (older versions send no ``index`` at all);
- some servers send no ``id`` (one is made up then, stable for the accumulator's life).

So an occupied index starts a new call when a delta brings a different non-empty ``id``, or,
without ids, a function name after the call there already holds complete JSON arguments.
Whether the arguments are valid JSON is the run loop's concern (it answers bad ones with an
error tool result); ``parse_arguments`` tells it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol


class FunctionDelta(Protocol):
    @property
    def name(self) -> str | None: ...

    @property
    def arguments(self) -> str | None: ...


class ToolCallDelta(Protocol):
    """What the accumulator reads of ``openai.types.chat.ChoiceDeltaToolCall``."""

    @property
    def index(self) -> int: ...

    @property
    def id(self) -> str | None: ...

    @property
    def function(self) -> FunctionDelta | None: ...


@dataclass(frozen=True, slots=True)
class StreamedToolCall:
    """One finished call: ``arguments`` is the raw text the model wrote (maybe not JSON)."""

    id: str
    name: str
    arguments: str


@dataclass(slots=True)
class _Partial:
    id: str
    name: str
    fragments: list[str] = field(default_factory=list)

    @property
    def arguments(self) -> str:
        return "".join(self.fragments)


class ToolCallAccumulator:
    """Feed it each chunk's ``choices[0].delta.tool_calls``; read ``calls`` at the end.

    ``id_prefix`` (e.g. the completion's id) makes the ids it has to invent unique across
    completions; without it a random one is used.
    """

    def __init__(self, id_prefix: str | None = None) -> None:
        self._prefix = id_prefix or uuid.uuid4().hex[:16]
        self._calls: list[_Partial] = []
        # stream index (None: the server sent none) -> position of the call it feeds now
        self._at: dict[int | None, int] = {}

    def feed(self, deltas: Iterable[ToolCallDelta] | None) -> None:
        """Take the tool call deltas of one chunk (``None`` or empty: nothing to do)."""
        for delta in deltas or ():
            self.add(delta)

    def add(self, delta: ToolCallDelta) -> None:
        index = getattr(delta, "index", None)
        call_id = getattr(delta, "id", None) or ""
        function = getattr(delta, "function", None)
        name = (getattr(function, "name", None) or "") if function is not None else ""
        fragment = (getattr(function, "arguments", None) or "") if function is not None else ""

        position = self._at.get(index)
        if position is None and index is None and self._calls:
            position = len(self._calls) - 1  # no index at all: it continues the latest call
        if position is not None and _starts_new_call(
            self._calls[position], call_id, name, fragment
        ):
            position = None
        if position is None:
            self._calls.append(_Partial(id=call_id, name=name))
            position = len(self._calls) - 1
        self._at[index] = position

        call = self._calls[position]
        if call_id and not call.id:
            call.id = call_id
        if name and not call.name:
            call.name = name
        if fragment:
            call.fragments.append(fragment)

    @property
    def calls(self) -> list[StreamedToolCall]:
        """The calls so far, in the order they started; deltas that named nothing are left out."""
        return [
            StreamedToolCall(
                id=call.id or f"call_{self._prefix}_{position}",
                name=call.name,
                arguments=call.arguments,
            )
            for position, call in enumerate(self._calls)
            if call.name or call.fragments
        ]

    def __bool__(self) -> bool:
        return bool(self.calls)


def _starts_new_call(current: _Partial, call_id: str, name: str, fragment: str) -> bool:
    if call_id and current.id:
        return call_id != current.id
    # No id to tell calls apart: a name arriving after complete arguments starts another call
    # (two whole calls of the same tool at one index), unless it only repeats the header.
    complete = bool(current.arguments.strip()) and arguments_parse(current.arguments)
    if not name or not current.name or not complete:
        return False
    return name != current.name or bool(fragment)


def parse_arguments(raw: str) -> dict[str, Any] | None:
    """The arguments as an object, ``{}`` for none at all; ``None`` when they are not one."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def arguments_parse(raw: str) -> bool:
    """Whether ``raw`` is usable arguments: a JSON object, or nothing."""
    return parse_arguments(raw) is not None


def replayable_arguments(raw: str) -> str:
    """The arguments to send back in the history: servers parse them to render the prompt
    (vLLM and Ollama answer 400 to arguments that are not JSON), so bad ones become ``{}``."""
    return raw if raw.strip() and arguments_parse(raw) else "{}"
