"""The fake's Web API methods: one function per method, over FakeSlack's state.

Each takes the :class:`~tests.fakes.slack_server.FakeSlack` and the merged
request arguments and returns the response fields (``ok`` is added by the
caller) or raises :class:`SlackFailure`. Response shapes and error codes follow
Slack's documentation; what is not modelled is noted where it matters.
"""

from __future__ import annotations

import mimetypes
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tests.fakes.slack_blocks import message_block_errors, view_errors
from tests.fakes.slack_payloads import new_id, next_ts, ts_key

if TYPE_CHECKING:
    from tests.fakes.slack_server import FakeSlack

MAX_TEXT = 40_000  # Slack truncates longer message text
MAX_UPDATE_TEXT = 4_000  # chat.update refuses longer text (msg_too_long)
MAX_MARKDOWN_TEXT = 12_000
MAX_LOADING_MESSAGES = 10

Args = dict[str, Any]
Handler = Callable[["FakeSlack", Args], dict[str, Any]]


class SlackFailure(Exception):
    """Raised by a method: the call answers ``{"ok": false, "error": …, **extra}``."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


def invalid_arguments(message: str) -> SlackFailure:
    return SlackFailure("invalid_arguments", response_metadata={"messages": [f"[ERROR] {message}"]})


def _required(args: Args, name: str) -> Any:
    value = args.get(name)
    if value is None or value == "":
        raise invalid_arguments(f"missing required field: {name}")
    return value


def channel_arg(fake: FakeSlack, args: Args, key: str = "channel") -> str:
    channel = args.get(key)
    if not channel or str(channel) in fake.unknown_channels:
        raise SlackFailure("channel_not_found")
    channel = str(channel)
    if channel[0] in "UW":  # posting to a user id goes to the DM with them
        return "D" + channel
    return channel


def require_member(fake: FakeSlack, channel: str) -> None:
    if fake.bot_user_id not in fake.members[channel]:
        raise SlackFailure("not_in_channel")


def message_arg(fake: FakeSlack, channel: str, ts: Any) -> dict[str, Any]:
    message = fake.find_message(channel, str(ts)) if ts else None
    if message is None:
        raise SlackFailure("message_not_found")
    return message


def check_blocks(blocks: Any) -> None:
    if isinstance(blocks, str):  # a JSON string that did not parse
        raise SlackFailure("invalid_blocks_format")
    errors = message_block_errors(blocks)
    if errors:
        raise SlackFailure("invalid_blocks", response_metadata={"messages": errors})


def _content(args: Args) -> tuple[str | None, list[dict[str, Any]] | None, str | None]:
    """Validated (text, blocks, markdown_text) of a message-writing call."""
    text, blocks, markdown = args.get("text"), args.get("blocks"), args.get("markdown_text")
    if markdown is not None and (text is not None or blocks is not None):
        raise SlackFailure("markdown_text_conflict")
    if not text and not blocks and not markdown and not args.get("attachments"):
        raise SlackFailure("no_text")
    if blocks is not None:
        check_blocks(blocks)
    if markdown is not None and len(str(markdown)) > MAX_MARKDOWN_TEXT:
        raise SlackFailure("msg_too_long")
    if text is not None:
        text = str(text)[:MAX_TEXT]
    return text, blocks, (str(markdown) if markdown is not None else None)


def checked_metadata(args: Args) -> dict[str, Any] | None:
    """Message ``metadata``: ``{"event_type": str, "event_payload": {…}}``."""
    metadata = args.get("metadata")
    if metadata is None:
        return None
    if (
        not isinstance(metadata, dict)
        or not isinstance(metadata.get("event_type"), str)
        or not metadata["event_type"]
        or not isinstance(metadata.get("event_payload"), dict)
    ):
        raise SlackFailure("invalid_metadata_format")
    return metadata


def _flag(value: Any) -> bool:
    """A boolean argument as slack_sdk sends it ("1"/"0", "true"/"false" or JSON)."""
    if isinstance(value, str):
        return value.lower() in ("1", "true")
    return bool(value)


# ---------------------------------------------------------------------------- auth, socket


def auth_test(fake: FakeSlack, args: Args) -> dict[str, Any]:
    return {
        "url": f"https://{fake.team_domain}.slack.com/",
        "team": "Tutorbot Test",
        "user": "tutorbot",
        "team_id": fake.team_id,
        "user_id": fake.bot_user_id,
        "bot_id": fake.bot_id,
        "is_enterprise_install": False,
    }


def apps_connections_open(fake: FakeSlack, args: Args) -> dict[str, Any]:
    ticket = secrets.token_hex(16)
    return {"url": f"{fake.socket.url}?ticket={ticket}&app_id={fake.app_id}"}


# ---------------------------------------------------------------------------- chat


def chat_post_message(fake: FakeSlack, args: Args) -> dict[str, Any]:
    channel = channel_arg(fake, args)
    require_member(fake, channel)
    text, blocks, markdown = _content(args)
    metadata = checked_metadata(args)
    message = fake.bot_message(
        channel,
        text=text,
        blocks=blocks,
        markdown_text=markdown,
        thread_ts=str(args["thread_ts"]) if args.get("thread_ts") else None,
        attachments=args.get("attachments"),
        metadata=metadata,
    )
    return {"channel": channel, "ts": message["ts"], "message": fake.public(message)}


def chat_update(fake: FakeSlack, args: Args) -> dict[str, Any]:
    channel = channel_arg(fake, args)
    message = message_arg(fake, channel, args.get("ts"))
    if message.get("bot_id") != fake.bot_id:
        raise SlackFailure("cant_update_message")
    if fake.is_streaming(channel, message["ts"]):
        raise SlackFailure("streaming_state_conflict")
    if args.get("text") is not None and len(str(args["text"])) > MAX_UPDATE_TEXT:
        raise SlackFailure("msg_too_long")
    text, blocks, markdown = _content(args)
    metadata = checked_metadata(args)
    if markdown is not None:
        message.update(markdown_text=markdown, text=markdown, blocks=[])
    else:
        if "text" in args:
            message["text"] = text
        if "blocks" in args:
            message["blocks"] = blocks or []
        message["markdown_text"] = None
    if "attachments" in args:
        message["attachments"] = args["attachments"]
    if metadata is not None:
        message["metadata"] = metadata
    message["edited"] = {"user": fake.bot_user_id, "ts": next_ts()}
    return {
        "channel": channel,
        "ts": message["ts"],
        "text": message["text"],
        "message": fake.public(message),
    }


def chat_delete(fake: FakeSlack, args: Args) -> dict[str, Any]:
    channel = channel_arg(fake, args)
    message = message_arg(fake, channel, args.get("ts"))
    if message.get("bot_id") != fake.bot_id:
        raise SlackFailure("cant_delete_message")
    fake.messages[channel].remove(message)
    return {"channel": channel, "ts": message["ts"]}


def chat_post_ephemeral(fake: FakeSlack, args: Args) -> dict[str, Any]:
    channel = channel_arg(fake, args)
    require_member(fake, channel)
    user = _required(args, "user")
    text, blocks, markdown = _content(args)
    ts = next_ts()
    fake.ephemerals.append(
        {
            "via": "chat.postEphemeral",
            "channel": channel,
            "user": user,
            "text": text if text is not None else markdown,
            "blocks": blocks,
            "thread_ts": args.get("thread_ts"),
            "ts": ts,
        }
    )
    return {"message_ts": ts}


def chat_get_permalink(fake: FakeSlack, args: Args) -> dict[str, Any]:
    channel = channel_arg(fake, args)
    ts = str(_required(args, "message_ts"))
    link = f"https://{fake.team_domain}.slack.com/archives/{channel}/p{ts.replace('.', '')}"
    message = fake.find_message(channel, ts)
    if message is not None and message.get("thread_ts") not in (None, ts):
        link += f"?thread_ts={message['thread_ts']}&cid={channel}"
    return {"channel": channel, "permalink": link}


# ---------------------------------------------------------------------------- reactions


def _reaction_target(fake: FakeSlack, args: Args) -> tuple[str, str, str]:
    channel = channel_arg(fake, args)
    ts = str(_required(args, "timestamp"))
    name = args.get("name")
    if not name:
        raise SlackFailure("invalid_name")
    return channel, ts, str(name).strip(":")


def reactions_add(fake: FakeSlack, args: Args) -> dict[str, Any]:
    channel, ts, name = _reaction_target(fake, args)
    if (channel, ts, name) in fake._reacted:
        raise SlackFailure("already_reacted")
    # Unknown messages (user posts the test never recorded) are accepted.
    fake._reacted.add((channel, ts, name))
    fake.reactions.append((channel, ts, name, True))
    message = fake.find_message(channel, ts)
    if message is not None:
        message.setdefault("reactions", []).append(
            {"name": name, "users": [fake.bot_user_id], "count": 1}
        )
    return {}


def reactions_remove(fake: FakeSlack, args: Args) -> dict[str, Any]:
    channel, ts, name = _reaction_target(fake, args)
    if (channel, ts, name) not in fake._reacted:
        raise SlackFailure("no_reaction")
    fake._reacted.discard((channel, ts, name))
    fake.reactions.append((channel, ts, name, False))
    message = fake.find_message(channel, ts)
    if message is not None:
        message["reactions"] = [r for r in message.get("reactions", []) if r["name"] != name]
    return {}


# ---------------------------------------------------------------------------- conversations


def _page(items: list[dict[str, Any]], args: Args) -> tuple[list[dict[str, Any]], str]:
    limit = int(args.get("limit") or 1000)
    offset = int(args.get("cursor") or 0)
    page = items[offset : offset + limit]
    next_cursor = str(offset + limit) if offset + limit < len(items) else ""
    return page, next_cursor


def _in_time_range(messages: list[dict[str, Any]], args: Args) -> list[dict[str, Any]]:
    """Slack's ``oldest``/``latest`` bounds (exclusive unless ``inclusive``), oldest first."""
    inclusive = str(args.get("inclusive") or "").lower() in ("1", "true")
    oldest, latest = args.get("oldest"), args.get("latest")

    def inside(ts: str) -> bool:
        key = ts_key(ts)
        if oldest:
            low = ts_key(str(oldest))
            if key < low or (key == low and not inclusive):
                return False
        if latest:
            high = ts_key(str(latest))
            if key > high or (key == high and not inclusive):
                return False
        return True

    return [m for m in messages if inside(m["ts"])]


