"""Files shared in a thread: downloaded from Slack with the bot token, handed to the model.

Each file is uploaded to the model service once per thread (remembered in the store by
Slack file id and by content digest, so re-sharing or re-uploading the same file reuses the
first upload). Problems (too big, no ``files:read`` scope, download failures) become short
notes for the thread; an HTML page is never passed to the model as if it were the file.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from bot.domain import Thread
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
DOWNLOAD_TIMEOUT = 120
CHUNK = 64 * 1024

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
UPLOAD_FAILED_NOTE = "I couldn't pass *{name}* to the model service, so I'm answering without it."

# What Slack's login page starts with; checked when the Content-Type does not say HTML.
_HTML_STARTS = (b"<!doctype html", b"<html")


class FileTooLarge(Exception):
    pass


class NotAFile(Exception):
    """Slack answered with an HTML page (typically: the token lacks ``files:read``)."""


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
        max_bytes: int,
        file_info: Callable[[str], Awaitable[dict[str, Any]]] | None = None,
        session_factory: Any = aiohttp.ClientSession,
    ) -> None:
        self._file_info = file_info
        self._store = store
        self._runtime = runtime
        self._token = bot_token
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
        timeout = aiohttp.ClientTimeout(total=DOWNLOAD_TIMEOUT)
        async with self._session_factory(timeout=timeout) as session:
            for event_file in files:
                slack_file = await self._complete(event_file)
                shared = _Shared.of(slack_file)
                if not shared.file_id:
                    continue
                remote_id, note = await self._remote_file(session, thread, shared, slack_file)
                if note is not None:
                    notes.append(note)
                if remote_id is not None and all(i.file_id != remote_id for i in inputs):
                    inputs.append(
                        InputFile(file_id=remote_id, filename=shared.name, use=shared.use)
                    )
        return inputs, notes

    async def _complete(self, slack_file: dict[str, Any]) -> dict[str, Any]:
        """Events may carry a stub (Slack Connect: ``file_access: check_file_info``) without
        download URLs; ``files.info`` has the full file."""
        has_url = slack_file.get("url_private_download") or slack_file.get("url_private")
        stub = slack_file.get("file_access") == "check_file_info" or not has_url
        if not stub or self._file_info is None or not slack_file.get("id"):
            return slack_file
        try:
            return {**slack_file, **await self._file_info(str(slack_file["id"]))}
        except Exception as exc:  # a note about the file follows from the missing URL
            log.warning("files.info for %s failed: %s", slack_file.get("id"), exc)
            return slack_file

    async def _remote_file(
        self,
        session: aiohttp.ClientSession,
        thread: Thread,
        shared: _Shared,
        slack_file: dict[str, Any],
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
            content = await self._download(session, slack_file)
        except FileTooLarge:
            return None, TOO_BIG_UNKNOWN_NOTE.format(name=shared.shown, cap=cap)
        except NotAFile:
            log.warning("file %s came back as HTML: files:read scope missing?", shared.file_id)
            return None, NO_SCOPE_NOTE.format(name=shared.shown)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("download of %s failed: %s", shared.file_id, type(exc).__name__)
            return None, FAILED_NOTE.format(name=shared.shown)
        digest = _digest_key(content)
        remote_id = await self._store.get_remote_file(thread.id, digest)
        if remote_id is None:
            try:
                remote_id = await self._runtime.upload_file(shared.name, content)
            except RuntimeError_ as exc:
                log.warning("upload of %s to the model failed: %s", shared.file_id, exc)
                return None, UPLOAD_FAILED_NOTE.format(name=shared.shown)
            await self._store.remember_file(thread.id, digest, remote_id)
        await self._store.remember_file(thread.id, shared.file_id, remote_id)
        return remote_id, None

    async def _download(self, session: aiohttp.ClientSession, slack_file: dict[str, Any]) -> bytes:
        url = slack_file.get("url_private_download") or slack_file.get("url_private")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise ValueError("no download URL")
        headers = {"Authorization": f"Bearer {self._token}"}
        expects_html = _expects_html(slack_file)
        async with session.get(url, headers=headers) as resp:
            resp.raise_for_status()
            content_type = resp.headers.get("Content-Type", "").lower()
            if content_type.startswith("text/html") and not expects_html:
                raise NotAFile(url)
            chunks: list[bytes] = []
            total = 0
            async for chunk in resp.content.iter_chunked(CHUNK):
                total += len(chunk)
                if total > self._max_bytes:
                    raise FileTooLarge(url)
                chunks.append(chunk)
        content = b"".join(chunks)
        # A login page served under another Content-Type is still not the file.
        if not expects_html and looks_like_html(content[:512]):
            raise NotAFile(url)
        return content
