"""Block Kit limits the fake Web API enforces, with Slack-style error messages.

Slack rejects a message with ``invalid_blocks`` (a view with
``invalid_arguments``) and lists what is wrong in
``response_metadata.messages`` as ``[ERROR] … [json-pointer:/blocks/0/…]``.
This checks the documented limits a bot is likely to hit, not the whole
schema: unknown block and element types pass.
"""

from __future__ import annotations

from typing import Any

MAX_MESSAGE_BLOCKS = 50
MAX_MODAL_BLOCKS = 100
MAX_MARKDOWN_TOTAL = 12_000


def _err(message: str, pointer: str) -> str:
    return f"[ERROR] {message} [json-pointer:{pointer}]"


def _too_long(limit: int, pointer: str) -> str:
    return _err(f"must be less than {limit + 1} characters", pointer)


class _Checker:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.markdown_total = 0

    def text_object(self, obj: Any, pointer: str, limit: int, *, plain_only: bool = False) -> None:
        if not isinstance(obj, dict):
            self.errors.append(_err("must be an object", pointer))
            return
        kind = obj.get("type")
        allowed = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
        if kind not in allowed:
            self.errors.append(
                _err(f"must be one of the provided values: {', '.join(allowed)}", pointer + "/type")
            )
        text = obj.get("text")
        if not isinstance(text, str) or not text:
            self.errors.append(_err("must be more than 0 characters", pointer + "/text"))
        elif len(text) > limit:
            self.errors.append(_too_long(limit, pointer + "/text"))

    def max_len(self, value: Any, limit: int, pointer: str) -> None:
        if isinstance(value, str) and len(value) > limit:
            self.errors.append(_too_long(limit, pointer))

    def max_items(self, items: Any, limit: int, pointer: str) -> None:
        if isinstance(items, list) and len(items) > limit:
            self.errors.append(_err(f"must be no more than {limit} items", pointer))

    def options(self, options: Any, pointer: str, *, max_items: int) -> None:
        if not isinstance(options, list):
            return
        self.max_items(options, max_items, pointer)
        for i, option in enumerate(options):
            if not isinstance(option, dict):
                continue
            self.text_object(option.get("text"), f"{pointer}/{i}/text", 75)
            self.max_len(option.get("value"), 150, f"{pointer}/{i}/value")

    def element(self, element: Any, pointer: str) -> None:
        if not isinstance(element, dict):
            self.errors.append(_err("must be an object", pointer))
            return
        kind = element.get("type")
        self.max_len(element.get("action_id"), 255, pointer + "/action_id")
        if "placeholder" in element:
            self.text_object(element["placeholder"], pointer + "/placeholder", 150, plain_only=True)
        if kind == "button":
            self.text_object(element.get("text"), pointer + "/text", 75, plain_only=True)
            self.max_len(element.get("value"), 2000, pointer + "/value")
            self.max_len(element.get("url"), 3000, pointer + "/url")
            style = element.get("style")
            if style is not None and style not in ("primary", "danger"):
                self.errors.append(
                    _err("must be one of the provided values: primary, danger", pointer + "/style")
                )
        elif kind in ("static_select", "multi_static_select"):
            self.options(element.get("options"), pointer + "/options", max_items=100)
        elif kind in ("radio_buttons", "checkboxes"):
            self.options(element.get("options"), pointer + "/options", max_items=10)
        elif kind == "overflow":
            self.options(element.get("options"), pointer + "/options", max_items=5)
        elif kind == "feedback_buttons":
            for key in ("positive_button", "negative_button"):
                button = element.get(key)
                if not isinstance(button, dict):
                    self.errors.append(_err(f"missing required field: {key}", pointer))
                    continue
                self.text_object(button.get("text"), f"{pointer}/{key}/text", 75, plain_only=True)
                value = button.get("value")
                if not isinstance(value, str) or not value:
                    self.errors.append(_err("missing required field: value", f"{pointer}/{key}"))
                self.max_len(value, 2000, f"{pointer}/{key}/value")
                label = button.get("accessibility_label")
                self.max_len(label, 75, f"{pointer}/{key}/accessibility_label")
        elif kind == "plain_text_input":
            for key in ("max_length", "min_length"):
                value = element.get(key)
                if isinstance(value, int) and value > 3000:
                    self.errors.append(_err("must be less than 3001", f"{pointer}/{key}"))

    def blocks(self, blocks: Any, pointer: str, *, max_blocks: int) -> None:
        if not isinstance(blocks, list):
            self.errors.append(_err("must provide an array", pointer))
            return
        if len(blocks) > max_blocks:
            self.errors.append(_err(f"no more than {max_blocks} items allowed", pointer))
        seen_block_ids: set[str] = set()
        for i, block in enumerate(blocks):
            bp = f"{pointer}/{i}"
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                self.errors.append(_err("missing required field: type", bp))
                continue
            block_id = block.get("block_id")
            if isinstance(block_id, str):
                self.max_len(block_id, 255, bp + "/block_id")
                if block_id in seen_block_ids:
                    self.errors.append(_err(f"duplicate block_id: {block_id}", bp + "/block_id"))
                seen_block_ids.add(block_id)
            self.block(block, bp)

    def block(self, block: dict[str, Any], bp: str) -> None:
        kind = block["type"]
        if kind == "section":
            if "text" not in block and "fields" not in block:
                self.errors.append(_err("must provide either text or fields", bp))
            if "text" in block:
                self.text_object(block["text"], bp + "/text", 3000)
            fields = block.get("fields")
            if fields is not None:
                self.max_items(fields, 10, bp + "/fields")
                for j, f in enumerate(fields if isinstance(fields, list) else []):
                    self.text_object(f, f"{bp}/fields/{j}", 2000)
            if "accessory" in block:
                self.element(block["accessory"], bp + "/accessory")
        elif kind == "header":
            self.text_object(block.get("text"), bp + "/text", 150, plain_only=True)
        elif kind == "actions":
            elements = block.get("elements")
            if not isinstance(elements, list) or not elements:
                self.errors.append(_err("must provide at least 1 item", bp + "/elements"))
                return
            self.max_items(elements, 25, bp + "/elements")
            seen: set[str] = set()
            for j, element in enumerate(elements):
                self.element(element, f"{bp}/elements/{j}")
                action_id = element.get("action_id") if isinstance(element, dict) else None
                if isinstance(action_id, str):
                    if action_id in seen:
                        self.errors.append(
                            _err(
                                f"duplicate action_id: {action_id}",
                                f"{bp}/elements/{j}/action_id",
                            )
                        )
                    seen.add(action_id)
        elif kind == "context":
            elements = block.get("elements")
            self.max_items(elements, 10, bp + "/elements")
            for j, element in enumerate(elements if isinstance(elements, list) else []):
                if isinstance(element, dict) and element.get("type") in ("plain_text", "mrkdwn"):
                    self.text_object(element, f"{bp}/elements/{j}", 3000)
        elif kind == "context_actions":
            elements = block.get("elements")
            if not isinstance(elements, list) or not elements:
                self.errors.append(_err("must provide at least 1 item", bp + "/elements"))
                return
            self.max_items(elements, 5, bp + "/elements")
            for j, element in enumerate(elements):
                kind_j = element.get("type") if isinstance(element, dict) else None
                if kind_j not in ("feedback_buttons", "icon_button"):
                    self.errors.append(
                        _err(
                            "must be one of the provided values: feedback_buttons, icon_button",
                            f"{bp}/elements/{j}/type",
                        )
                    )
                self.element(element, f"{bp}/elements/{j}")
        elif kind == "markdown":
            text = block.get("text")
            if not isinstance(text, str) or not text:
                self.errors.append(_err("must be more than 0 characters", bp + "/text"))
            else:
                self.markdown_total += len(text)
        elif kind == "input":
            self.text_object(block.get("label"), bp + "/label", 2000, plain_only=True)
            if "hint" in block:
                self.text_object(block["hint"], bp + "/hint", 2000, plain_only=True)
            self.element(block.get("element"), bp + "/element")
        elif kind == "image":
            self.max_len(block.get("alt_text"), 2000, bp + "/alt_text")
            self.max_len(block.get("image_url"), 3000, bp + "/image_url")