def conversations_replies(fake: FakeSlack, args: Args) -> dict[str, Any]:
    channel = channel_arg(fake, args)
    ts = str(_required(args, "ts"))
    parent = fake.find_message(channel, ts)
    replies = fake.thread(channel, ts)
    if parent is None and not replies:
        raise SlackFailure("thread_not_found")
    with_metadata = _flag(args.get("include_all_metadata"))
    messages = [fake.public(m, metadata=with_metadata) for m in replies]
    if parent is not None:
        head = fake.public(parent, metadata=with_metadata)
        if replies:
            head.update(
                thread_ts=ts,
                reply_count=len(replies),
                reply_users=sorted({m.get("user") or "" for m in replies}),
                latest_reply=replies[-1]["ts"],
            )
        messages.insert(0, head)
    page, next_cursor = _page(_in_time_range(messages, args), args)
    return {
        "messages": page,
        "has_more": bool(next_cursor),
        "response_metadata": {"next_cursor": next_cursor},
    }


def conversations_history(fake: FakeSlack, args: Args) -> dict[str, Any]:
    channel = channel_arg(fake, args)
    top = [m for m in fake.messages.get(channel, []) if m.get("thread_ts") in (None, m["ts"])]
    top = sorted(top, key=lambda m: ts_key(m["ts"]), reverse=True)
    with_metadata = _flag(args.get("include_all_metadata"))
    page, next_cursor = _page([fake.public(m, metadata=with_metadata) for m in top], args)
    return {
        "messages": page,
        "has_more": bool(next_cursor),
        "response_metadata": {"next_cursor": next_cursor},
    }


