"""The note that tells the model where the student is in Slack (``app_context_changed``).

Slack sends only the id of the channel the student is viewing; the name comes from
``conversations.info`` (``channels:read`` / ``groups:read``) when the lead wires it. The note
carries the name and nothing else: the bot never reads that channel's messages, because the
student did not share them.
"""

from __future__ import annotations

import re

MAX_CHANNEL_NAME_CHARS = 80  # Slack's own limit for channel names

# Slack channel names: lower-case letters, digits, "-", "_" and a few scripts' letters;
# anything else in a name we are handed is dropped rather than shown to the model.
_UNSAFE = re.compile(r"[^\w\-]")


def channel_name(name: str | None) -> str | None:
    """A channel name fit for the note, without its leading "#", or None if nothing is left."""
    cleaned = _UNSAFE.sub("", (name or "").strip().lstrip("#"))[:MAX_CHANNEL_NAME_CHARS]
    return cleaned or None


def context_note(name: str | None) -> str | None:
    """A short instruction for the model, or None when there is no usable channel name."""
    cleaned = channel_name(name)
    if cleaned is None:
        return None
    return (
        f"The student opened the tutor while viewing the Slack channel #{cleaned}. Use that "
        "only as a hint about what they may be working on; you cannot see that channel's "
        "messages, so ask if you need them."
    )
