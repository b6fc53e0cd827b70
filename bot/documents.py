"""Text from shared files, read by the bot itself for model servers without a file store.

A plain chat server (vLLM, Ollama, llama.cpp, LiteLLM) cannot take an uploaded file, so the
``chat`` runtime hands the model the file's text instead, with its name: text from PDFs
(pypdf, pure Python) and from text-like files (notes, CSV, JSON, code), capped so that one
file cannot fill the model's context. Anything else (images, office documents, archives)
becomes a short note that the file cannot be read here, so the model can say so instead of
guessing at its contents.

Extraction is CPU work (a large PDF takes seconds): ``read_document`` runs it in a thread,
off the event loop.
"""

from __future__ import annotations

import asyncio
import codecs
import io
import logging
import re
from dataclasses import dataclass

from pypdf import PdfReader

log = logging.getLogger(__name__)

MAX_DOCUMENT_CHARS = 20_000

TEXT_EXTENSIONS = frozenset(
    "txt text md markdown rst tex csv tsv json jsonl ndjson xml yaml yml toml ini cfg conf "
    "log html htm py ipynb r jl m sql js mjs ts tsx jsx java kt scala c h cc cpp hpp cs go rs "
    "rb php pl lua sh bash zsh swift hs ml css scss".split()
)
TEXT_MIMETYPES = frozenset(
    {"application/json", "application/xml", "application/x-yaml", "application/x-tex"}
)
IMAGE_EXTENSIONS = frozenset("png jpg jpeg gif webp bmp tif tiff heic heif svg".split())
_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")
_SNIFF_BYTES = 4096
_BLANK_RUNS = re.compile(r"\n{3,}")

PDF_NOTE_PASSWORD = "it is protected with a password"
PDF_NOTE_DAMAGED = "it could not be read as a PDF (it may be damaged)"
PDF_NOTE_NO_TEXT = "it has no text to read (it may be scanned pages)"
IMAGE_NOTE = "images cannot be read here"
BINARY_NOTE = "this kind of file cannot be read here; PDFs and text files can"


@dataclass(frozen=True, slots=True)
class DocumentText:
    """What the model gets of one file: its text, or a note saying why there is none."""

    name: str
    text: str | None  # None: nothing could be read (see ``note``)
    note: str | None = None  # why there is no text, or what was left out
    cut: bool = False  # the text stops at the cap

    def for_model(self) -> str:
        """The file as a block of the user's message, its name and limits stated."""
        name = _quoted(self.name)
        if self.text is None:
            return f"[The student shared the file {name}, but {self.note}.]"
        about = f" ({self.note})" if self.note else ""
        return f"--- begin file {name}{about} ---\n{self.text}\n--- end file {name} ---"


async def read_document(
    name: str,
    content: bytes,
    *,
    mimetype: str | None = None,
    max_chars: int = MAX_DOCUMENT_CHARS,
) -> DocumentText:
    """``extract_text`` in a worker thread: PDF parsing must not hold up the event loop."""
    return await asyncio.to_thread(
        extract_text, name, content, mimetype=mimetype, max_chars=max_chars
    )


def extract_text(
    name: str,
    content: bytes,
    *,
    mimetype: str | None = None,
    max_chars: int = MAX_DOCUMENT_CHARS,
) -> DocumentText:
    """The readable text of a file, at most ``max_chars`` characters of it."""
    kind = file_kind(name, content, mimetype)
    if kind == "pdf":
        return _pdf_text(name, content, max_chars)
    if kind == "text":
        return _capped(name, decode_text(content), max_chars)
    return DocumentText(name, None, IMAGE_NOTE if kind == "image" else BINARY_NOTE)


def file_kind(name: str, content: bytes, mimetype: str | None = None) -> str:
    """``"pdf"``, ``"text"``, ``"image"`` or ``"binary"``, from the bytes first, then the
    name and type (a ``.txt`` that is really a PDF is read as a PDF)."""
    ext = name.lower().rsplit(".", 1)[-1] if "." in name else ""
    mime = (mimetype or "").lower().split(";")[0].strip()
    head = content[:_SNIFF_BYTES]
    if b"%PDF-" in head[:1024]:
        return "pdf"
    if head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return "image"
    if ext == "pdf" or mime == "application/pdf":
        return "pdf"
    if ext in IMAGE_EXTENSIONS or mime.startswith("image/"):
        return "image"
    if ext in TEXT_EXTENSIONS or mime.startswith("text/") or mime in TEXT_MIMETYPES:
        return "text"
    return "text" if _looks_like_text(head) else "binary"


def decode_text(content: bytes) -> str:
    """Bytes to text: UTF-8 (or UTF-16 with a byte order mark), bad bytes replaced."""
    if content.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text = content.decode("utf-16", errors="replace")
    else:
        text = content.decode("utf-8-sig", errors="replace")
    return text.replace("\r\n", "\n").replace("\x00", "")


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head and not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return False
    try:
        # final=False: the sample may end in the middle of a character.
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return True


def _capped(name: str, text: str, max_chars: int) -> DocumentText:
    if len(text) <= max_chars:
        return DocumentText(name, text)
    note = f"only the first {max_chars:,} of its {len(text):,} characters are included"
    return DocumentText(name, text[:max_chars], note, cut=True)


def _pdf_text(name: str, content: bytes, max_chars: int) -> DocumentText:
    number = 0
    try:
        reader = PdfReader(io.BytesIO(content))
        if reader.is_encrypted and not reader.decrypt(""):
            return DocumentText(name, None, PDF_NOTE_PASSWORD)
        pages = reader.pages
        total = len(pages)
        texts: list[str] = []
        length = 0
        for number, page in enumerate(pages, start=1):
            page_text = _BLANK_RUNS.sub("\n\n", page.extract_text() or "").strip()
            if page_text:
                texts.append(f"[page {number}]\n{page_text}" if total > 1 else page_text)
                length += len(texts[-1]) + 2
            if length > max_chars:
                break
    except Exception as e:  # pypdf raises many kinds on damaged files; all mean "unreadable"
        log.info("could not read PDF %r: %s", name, e)
        return DocumentText(name, None, PDF_NOTE_DAMAGED)
    text = "\n\n".join(texts)
    if not text.strip():
        return DocumentText(name, None, PDF_NOTE_NO_TEXT)
    if len(text) <= max_chars:
        return DocumentText(name, text)
    note = (
        f"only the first {max_chars:,} characters are included, from page 1 to {number} of {total}"
    )
    return DocumentText(name, text[:max_chars], note, cut=True)


def _quoted(name: str) -> str:
    clean = " ".join(name.split()).replace('"', "'") or "unnamed"
    return f'"{clean}"'