def _conversation(fake: FakeSlack, channel: str) -> dict[str, Any]:
    info: dict[str, Any] = {"id": channel, "created": 1_700_000_000, "is_archived": False}
    if channel.startswith("D"):
        info.update(is_im=True, is_channel=False, is_private=True)
        if channel[1:2] in ("U", "W"):
            info["user"] = channel[1:]
    else:
        info.update(
            name=f"channel-{channel.lower()}",
            is_channel=True,
            is_group=False,
            is_im=False,
            is_mpim=False,
            is_private=channel.startswith("G"),
            is_general=False,
            is_member=fake.bot_user_id in fake.members[channel],
            num_members=len(fake.members[channel]),
        )
    return info


def conversations_info(fake: FakeSlack, args: Args) -> dict[str, Any]:
    return {"channel": _conversation(fake, channel_arg(fake, args))}


def conversations_join(fake: FakeSlack, args: Args) -> dict[str, Any]:
    channel = channel_arg(fake, args)
    already = fake.bot_user_id in fake.members[channel]
    fake.members[channel].add(fake.bot_user_id)
    result: dict[str, Any] = {"channel": _conversation(fake, channel)}
    if already:
        result["warning"] = "already_in_channel"
        result["response_metadata"] = {"warnings": ["already_in_channel"]}
    return result


