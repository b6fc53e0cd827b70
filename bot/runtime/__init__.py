"""Model protocol adapters behind one interface (``bot.runtime.base.Runtime``)."""

from __future__ import annotations

from bot.config import Settings
from bot.runtime._openai import make_client
from bot.runtime.base import Runtime
from store.base import Store


def create_runtime(settings: Settings, store: Store) -> Runtime:
    """The runtime named by ``ASSISTANT_RUNTIME``."""
    client = make_client(settings.openai_api_key, settings.openai_base_url)
    if settings.runtime == "chat":
        from bot.runtime.chat import ChatRuntime

        return ChatRuntime(
            client,
            store,
            model=settings.openai_model,
            instructions=settings.instructions,
            tools=settings.tools,
            history_tokens=settings.chat_history_tokens,
            base_url=settings.openai_base_url,
        )
    if settings.runtime == "assistants":
        from bot.runtime.assistants import AssistantsRuntime

        return AssistantsRuntime(
            client,
            store,
            model=settings.openai_model,
            instructions=settings.instructions,
            tools=settings.tools,
            assistant_id=settings.assistant_id,
            streaming=settings.model_streaming,
        )
    from bot.runtime.responses import ResponsesRuntime

    return ResponsesRuntime(
        client,
        model=settings.openai_model,
        instructions=settings.instructions,
        tools=settings.tools,
        streaming=settings.model_streaming,
    )