def message_block_errors(blocks: Any) -> list[str]:
    """Why Slack would answer ``invalid_blocks`` for these message blocks (empty: valid)."""
    checker = _Checker()
    checker.blocks(blocks, "/blocks", max_blocks=MAX_MESSAGE_BLOCKS)
    if checker.markdown_total > MAX_MARKDOWN_TOTAL:
        checker.errors.append(
            _err(
                f"cumulative length of markdown blocks must be less than {MAX_MARKDOWN_TOTAL + 1}",
                "/blocks",
            )
        )
    return checker.errors


def view_errors(view: Any) -> list[str]:
    """Why Slack would refuse this view in ``views.open/update/push`` (empty: valid)."""
    if not isinstance(view, dict):
        return [_err("must be an object", "/view")]
    checker = _Checker()
    kind = view.get("type")
    if kind not in ("modal", "home"):
        checker.errors.append(_err("must be one of the provided values: modal, home", "/view/type"))
    if kind == "modal":
        checker.text_object(view.get("title"), "/view/title", 24, plain_only=True)
        for key in ("submit", "close"):
            if view.get(key) is not None:
                checker.text_object(view[key], f"/view/{key}", 24, plain_only=True)
        blocks = view.get("blocks")
        has_input = isinstance(blocks, list) and any(
            isinstance(b, dict) and b.get("type") == "input" for b in blocks
        )
        if has_input and view.get("submit") is None:
            checker.errors.append(
                _err("submit is required when an input block is within the blocks", "/view/submit")
            )
    checker.max_len(view.get("private_metadata"), 3000, "/view/private_metadata")
    checker.max_len(view.get("callback_id"), 255, "/view/callback_id")
    checker.max_len(view.get("external_id"), 255, "/view/external_id")
    checker.blocks(view.get("blocks"), "/view/blocks", max_blocks=MAX_MODAL_BLOCKS)
    return checker.errors