def conversations_open(fake: FakeSlack, args: Args) -> dict[str, Any]:
    if args.get("channel"):
        return {"channel": {"id": channel_arg(fake, args)}}
    users = str(_required(args, "users")).split(",")
    return {"channel": {"id": "D" + users[0].strip()}}


def users_info(fake: FakeSlack, args: Args) -> dict[str, Any]:
    user_id = str(_required(args, "user"))
    if user_id in fake.users:
        return {"user": fake.users[user_id]}
    is_bot = user_id == fake.bot_user_id
    name = "tutorbot" if is_bot else user_id.lower()
    return {
        "user": {
            "id": user_id,
            "team_id": fake.team_id,
            "name": name,
            "deleted": False,
            "real_name": name.title(),
            "tz": "Europe/London",
            "tz_label": "Greenwich Mean Time",
            "tz_offset": 0,
            "is_admin": False,
            "is_owner": False,
            "is_bot": is_bot,
            "is_app_user": False,
            "updated": 1_700_000_000,
            "profile": {"real_name": name.title(), "display_name": name, "team": fake.team_id},
        }
    }


# ---------------------------------------------------------------------------- views


def _view_arg(args: Args) -> dict[str, Any]:
    view = _required(args, "view")
    errors = view_errors(view)
    if errors:
        raise SlackFailure("invalid_arguments", response_metadata={"messages": errors})
    return view


def _full_view(
    fake: FakeSlack,
    view: dict[str, Any],
    *,
    view_id: str | None = None,
    previous: str | None = None,
    root: str | None = None,
) -> dict[str, Any]:
    view_id = view_id or new_id("V0", 9)
    return {
        "id": view_id,
        "team_id": fake.team_id,
        "type": view.get("type", "modal"),
        "blocks": view.get("blocks", []),
        "private_metadata": view.get("private_metadata", ""),
        "callback_id": view.get("callback_id", ""),
        "state": {"values": {}},
        "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
        "title": view.get("title"),
        "clear_on_close": bool(view.get("clear_on_close", False)),
        "notify_on_close": bool(view.get("notify_on_close", False)),
        "close": view.get("close"),
        "submit": view.get("submit"),
        "previous_view_id": previous,
        "root_view_id": root or view_id,
        "app_id": fake.app_id,
        "external_id": view.get("external_id", ""),
        "app_installed_team_id": fake.team_id,
        "bot_id": fake.bot_id,
    }


