"""Files shared in a thread: downloaded from Slack with the bot token, handed to the model.

Each Slack file is uploaded to the model service once per thread (remembered in the store).
Problems (too big, no ``files:read`` scope, download failures) become short notes for the
thread; an HTML page is never passed to the model as if it were the file.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import aiohttp

from bot.domain import Thread
from bot.runtime.base import InputFile, Runtime, RuntimeError_
from store.base import Store

log = logging.getLogger(__name__)

IMAGE_TYPES = {"png", "jpg", "jpeg", "gif", "webp"}
DATA_TYPES = {"csv", "tsv", "xlsx", "xls", "json", "xml", "parquet", "zip"}
NO_SCOPE_NOTE = (
    "I couldn't open *{name}*: Slack sent a login page instead of the file. The app needs the "
    "`files:read` scope — ask an admin to add it and reinstall the app."
)
TOO_BIG_NOTE = "*{name}* is {size_mb:.1f} MB; I can read files up to {cap_mb:.0f} MB."
FAILED_NOTE = "I couldn't download *{name}* from Slack, so I'm answering without it."
UPLOAD_FAILED_NOTE = "I couldn't pass *{name}* to the model service, so I'm answering without it."


class FileTooLarge(Exception):
    pass


class NotAFile(Exception):
    """Slack answered with an HTML page (typically: the token lacks ``files:read``)."""


def file_use(slack_file: dict[str, Any]) -> str:
    """How the model should use a file: look at it, compute with it, or read it."""
    filetype = str(slack_file.get("filetype") or "").lower()
    mimetype = str(slack_file.get("mimetype") or "").lower()
    name = str(slack_file.get("name") or "").lower()
    ext = name.rsplit(".", 1)[-1] if "." in name else ""
    if filetype in IMAGE_TYPES or ext in IMAGE_TYPES or mimetype.startswith("image/"):
        return "image"
    if filetype in DATA_TYPES or ext in DATA_TYPES:
        return "code_interpreter"
    return "file_search"


class FileIntake:
    def __init__(
        self,
        *,
        store: Store,
        runtime: Runtime,
        bot_token: str,
        max_bytes: int,
        session_factory: Any = aiohttp.ClientSession,
    ) -> None:
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
        cap_mb = self._max_bytes / (1024 * 1024)
        async with self._session_factory(timeout=aiohttp.ClientTimeout(total=120)) as session:
            for slack_file in files:
                file_id = str(slack_file.get("id") or "")
                name = str(slack_file.get("name") or slack_file.get("title") or file_id or "file")
                if not file_id:
                    continue
                use = file_use(slack_file)
                known = await self._store.get_remote_file(thread.id, file_id)
                if known is not None:
                    inputs.append(InputFile(file_id=known, filename=name, use=use))
                    continue
                size = int(slack_file.get("size") or 0)
                if size > self._max_bytes:
                    notes.append(
                        TOO_BIG_NOTE.format(name=name, size_mb=size / 1048576, cap_mb=cap_mb)
                    )
                    continue
                try:
                    content = await self._download(session, slack_file)
                except FileTooLarge:
                    notes.append(
                        TOO_BIG_NOTE.format(
                            name=name, size_mb=self._max_bytes / 1048576 + 0.1, cap_mb=cap_mb
                        )
                    )
                    continue
                except NotAFile:
                    log.warning("file %s came back as HTML: files:read scope missing?", file_id)
                    notes.append(NO_SCOPE_NOTE.format(name=name))
                    continue
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    log.warning("download of %s failed: %s", file_id, type(exc).__name__)
                    notes.append(FAILED_NOTE.format(name=name))
                    continue
                try:
                    remote_id = await self._runtime.upload_file(name, content)
                except RuntimeError_ as exc:
                    log.warning("upload of %s to the model failed: %s", file_id, exc)
                    notes.append(UPLOAD_FAILED_NOTE.format(name=name))
                    continue
                await self._store.remember_file(thread.id, file_id, remote_id)
                inputs.append(InputFile(file_id=remote_id, filename=name, use=use))
        return inputs, notes

    async def _download(self, session: aiohttp.ClientSession, slack_file: dict[str, Any]) -> bytes:
        url = slack_file.get("url_private_download") or slack_file.get("url_private")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise ValueError("no download URL")
        headers = {"Authorization": f"Bearer {self._token}"}
        async with session.get(url, headers=headers) as resp:
            resp.raise_for_status()
            content_type = resp.headers.get("Content-Type", "").lower()
            expected_html = str(slack_file.get("filetype") or "").lower() in ("html", "htm")
            if content_type.startswith("text/html") and not expected_html:
                raise NotAFile(url)
            chunks: list[bytes] = []
            total = 0
            async for chunk in resp.content.iter_chunked(64 * 1024):
                total += len(chunk)
                if total > self._max_bytes:
                    raise FileTooLarge(url)
                chunks.append(chunk)
        return b"".join(chunks)
