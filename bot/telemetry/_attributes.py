"""What goes into span attributes: key names, value types, and what counts as message text."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

AttributeValue = str | bool | int | float | Sequence[str]

# Plain keys from the core (``run_id``, ``runtime``) get our namespace; dotted keys are
# taken as already namespaced (``gen_ai.request.model``).
NAMESPACE = "tutorbot"
_ALIASES = {"model": "gen_ai.request.model"}

# Keys whose values are message text: dropped when ``redact_content`` is on.
_CONTENT_NAMES = frozenset(
    {
        "answer",
        "completion",
        "content",
        "input",
        "instructions",
        "message",
        "messages",
        "output",
        "prompt",
        "query",
        "text",
    }
)
_CONTENT_PREFIXES = ("gen_ai.prompt", "gen_ai.completion", "llm.prompts", "llm.completions")


def attribute_key(key: str) -> str:
    """The span attribute name for a key given by the conversation core."""
    if key in _ALIASES:
        return _ALIASES[key]
    return key if "." in key else f"{NAMESPACE}.{key}"


def is_content(key: str) -> bool:
    """Whether the attribute ``key`` carries message text (by convention of its last part)."""
    return key.rsplit(".", 1)[-1].lower() in _CONTENT_NAMES or key.startswith(_CONTENT_PREFIXES)


def attribute_value(value: Any) -> AttributeValue | None:
    """An OpenTelemetry-compatible value (``None`` means: leave the attribute out)."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return [str(item) for item in value]
    return str(value)


def span_attributes(
    attributes: Mapping[str, Any], *, redact_content: bool
) -> dict[str, AttributeValue]:
    """Name, convert and (optionally) redact attributes for one span."""
    result: dict[str, AttributeValue] = {}
    for key, value in attributes.items():
        name = attribute_key(key)
        converted = attribute_value(value)
        if converted is None or (redact_content and is_content(name)):
            continue
        result[name] = converted
    return result


def turn_tags(default_tags: Iterable[str], *, runtime: str, team: str, channel: str) -> list[str]:
    """Tags of a turn's trace: the default tags plus where the turn ran."""
    return [*default_tags, f"runtime:{runtime}", f"team:{team}", f"channel:{channel}"]