def _record_view(
    fake: FakeSlack, method: str, full: dict[str, Any], trigger_id: str | None, user: str | None
) -> None:
    fake._views_by_id[full["id"]] = {"view": full, "user": user}
    fake.views.append(
        {
            "method": method,
            "view_id": full["id"],
            "trigger_id": trigger_id,
            "view": full,
            "user": user,
        }
    )


def views_open(fake: FakeSlack, args: Args) -> dict[str, Any]:
    trigger = fake.use_trigger(args.get("trigger_id"))
    full = _full_view(fake, _view_arg(args))
    _record_view(fake, "views.open", full, args.get("trigger_id"), trigger.user)
    return {"view": full}


def views_push(fake: FakeSlack, args: Args) -> dict[str, Any]:
    trigger = fake.use_trigger(args.get("trigger_id"))
    view = _view_arg(args)
    current = next((v for v in reversed(fake.views) if v["user"] == trigger.user), None)
    full = _full_view(
        fake,
        view,
        previous=current["view_id"] if current else None,
        root=current["view"]["root_view_id"] if current else None,
    )
    _record_view(fake, "views.push", full, args.get("trigger_id"), trigger.user)
    return {"view": full}


def views_update(fake: FakeSlack, args: Args) -> dict[str, Any]:
    view_id, external_id = args.get("view_id"), args.get("external_id")
    if not view_id and not external_id:
        raise invalid_arguments("missing required field: view_id or external_id")
    if not view_id:
        view_id = next(
            (k for k, v in fake._views_by_id.items() if v["view"]["external_id"] == external_id),
            None,
        )
    current = fake._views_by_id.get(str(view_id)) if view_id else None
    if current is None:
        raise SlackFailure("not_found")
    if args.get("hash") and args["hash"] != current["view"]["hash"]:
        raise SlackFailure("hash_conflict")
    old = current["view"]
    full = _full_view(
        fake,
        _view_arg(args),
        view_id=old["id"],
        previous=old["previous_view_id"],
        root=old["root_view_id"],
    )
    _record_view(fake, "views.update", full, None, current["user"])
    return {"view": full}


def views_publish(fake: FakeSlack, args: Args) -> dict[str, Any]:
    user = str(_required(args, "user_id"))
    view = _view_arg(args)
    if view.get("type") != "home":
        raise invalid_arguments("must be one of the provided values: home [json-pointer:/view]")
    current = fake.home_views.get(user)
    if args.get("hash") and (current is None or args["hash"] != current["hash"]):
        raise SlackFailure("hash_conflict")
    full = _full_view(fake, view, view_id=current["id"] if current else None)
    _record_view(fake, "views.publish", full, None, user)
    fake.home_views[user] = full
    return {"view": full}


# ---------------------------------------------------------------------------- assistant


def assistant_threads_set_status(fake: FakeSlack, args: Args) -> dict[str, Any]:
    """Shown under the thread until the bot's next reply there, an empty status or 2 min."""
    channel = channel_arg(fake, {"channel": _required(args, "channel_id")})
    require_member(fake, channel)
    thread_ts = str(_required(args, "thread_ts"))
    if "status" not in args or args["status"] is None:
        raise invalid_arguments("missing required field: status")
    loading = args.get("loading_messages")
    if loading is not None and (
        not isinstance(loading, list) or len(loading) > MAX_LOADING_MESSAGES
    ):
        raise invalid_arguments(
            f"loading_messages must be an array of at most {MAX_LOADING_MESSAGES} strings"
        )
    fake.statuses.append(dict(args))
    fake.set_status(channel, thread_ts, str(args["status"]), loading)
    return {}


