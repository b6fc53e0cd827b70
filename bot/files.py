"""Files shared in a thread: downloaded from Slack with the bot token, handed to the model.

Each file is uploaded to the model service once per thread (remembered in the store by
Slack file id and by content digest, so re-sharing or re-uploading the same file reuses the
first upload). Problems (too big, no ``files:read`` scope, download failures) become short
notes for the thread; an HTML page is never passed to the model as if it were the file.

The bot token (with many workspaces, that of the thread's workspace) goes only to Slack: a
download URL (from the event or from ``files.info``), and every redirect it leads to, must be
HTTPS on one of Slack's file hosts or the exact origin of the Web API base the bot already
talks to (``SLACK_API_URL``; tests point it at a fake). Anything else is not fetched at all.

A slow file host must not hold the thread: all of a message's files share one deadline
(``files.info``, downloads and uploads to the model), and a download that receives no bytes
for ``stall_timeout`` seconds is given up. Files not read in time get a note.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from bot.domain import Thread
from bot.replies import SlackError
from bot.runtime.base import InputFile, Runtime, RuntimeError_
from bot.slack_text import escape_mrkdwn
from store.base import Store

log = logging.getLogger(__name__)

IMAGE_TYPES = {"png", "jpg", "jpeg", "gif", "webp"}
DATA_TYPES = {"csv", "tsv", "xlsx", "xls", "json", "xml", "parquet", "zip"}
HTML_TYPES = {"html", "htm"}
# Slack file modes with no bytes to fetch: links to other services, deleted files, files
# hidden by a free workspace's history limit.
UNREADABLE_MODES = {"external", "tombstone", "hidden_by_limit"}
# Seconds for all of one message's files together, and without a byte from a file host.
FILES_DEADLINE = 60.0
STALL_TIMEOUT = 15.0
CHUNK = 64 * 1024
# Where Slack serves ``url_private`` / ``url_private_download`` from: commercial Slack and
# GovSlack. Only over HTTPS on the default port.
SLACK_FILE_HOSTS = frozenset({"files.slack.com", "files.slack-gov.com"})
# Redirects followed per download, each one checked like the first URL.
MAX_REDIRECTS = 3

NO_SCOPE_NOTE = (
    "I couldn't open *{name}*: Slack sent a login page instead of the file. The app needs the "
    "`files:read` scope — ask an admin to add it and reinstall the app. I'm answering "
    "without the file for now."
)
TOO_BIG_NOTE = (
    "*{name}* is {size}, more than the {cap} I can read, so I'm answering without it. "
    "A smaller file or an excerpt works."
)
TOO_BIG_UNKNOWN_NOTE = (
    "*{name}* is larger than the {cap} I can read, so I'm answering without it. "
    "A smaller file or an excerpt works."
)
UNREADABLE_NOTE = (
    "I can't read *{name}* (a link to another service, or a file Slack no longer shows), "
    "so I'm answering without it."
)
FAILED_NOTE = "I couldn't download *{name}* from Slack, so I'm answering without it."
NOT_SLACK_NOTE = (
    "I didn't download *{name}*: its link does not point to Slack's file servers, "
    "so I'm answering without it."
)
UPLOAD_FAILED_NOTE = "I couldn't pass *{name}* to the model service, so I'm answering without it."

# What Slack's login page starts with; checked when the Content-Type does not say HTML.
_HTML_STARTS = (b"<!doctype html", b"<html")


class FileTooLarge(Exception):
    pass


class NotAFile(Exception):
    """Slack answered with an HTML page (typically: the token lacks ``files:read``)."""


class NotSlackHosted(Exception):
    """A download URL (or a redirect) leads somewhere the bot token must not go."""


def _origin(url: URL) -> tuple[str, str, int | None]:
    return (url.scheme, (url.host or "").lower(), url.port)


def may_send_token(url: str | URL, api_url: str) -> bool:
    """Whether ``url`` may be fetched with the bot token.

    Yes for HTTPS on Slack's file hosts (default port) and for the exact origin (scheme,
    host, port) of ``api_url``, the Web API base the token is sent to anyway. No for
    anything else, including URLs with credentials in them or that do not parse.
    """
    try:
        target = url if isinstance(url, URL) else URL(url)
        api = URL(api_url)
    except (TypeError, ValueError):
        return False
    if not target.is_absolute() or not target.host or target.user or target.password:
        return False
    if target.scheme not in ("https", "http"):
        return False
    if _origin(target) == _origin(api):
        return True
    return (
        target.scheme == "https" and target.host.lower() in SLACK_FILE_HOSTS and target.port == 443
    )


def file_use(slack_file: dict[str, Any]) -> str:
    """How the model should use a file: look at it, compute with it, or read it."""
    filetype = str(slack_file.get("filetype") or "").lower()
    mimetype = str(slack_file.get("mimetype") or "").lower()
    ext = _extension(slack_file)
    if filetype in IMAGE_TYPES or ext in IMAGE_TYPES or mimetype.startswith("image/"):
        return "image"
    if filetype in DATA_TYPES or ext in DATA_TYPES:
        return "code_interpreter"
    return "file_search"


def human_size(size: float) -> str:
    """``20480`` -> ``"20 KB"``, ``1572864`` -> ``"1.5 MB"`` (binary units, as Slack shows)."""
    if size >= 1024 * 1024:
        return f"{size / 1048576:.1f}".removesuffix(".0") + " MB"
    if size >= 1024:
        return f"{size / 1024:.0f} KB"
    return f"{int(size)} bytes"


def looks_like_html(head: bytes) -> bool:
    return head.removeprefix(b"\xef\xbb\xbf").lstrip()[:20].lower().startswith(_HTML_STARTS)


def _extension(slack_file: dict[str, Any]) -> str:
    name = str(slack_file.get("name") or "").lower()
    return name.rsplit(".", 1)[-1] if "." in name else ""


def _expects_html(slack_file: dict[str, Any]) -> bool:
    filetype = str(slack_file.get("filetype") or "").lower()
    return filetype in HTML_TYPES or _extension(slack_file) in HTML_TYPES


def _digest_key(content: bytes) -> str:
    # Kept in the same per-thread table as Slack file ids; the prefix cannot clash with them.
    return "sha256:" + hashlib.sha256(content).hexdigest()


@dataclass(frozen=True, slots=True)
class _Shared:
    """One Slack file of a message, as far as the intake cares."""

    file_id: str
    name: str
    use: str
    size: int
    mode: str

    @property
    def shown(self) -> str:
        """The name as notes show it (mrkdwn-escaped)."""
        return escape_mrkdwn(self.name)

    @classmethod
    def of(cls, slack_file: dict[str, Any]) -> _Shared:
        file_id = str(slack_file.get("id") or "")
        try:
            size = int(slack_file.get("size") or 0)
        except (TypeError, ValueError):
            size = 0
        return cls(
            file_id=file_id,
            name=str(slack_file.get("name") or slack_file.get("title") or file_id or "file")[:200],
            use=file_use(slack_file),
            size=size,
            mode=str(slack_file.get("mode") or "hosted"),
        )


class FileIntake:
    def __init__(
        self,
        *,
        store: Store,
        runtime: Runtime,
        bot_token: str,
        api_url: str,
        max_bytes: int,
        file_info: Callable[[str], Awaitable[dict[str, Any]]] | None = None,
        slack_token: Callable[[], Awaitable[str]] | None = None,
        session_factory: Any = aiohttp.ClientSession,
        deadline: float = FILES_DEADLINE,
        stall_timeout: float = STALL_TIMEOUT,
    ) -> None:
        self.deadline = deadline
        self.stall_timeout = stall_timeout
        self._file_info = file_info
        self._store = store
        self._runtime = runtime
        self._token = bot_token
        # Many workspaces: the token of the workspace at hand (``Replies.token``).
        self._slack_token = slack_token
        self._api_url = api_url
        self._max_bytes = max_bytes
        self._session_factory = session_factory

    async def prepare(
        self, thread: Thread, files: Sequence[dict[str, Any]]
    ) -> tuple[list[InputFile], list[str]]:
        """Model-side files for a message's Slack files, and notes about any left out."""
        inputs: list[InputFile] = []
        notes: list[str] = []
        if not files:
            return inputs, notes
        # The store calls in between are not cut short: only the network waits are.
        deadline = asyncio.get_running_loop().time() + self.deadline
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.stall_timeout, sock_read=self.stall_timeout
        )
        async with self._session_factory(timeout=timeout) as session:
            for event_file in files:
                slack_file = await self._complete(event_file, deadline)
                shared = _Shared.of(slack_file)
                if not shared.file_id:
                    continue
                remote_id, note = await self._remote_file(
                    session, thread, shared, slack_file, deadline
                )
                if note is not None:
                    notes.append(note)
                if remote_id is not None and all(i.file_id != remote_id for i in inputs):
                    inputs.append(
                        InputFile(file_id=remote_id, filename=shared.name, use=shared.use)
                    )
        return inputs, notes

    async def _complete(self, slack_file: dict[str, Any], deadline: float) -> dict[str, Any]:
        """Events may carry a stub (Slack Connect: ``file_access: check_file_info``) without
        download URLs; ``files.info`` has the full file."""
        has_url = slack_file.get("url_private_download") or slack_file.get("url_private")
        stub = slack_file.get("file_access") == "check_file_info" or not has_url
        if not stub or self._file_info is None or not slack_file.get("id"):
            return slack_file
        try:
            async with asyncio.timeout_at(deadline):
                info = await self._file_info(str(slack_file["id"]))
            return {**slack_file, **info}
        except Exception as exc:  # a note about the file follows from the missing URL
            log.warning("files.info for %s failed: %s", slack_file.get("id"), exc)
            return slack_file

    async def _remote_file(
        self,
        session: aiohttp.ClientSession,
        thread: Thread,
        shared: _Shared,
        slack_file: dict[str, Any],
        deadline: float,
    ) -> tuple[str | None, str | None]:
        """The model-side id of one file (uploading it if new), or a note saying why not."""
        known = await self._store.get_remote_file(thread.id, shared.file_id)
        if known is not None:
            return known, None
        cap = human_size(self._max_bytes)
        if shared.mode in UNREADABLE_MODES:
            return None, UNREADABLE_NOTE.format(name=shared.shown)
        if shared.size > self._max_bytes:
            return None, TOO_BIG_NOTE.format(
                name=shared.shown, size=human_size(shared.size), cap=cap
            )
        try:
            async with asyncio.timeout_at(deadline):
                content = await self._download(session, slack_file)
        except FileTooLarge:
            return None, TOO_BIG_UNKNOWN_NOTE.format(name=shared.shown, cap=cap)
        except NotAFile:
            log.warning("file %s came back as HTML: files:read scope missing?", shared.file_id)
            return None, NO_SCOPE_NOTE.format(name=shared.shown)
        except NotSlackHosted as exc:
            log.warning("file %s not downloaded: %s is not a Slack file host", shared.file_id, exc)
            return None, NOT_SLACK_NOTE.format(name=shared.shown)
        except (aiohttp.ClientError, TimeoutError, ValueError, SlackError) as exc:
            log.warning("download of %s failed: %s", shared.file_id, type(exc).__name__)
            return None, FAILED_NOTE.format(name=shared.shown)
        digest = _digest_key(content)
        remote_id = await self._store.get_remote_file(thread.id, digest)
        if remote_id is None:
            try:
                async with asyncio.timeout_at(deadline):
                    remote_id = await self._runtime.upload_file(shared.name, content)
            except (RuntimeError_, TimeoutError) as exc:
                reason = str(exc) or "the files' deadline passed"
                log.warning("upload of %s to the model failed: %s", shared.file_id, reason)
                return None, UPLOAD_FAILED_NOTE.format(name=shared.shown)
            await self._store.remember_file(thread.id, digest, remote_id)
        await self._store.remember_file(thread.id, shared.file_id, remote_id)
        return remote_id, None

    async def _download(self, session: aiohttp.ClientSession, slack_file: dict[str, Any]) -> bytes:
        raw = slack_file.get("url_private_download") or slack_file.get("url_private")
        if not isinstance(raw, str) or not raw.startswith(("https://", "http://")):
            raise ValueError("no download URL")
        try:
            url = URL(raw)
        except ValueError:
            raise NotSlackHosted("an unparsable URL") from None
        token = self._token if self._slack_token is None else await self._slack_token()
        headers = {"Authorization": f"Bearer {token}"}
        expects_html = _expects_html(slack_file)
        redirects = 0
        while True:
            if not may_send_token(url, self._api_url):
                raise NotSlackHosted(f"{url.scheme}://{url.host}:{url.port}")
            # Redirects are followed here, not by aiohttp, so each hop is checked first.
            async with session.get(url, headers=headers, allow_redirects=False) as resp:
                location = resp.headers.get("Location")
                if resp.status in (301, 302, 303, 307, 308) and location:
                    redirects += 1
                    if redirects > MAX_REDIRECTS:
                        raise ValueError("too many redirects")
                    try:
                        url = url.join(URL(location))
                    except ValueError:
                        raise NotSlackHosted("an unparsable redirect") from None
                    continue
                resp.raise_for_status()
                content_type = resp.headers.get("Content-Type", "").lower()
                if content_type.startswith("text/html") and not expects_html:
                    raise NotAFile(raw)
                chunks: list[bytes] = []
                total = 0
                async for chunk in resp.content.iter_chunked(CHUNK):
                    total += len(chunk)
                    if total > self._max_bytes:
                        raise FileTooLarge(raw)
                    chunks.append(chunk)
                break
        content = b"".join(chunks)
        # A login page served under another Content-Type is still not the file.
        if not expects_html and looks_like_html(content[:512]):
            raise NotAFile(raw)
        return content
