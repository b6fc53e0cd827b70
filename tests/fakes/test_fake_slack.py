"""The Slack fakes, checked through the real slack_sdk / slack_bolt clients."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.models.blocks import ActionsBlock, ButtonElement, MarkdownBlock, SectionBlock
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from tests.fakes import slack_payloads as p
from tests.fakes.slack_server import FakeSlack, message_text

SECRET = "signing-secret"


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as f:
        yield f


@pytest.fixture
def client(fake: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)


async def _error(coro: Any) -> SlackApiError:
    with pytest.raises(SlackApiError) as info:
        await coro
    return info.value


# --------------------------------------------------------------------------- Web API basics


async def test_auth_test_and_bad_tokens(fake: FakeSlack, client: AsyncWebClient) -> None:
    resp = await client.auth_test()
    assert resp["user_id"] == "UBOT" and resp["bot_id"] == "BBOT" and resp["team_id"] == "T1"
    assert resp["is_enterprise_install"] is False

    bad = AsyncWebClient(token="xoxb-wrong", base_url=fake.api_url)
    assert (await _error(bad.auth_test())).response["error"] == "invalid_auth"
    anonymous = AsyncWebClient(base_url=fake.api_url)
    assert (await _error(anonymous.auth_test())).response["error"] == "not_authed"
    app_level = AsyncWebClient(token=fake.app_token, base_url=fake.api_url)
    err = await _error(app_level.chat_postMessage(channel="C1", text="x"))
    assert err.response["error"] == "not_allowed_token_type"
    assert fake.calls[0].token == fake.bot_token


async def test_post_thread_update_delete(fake: FakeSlack, client: AsyncWebClient) -> None:
    parent = fake.add_message(p.app_mention(text="what is 2+2?"))
    assert parent is not None
    first = await client.chat_postMessage(channel="C1", thread_ts=parent["ts"], text="thinking")
    second = await client.chat_postMessage(channel="C1", thread_ts=parent["ts"], text="4")
    assert first["message"]["thread_ts"] == parent["ts"]
    assert p.ts_key(first["ts"]) < p.ts_key(second["ts"])

    assert [m["text"] for m in fake.thread("C1", parent["ts"])] == ["thinking", "4"]
    assert len(fake.bot_messages("C1", parent["ts"])) == 2

    await client.chat_update(channel="C1", ts=first["ts"], text="done")
    assert fake.thread("C1", parent["ts"])[0]["text"] == "done"
    await client.chat_delete(channel="C1", ts=second["ts"])
    replies = await client.conversations_replies(channel="C1", ts=parent["ts"])
    assert [m["ts"] for m in replies["messages"]] == [parent["ts"], first["ts"]]
    assert replies["messages"][0]["reply_count"] == 1

    err = await _error(client.chat_update(channel="C1", ts="1.000001", text="x"))
    assert err.response["error"] == "message_not_found"
    err = await _error(client.chat_update(channel="C1", ts=parent["ts"], text="x"))
    assert err.response["error"] == "cant_update_message"
    err = await _error(client.conversations_replies(channel="C1", ts="1.000001"))
    assert err.response["error"] == "thread_not_found"


async def test_replies_page_with_a_cursor_and_a_time_range(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    parent = fake.add_message(p.message(text="parent"))
    assert parent is not None
    replies = [fake.add_message(p.message(text=f"r{i}", thread_ts=parent["ts"])) for i in range(5)]
    ts = [parent["ts"]] + [r["ts"] for r in replies if r is not None]
    seen: list[str] = []
    cursor = None
    while True:
        page = await client.conversations_replies(
            channel="C1", ts=parent["ts"], limit=2, cursor=cursor
        )
        seen += [m["ts"] for m in page["messages"]]
        cursor = page["response_metadata"]["next_cursor"]
        assert page["has_more"] is bool(cursor)
        if not cursor:
            break
    assert seen == ts  # oldest first, parent first
    # latest/oldest bound the range, exclusive unless inclusive.
    until = await client.conversations_replies(channel="C1", ts=parent["ts"], latest=ts[3])
    assert [m["ts"] for m in until["messages"]] == ts[:3]
    until = await client.conversations_replies(
        channel="C1", ts=parent["ts"], latest=ts[3], inclusive=True
    )
    assert [m["ts"] for m in until["messages"]] == ts[:4]
    since = await client.conversations_replies(channel="C1", ts=parent["ts"], oldest=ts[3])
    assert [m["ts"] for m in since["messages"]] == ts[4:]


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
async def test_message_rules(fake: FakeSlack, client: AsyncWebClient) -> None:
    assert (await _error(client.chat_postMessage(channel="C1"))).response["error"] == "no_text"
    err = await _error(client.chat_postMessage(channel="C1", text="a", markdown_text="**a**"))
    assert err.response["error"] == "markdown_text_conflict"

    resp = await client.chat_postMessage(channel="C1", text="x" * 45_000)
    assert len(fake.find_message("C1", resp["ts"])["text"]) == 40_000  # type: ignore[index]

    md = await client.chat_postMessage(channel="C1", markdown_text="**bold**")
    assert fake.find_message("C1", md["ts"])["markdown_text"] == "**bold**"  # type: ignore[index]

    fake.remove_bot("C2")
    err = await _error(client.chat_postMessage(channel="C2", text="hi"))
    assert err.response["error"] == "not_in_channel"
    await client.conversations_join(channel="C2")
    await client.chat_postMessage(channel="C2", text="hi")

    fake.unknown_channels.add("C404")
    err = await _error(client.chat_postMessage(channel="C404", text="hi"))
    assert err.response["error"] == "channel_not_found"

    dm = await client.chat_postMessage(channel="U1", text="psst")
    assert dm["channel"] == "DU1"


async def test_invalid_blocks(client: AsyncWebClient) -> None:
    ok_blocks = [
        SectionBlock(text="pick one"),
        ActionsBlock(
            block_id="q1",
            elements=[ButtonElement(text="A", action_id="a", value="a")],
        ),
        MarkdownBlock(text="**hi**"),
    ]
    await client.chat_postMessage(channel="C1", text="quiz", blocks=ok_blocks)

    section = {"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}
    button = {
        "type": "actions",
        "elements": [
            {"type": "button", "action_id": "a", "text": {"type": "plain_text", "text": "b" * 76}}
        ],
    }
    header = {"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}
    long_id = {
        "type": "actions",
        "elements": [
            {"type": "button", "action_id": "a" * 256, "text": {"type": "plain_text", "text": "b"}}
        ],
    }
    markdown = [{"type": "markdown", "text": "m" * 7000}, {"type": "markdown", "text": "m" * 5001}]
    duplicate = [{"type": "divider", "block_id": "x"}, {"type": "divider", "block_id": "x"}]
    too_many = [{"type": "divider"}] * 51
    for blocks in ([section], [button], [header], [long_id], markdown, duplicate, too_many):
        err = await _error(client.chat_postMessage(channel="C1", text="t", blocks=blocks))
        assert err.response["error"] == "invalid_blocks", blocks
        assert err.response["response_metadata"]["messages"][0].startswith("[ERROR]")


async def test_rate_limit_retried_by_sdk_handler(fake: FakeSlack) -> None:
    plain = AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)
    fake.rate_limit_next("chat.postMessage", retry_after=7)
    err = await _error(plain.chat_postMessage(channel="C1", text="hi"))
    assert err.response.status_code == 429 and err.response["error"] == "ratelimited"
    assert err.response.headers["Retry-After"] == "7"

    retrying = AsyncWebClient(
        token=fake.bot_token,
        base_url=fake.api_url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=2)],
    )
    fake.rate_limit_next("chat.postMessage", retry_after=0)
    resp = await retrying.chat_postMessage(channel="C1", text="hello")
    assert resp["ok"]
    posts = fake.calls_to("chat.postMessage")
    assert [c.status for c in posts] == [429, 429, 200]
    assert [m["text"] for m in fake.bot_messages("C1")] == ["hello"]


async def test_fail_disconnect_and_delay(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.fail_next("chat.update", "internal_error")
    err = await _error(client.chat_update(channel="C1", ts="1.1", text="x"))
    assert err.response["error"] == "internal_error"

    # slack_sdk retries a dropped connection once by default: the message is posted twice.
    fake.disconnect_next("chat.postMessage")
    await client.chat_postMessage(channel="C1", text="twice")
    assert [m["text"] for m in fake.bot_messages("C1")] == ["twice", "twice"]

    fake.delay_next("auth.test", 0.2)
    started = time.monotonic()
    await client.auth_test()
    assert time.monotonic() - started >= 0.2

    # Unknown methods answer ok and are recorded.
    await client.api_call("bookmarks.list", json={"channel_id": "C1"})
    assert fake.calls[-1].method == "bookmarks.list" and fake.calls[-1].ok


async def test_reactions_status_ephemeral_permalink(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    await client.reactions_add(channel="C1", timestamp="1.000001", name="eyes")
    err = await _error(client.reactions_add(channel="C1", timestamp="1.000001", name="eyes"))
    assert err.response["error"] == "already_reacted"
    await client.reactions_remove(channel="C1", timestamp="1.000001", name="eyes")
    err = await _error(client.reactions_remove(channel="C1", timestamp="1.000001", name="eyes"))
    assert err.response["error"] == "no_reaction"
    assert fake.reactions == [("C1", "1.000001", "eyes", True), ("C1", "1.000001", "eyes", False)]

    await client.assistant_threads_setStatus(
        channel_id="D1", thread_ts="1.1", status="is thinking…", loading_messages=["Hm"]
    )
    assert fake.statuses == [
        {
            "channel_id": "D1",
            "thread_ts": "1.1",
            "status": "is thinking…",
            "loading_messages": ["Hm"],
        }
    ]

    await client.chat_postEphemeral(channel="C1", user="U1", text="only you")
    assert fake.ephemerals[-1]["user"] == "U1" and fake.ephemerals[-1]["text"] == "only you"

    link = await client.chat_getPermalink(channel="C1", message_ts="1700000000.000100")
    assert link["permalink"].endswith("/archives/C1/p1700000000000100")
    user = await client.users_info(user="U1")
    assert user["user"]["id"] == "U1" and user["user"]["is_bot"] is False
    info = await client.conversations_info(channel="C1")
    assert info["channel"]["is_member"] is True


async def test_streaming(fake: FakeSlack, client: AsyncWebClient) -> None:
    start = await client.chat_startStream(
        channel="C1",
        thread_ts="1.1",
        markdown_text="Hel",
        recipient_user_id="U1",
        recipient_team_id="T1",
    )
    await client.chat_appendStream(channel="C1", ts=start["ts"], markdown_text="lo")
    await client.chat_stopStream(channel="C1", ts=start["ts"], markdown_text="!")
    assert fake.find_message("C1", start["ts"])["text"] == "Hello!"  # type: ignore[index]
    err = await _error(client.chat_appendStream(channel="C1", ts=start["ts"], markdown_text="x"))
    assert err.response["error"] == "message_not_in_streaming_state"

    stream = await client.chat_stream(
        channel="C1", thread_ts="1.1", recipient_team_id="T1", recipient_user_id="U1", buffer_size=4
    )
    for piece in ("The ", "answer ", "is 42."):
        await stream.append(markdown_text=piece)
    await stream.stop()
    assert fake.thread("C1", "1.1")[-1]["text"] == "The answer is 42."
    fake.close_stream("C1", start["ts"])  # no-op on a stopped stream


# --------------------------------------------------------------------------- modals


async def test_views_trigger_rules(fake: FakeSlack, client: AsyncWebClient) -> None:
    view = {
        "type": "modal",
        "callback_id": "answer",
        "private_metadata": "quiz-1",
        "title": {"type": "plain_text", "text": "Your answer"},
        "submit": {"type": "plain_text", "text": "Send"},
        "blocks": [
            {
                "type": "input",
                "block_id": "answer",
                "label": {"type": "plain_text", "text": "Answer"},
                "element": {"type": "plain_text_input", "action_id": "text"},
            }
        ],
    }
    trigger = fake.new_trigger_id(user="U7")
    opened = await client.views_open(trigger_id=trigger, view=view)
    assert opened["view"]["id"].startswith("V") and opened["view"]["callback_id"] == "answer"
    assert fake.views[-1]["user"] == "U7" and fake.views[-1]["trigger_id"] == trigger

    err = await _error(client.views_open(trigger_id=trigger, view=view))
    assert err.response["error"] == "exchanged_trigger_id"
    expired = fake.new_trigger_id()
    fake.expire_trigger(expired)
    assert (await _error(client.views_open(trigger_id=expired, view=view))).response[
        "error"
    ] == "expired_trigger_id"
    fake.trigger_ttl = 0.05
    late = fake.new_trigger_id()
    await asyncio.sleep(0.1)
    err = await _error(client.views_open(trigger_id=late, view=view))
    assert err.response["error"] == "expired_trigger_id"
    err = await _error(client.views_open(trigger_id="12345.6789.abc", view=view))
    assert err.response["error"] == "invalid_arguments"

    updated = await client.views_update(
        view_id=opened["view"]["id"], hash=opened["view"]["hash"], view={**view, "blocks": []}
    )
    assert (
        updated["view"]["id"] == opened["view"]["id"] and fake.views[-1]["method"] == "views.update"
    )
    err = await _error(client.views_update(view_id=opened["view"]["id"], hash="stale", view=view))
    assert err.response["error"] == "hash_conflict"

    fake.trigger_ttl = 3.0
    bad_title = {**view, "title": {"type": "plain_text", "text": "t" * 25}}
    err = await _error(client.views_open(trigger_id=fake.new_trigger_id(), view=bad_title))
    assert err.response["error"] == "invalid_arguments"


# --------------------------------------------------------------------------- files


async def test_files_upload_v2_into_thread(fake: FakeSlack, client: AsyncWebClient) -> None:
    resp = await client.files_upload_v2(
        channel="C1",
        thread_ts="1700000000.000100",
        content=b"\x89PNG fake",
        filename="plot.png",
        title="The plot",
        initial_comment="Here is the graph",
    )
    file_id = resp["file"]["id"]
    [upload] = fake.uploads
    assert upload["bytes"] == b"\x89PNG fake" and upload["thread_ts"] == "1700000000.000100"
    assert upload["title"] == "The plot" and upload["initial_comment"] == "Here is the graph"
    [share] = fake.thread("C1", "1700000000.000100")
    assert share["subtype"] == "file_share" and share["files"][0]["id"] == file_id

    info = await client.files_info(file=file_id)
    assert info["file"]["mimetype"] == "image/png"
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            info["file"]["url_private_download"],
            headers={"Authorization": f"Bearer {fake.bot_token}"},
        ) as r,
    ):
        assert await r.read() == b"\x89PNG fake"


async def test_file_download_needs_token(fake: FakeSlack) -> None:
    file = fake.add_file(
        name="notes.txt", content=b"x^2 + 1", mimetype="text/plain", filetype="text"
    )
    assert file["id"].startswith("F") and file["size"] == 7
    auth = {"Authorization": f"Bearer {fake.bot_token}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(file["url_private_download"], headers=auth) as r:
            assert r.status == 200 and await r.read() == b"x^2 + 1"
        async with http.get(file["url_private"]) as r:
            assert r.status == 200 and r.content_type == "text/html"
        html = fake.add_file(
            name="a.pdf",
            content=b"%PDF",
            mimetype="application/pdf",
            filetype="pdf",
            html_instead=True,
        )
        async with http.get(html["url_private_download"], headers=auth) as r:
            assert r.content_type == "text/html" and "Sign in" in await r.text()
    assert [d["authorized"] for d in fake.downloads] == [True, False, True]


async def test_response_url(fake: FakeSlack, client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel="C1", text="question")
    url = fake.response_url(channel="C1", message_ts=posted["ts"], user="U1")
    hook = AsyncWebhookClient(url)
    resp = await hook.send(text="just for you")
    assert resp.status_code == 200
    assert fake.ephemerals[-1]["response_type"] == "ephemeral"
    await hook.send(text="answered", replace_original=True)
    assert fake.find_message("C1", posted["ts"])["text"] == "answered"  # type: ignore[index]
    for _ in range(3):
        await hook.send(text="again")
    assert (await hook.send(text="sixth")).status_code == 404


async def test_wait_for_dumps_calls_on_timeout(fake: FakeSlack, client: AsyncWebClient) -> None:
    await client.chat_postMessage(channel="C1", text="hello there")
    assert await fake.wait_for(lambda: fake.bot_messages("C1")) == fake.bot_messages("C1")
    with pytest.raises(AssertionError, match=r"chat\.postMessage \[ok\][\s\S]*hello there"):
        await fake.wait_for(lambda: False, timeout=0.05)


# --------------------------------------------------------------------------- Socket Mode


async def test_socket_mode_with_sdk_client(fake: FakeSlack) -> None:
    web_client = AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)
    err = await _error(web_client.apps_connections_open(app_token=fake.bot_token))
    assert err.response["error"] == "not_allowed_token_type"

    sm = SocketModeClient(app_token=fake.app_token, web_client=web_client)
    hellos: list[dict[str, Any]] = []

    async def on_message(client: Any, message: dict[str, Any], raw: str | None) -> None:
        if message.get("type") == "hello":
            hellos.append(message)

    async def on_request(client: AsyncBaseSocketModeClient, req: SocketModeRequest) -> None:
        await client.send_socket_mode_response(
            SocketModeResponse(envelope_id=req.envelope_id, payload={"seen": req.type})
        )

    sm.message_listeners.append(on_message)
    sm.socket_mode_request_listeners.append(on_request)
    try:
        await sm.connect()
        await fake.socket.wait_connected()
        event = p.app_mention(text="hi")
        envelope_id = await fake.socket.send("events_api", p.event_callback(event))
        ack = await fake.socket.wait_ack(envelope_id)
        assert ack == {"envelope_id": envelope_id, "payload": {"seen": "events_api"}}
        assert fake.find_message("C1", event["ts"]) is not None  # recorded in history
        assert hellos and hellos[0]["num_connections"] == 1

        await fake.socket.send_disconnect()
        await fake.socket.wait_connected(total=2)
        envelope_id = await fake.socket.send("slash_commands", p.slash_command("help"))
        assert fake.socket.envelopes[-1]["accepts_response_payload"] is True
        await fake.socket.wait_ack(envelope_id)
    finally:
        await sm.close()


async def test_socket_mode_with_bolt(fake: FakeSlack) -> None:
    web_client = AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)
    app = AsyncApp(client=web_client)

    @app.event("app_mention")
    async def mention(event: dict[str, Any], say: Any) -> None:
        await say(text="pong", thread_ts=event["ts"])

    handler = AsyncSocketModeHandler(app, fake.app_token)
    try:
        await handler.connect_async()
        event = p.app_mention(text="ping")
        envelope_id = await fake.socket.send("events_api", p.event_callback(event))
        assert await fake.socket.wait_ack(envelope_id) == {"envelope_id": envelope_id}
        replies = await fake.wait_for(lambda: fake.thread("C1", event["ts"]))
        assert replies[0]["text"] == "pong"
    finally:
        await handler.close_async()


# --------------------------------------------------------------------------- signing + Bolt HTTP


def test_sign_matches_slack_sdk_verifier() -> None:
    body = b'{"type":"event_callback"}'
    now = int(time.time())
    verifier = SignatureVerifier(SECRET)
    assert verifier.is_valid(body, str(now), p.sign(SECRET, body, now))
    assert not verifier.is_valid(body, str(now), p.sign("other", body, now))


def test_payload_shapes() -> None:
    mention = p.app_mention(text="help", thread_ts="1.000001")
    assert mention["text"] == "<@UBOT> help" and mention["event_ts"] == mention["ts"]
    assert mention["blocks"][0]["elements"][0]["elements"][0] == {"type": "user", "user_id": "UBOT"}
    dm = p.message(text="hi", channel="D1")
    assert dm["channel_type"] == "im" and "subtype" not in dm
    stored = {
        "type": "message",
        "ts": "1.000002",
        "thread_ts": "1.000001",
        "blocks": [
            {
                "type": "actions",
                "block_id": "q0",
                "elements": [
                    {
                        "type": "button",
                        "action_id": "choice_1",
                        "value": "B",
                        "text": {"type": "plain_text", "text": "B"},
                    }
                ],
            }
        ],
    }
    click = p.block_actions(action_id="choice_1", message=stored)
    assert click["actions"][0]["block_id"] == "q0" and click["actions"][0]["value"] == "B"
    assert click["container"]["message_ts"] == "1.000002"
    assert click["container"]["channel_id"] == "C1"
    sub = p.view_submission(callback_id="cb", private_metadata="m", values={"b": {"a": "42"}})
    assert sub["view"]["state"]["values"] == {
        "b": {"a": {"type": "plain_text_input", "value": "42"}}
    }
    tss = [p.next_ts() for _ in range(100)]
    assert len(set(tss)) == 100 and sorted(tss, key=p.ts_key) == tss


async def test_sender_against_bolt_http(fake: FakeSlack) -> None:
    app = AsyncApp(
        client=AsyncWebClient(token=fake.bot_token, base_url=fake.api_url),
        signing_secret=SECRET,
    )
    seen: dict[str, Any] = {}

    @app.event("app_mention")
    async def mention(event: dict[str, Any], say: Any) -> None:
        await say(text="hi back", thread_ts=event["ts"])

    @app.command("/tutor")
    async def command(ack: Any, command: dict[str, Any]) -> None:
        seen["command"] = command
        await ack("on it")

    @app.action("choice_1")
    async def action(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        await client.views_open(
            trigger_id=body["trigger_id"],
            view={
                "type": "modal",
                "callback_id": "answer",
                "title": {"type": "plain_text", "text": "Answer"},
                "blocks": [],
            },
        )

    @app.view("answer")
    async def submitted(ack: Any, view: dict[str, Any]) -> None:
        seen["values"] = view["state"]["values"]
        await ack(response_action="errors", errors={"b": "try again"})

    runner = web.AppRunner(app.web_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    sender = p.SlackSender(f"http://{host}:{port}/slack/events", SECRET, on_event=fake.add_message)
    try:
        challenge = await sender.url_verification("abc")
        assert challenge.status == 200 and "abc" in challenge.body
        bad = await sender.post_raw(b"{}", content_type="application/json", signature="v0=bad")
        assert bad.status == 401

        event = p.app_mention(text="hello")
        result = await sender.post_event(event, retry_num=1, retry_reason="http_timeout")
        assert result.status == 200 and result.event_id and result.event_id.startswith("Ev")
        replies = await fake.wait_for(lambda: fake.thread("C1", event["ts"]))
        assert message_text(replies[0]) == "hi back"
        assert fake.find_message("C1", event["ts"]) is not None  # on_event recorded it

        cmd = await sender.post_command("quiz fractions")
        assert cmd.status == 200 and cmd.body == "on it"
        assert seen["command"]["text"] == "quiz fractions"

        click = p.block_actions(
            action_id="choice_1",
            value="B",
            message_ts="1.000001",
            trigger_id=fake.new_trigger_id(),
        )
        assert (await sender.post_interaction(click)).status == 200
        opened = await fake.wait_for(lambda: fake.views)
        assert opened[0]["view"]["callback_id"] == "answer"

        sub = p.view_submission(view=opened[0]["view"], values={"b": {"a": "42"}})
        answer = await sender.post_interaction(sub)
        assert answer.status == 200
        assert json.loads(answer.body) == {
            "response_action": "errors",
            "errors": {"b": "try again"},
        }
        assert seen["values"]["b"]["a"]["value"] == "42"
    finally:
        await runner.cleanup()