# ---------------------------------------------------------------------------- files


def files_info(fake: FakeSlack, args: Args) -> dict[str, Any]:
    file = fake.files.get(str(args.get("file")))
    if file is None:
        raise SlackFailure("file_not_found")
    return {"file": file, "comments": [], "response_metadata": {"next_cursor": ""}}


def files_get_upload_url_external(fake: FakeSlack, args: Args) -> dict[str, Any]:
    filename = str(_required(args, "filename"))
    length = int(_required(args, "length"))
    file_id = new_id("F0", 9)
    fake._pending_uploads[file_id] = {"filename": filename, "length": length, "bytes": None}
    return {"upload_url": f"{fake.base_url}/upload/v1/{file_id}", "file_id": file_id}


def files_complete_upload_external(fake: FakeSlack, args: Args) -> dict[str, Any]:
    requested = _required(args, "files")
    if not isinstance(requested, list) or not requested:
        raise invalid_arguments("files must be a non-empty list")
    channel = None
    if args.get("channel_id") or args.get("channels"):
        key = "channel_id" if args.get("channel_id") else "channels"
        channel = channel_arg(fake, {"channel": str(args[key]).split(",")[0]})
        require_member(fake, channel)
    thread_ts = str(args["thread_ts"]) if args.get("thread_ts") else None
    created: list[dict[str, Any]] = []
    for item in requested:
        pending = fake._pending_uploads.get(str(item.get("id")))
        if pending is None or pending["bytes"] is None:
            raise SlackFailure("file_not_found")
    for item in requested:
        pending = fake._pending_uploads.pop(str(item["id"]))
        filename = pending["filename"]
        mimetype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        file = fake._new_file(
            name=filename,
            title=item.get("title") or filename,
            mimetype=mimetype,
            filetype=filename.rsplit(".", 1)[-1].lower() if "." in filename else "binary",
            user=fake.bot_user_id,
            content=pending["bytes"],
        )
        created.append(file)
        fake.uploads.append(
            {
                "file_id": file["id"],
                "channel_id": channel,
                "thread_ts": thread_ts,
                "title": file["title"],
                "filename": filename,
                "bytes": pending["bytes"],
                "initial_comment": args.get("initial_comment"),
            }
        )
    if channel is not None:
        message = fake.bot_message(
            channel,
            text=str(args.get("initial_comment") or ""),
            thread_ts=thread_ts,
            subtype="file_share",
            files=created,
            upload=True,
        )
        share = {"ts": message["ts"], **({"thread_ts": thread_ts} if thread_ts else {})}
        for file in created:
            file["shares"] = {"public": {channel: [share]}}
            file["channels"] = [channel]
    return {"files": [{"id": f["id"], "title": f["title"]} for f in created]}


METHODS: dict[str, Handler] = {
    "auth.test": auth_test,
    "apps.connections.open": apps_connections_open,
    "chat.postMessage": chat_post_message,
    "chat.update": chat_update,
    "chat.delete": chat_delete,
    "chat.postEphemeral": chat_post_ephemeral,
    "chat.getPermalink": chat_get_permalink,
    "reactions.add": reactions_add,
    "reactions.remove": reactions_remove,
    "conversations.replies": conversations_replies,
    "conversations.history": conversations_history,
    "conversations.info": conversations_info,
    "conversations.join": conversations_join,
    "conversations.open": conversations_open,
    "users.info": users_info,
    "views.open": views_open,
    "views.push": views_push,
    "views.update": views_update,
    "views.publish": views_publish,
    "assistant.threads.setStatus": assistant_threads_set_status,
    "files.info": files_info,
    "files.getUploadURLExternal": files_get_upload_url_external,
    "files.completeUploadExternal": files_complete_upload_external,
}

from tests.fakes import slack_agent_methods  # noqa: E402, F401  (adds the agent-app methods)
