"""Reading shared files in the bot: PDFs and text files become text, the rest a note."""

from __future__ import annotations

import asyncio
import codecs
import io
import threading

import pytest
from pypdf import PdfReader, PdfWriter

from bot import documents
from bot.documents import (
    BINARY_NOTE,
    IMAGE_NOTE,
    PDF_NOTE_DAMAGED,
    PDF_NOTE_NO_TEXT,
    PDF_NOTE_PASSWORD,
    DocumentText,
    extract_text,
    file_kind,
    read_document,
)


def make_pdf(*pages: str) -> bytes:
    """A small valid PDF, one page per string (lines split on newlines), in Helvetica."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"",  # the page tree, filled in below
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    kids = []
    for text in pages:
        lines = [
            "(" + line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ") Tj T*"
            for line in text.split("\n")
        ]
        stream = ("BT /F1 12 Tf 72 720 Td 14 TL\n" + "\n".join(lines) + "\nET").encode("latin-1")
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
        content_ref = len(objects)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % content_ref
        )
        kids.append(b"%d 0 R" % len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), len(kids))
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def encrypted(pdf: bytes, user_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    writer.encrypt(user_password, "owner-secret")
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


ONE_PAGE = make_pdf("Fractions (part 1)\nA half is 1/2.")
TWO_PAGES = make_pdf("Page one text", "Page two text")
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def test_the_hand_made_pdf_is_a_real_pdf():
    reader = PdfReader(io.BytesIO(TWO_PAGES), strict=True)
    assert len(reader.pages) == 2


@pytest.mark.parametrize(
    ("name", "content", "text", "note"),
    [
        ("notes.pdf", ONE_PAGE, "Fractions (part 1)\nA half is 1/2.", None),
        (
            "two.pdf",
            TWO_PAGES,
            "[page 1]\nPage one text\n\n[page 2]\nPage two text",
            None,
        ),
        ("renamed.txt", ONE_PAGE, "Fractions (part 1)\nA half is 1/2.", None),
        ("blank.pdf", make_pdf(""), None, PDF_NOTE_NO_TEXT),
        ("locked.pdf", encrypted(ONE_PAGE, "secret"), None, PDF_NOTE_PASSWORD),
        (
            "owner-only.pdf",
            encrypted(ONE_PAGE, ""),
            "Fractions (part 1)\nA half is 1/2.",
            None,
        ),
        ("broken.pdf", ONE_PAGE[:120], None, PDF_NOTE_DAMAGED),
        ("junk.pdf", b"%PDF-1.7\nnot really a pdf at all", None, PDF_NOTE_DAMAGED),
        ("notes.md", b"# Title\r\n\r\n* a point\r\n", "# Title\n\n* a point\n", None),
        ("data.csv", b"x,y\n1,2\n", "x,y\n1,2\n", None),
        ("solve.py", b"print(1/2)\n", "print(1/2)\n", None),
        ("bom.txt", codecs.BOM_UTF8 + "caf\u00e9".encode(), "caf\u00e9", None),
        ("utf16.txt", "r\u00e9sum\u00e9".encode("utf-16"), "r\u00e9sum\u00e9", None),
        ("latin1.txt", "caf\u00e9".encode("latin-1"), "caf\ufffd", None),
        ("README", b"plain text without an extension\n", "plain text without an extension\n", None),
        ("photo.png", PNG, None, IMAGE_NOTE),
        ("photo.txt", PNG, None, IMAGE_NOTE),
        ("scan.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 32, None, IMAGE_NOTE),
        ("sheet.xlsx", b"PK\x03\x04" + b"\x00\x01\x02" * 30, None, BINARY_NOTE),
        ("blob", bytes(range(256)), None, BINARY_NOTE),
        ("empty.txt", b"", "", None),
    ],
)
def test_what_is_read_of_each_kind_of_file(name, content, text, note):
    doc = extract_text(name, content)
    assert doc == DocumentText(name, text, note)


@pytest.mark.parametrize(
    ("name", "mimetype", "kind"),
    [
        ("x", "application/pdf", "pdf"),
        ("x", "image/heic", "image"),
        ("x", "text/plain; charset=utf-8", "text"),
        ("x", "application/json", "text"),
        ("x.docx", None, "binary"),
        ("x.svg", None, "image"),
        ("x.TXT", None, "text"),
    ],
)
def test_kind_from_name_and_type(name, mimetype, kind):
    content = b"\x00\x01binary" if kind == "binary" else b"\x00"
    assert file_kind(name, content, mimetype) == kind


def test_long_text_is_cut_and_says_so():
    doc = extract_text("long.txt", b"a" * 25_000)
    assert doc.text == "a" * 20_000 and doc.cut
    assert doc.note == "only the first 20,000 of its 25,000 characters are included"


def test_long_pdf_stops_reading_at_the_cap():
    pages = [f"Page {n} " + "word " * 60 for n in range(1, 41)]
    doc = extract_text("book.pdf", make_pdf(*pages), max_chars=1000)
    assert doc.cut and len(doc.text) == 1000
    assert doc.text.startswith("[page 1]\nPage 1 word")
    assert doc.note.startswith("only the first 1,000 characters are included, from page 1 to ")
    assert doc.note.endswith(" of 40")


def test_a_text_file_with_multibyte_characters_at_the_sniff_boundary_is_text():
    content = b"a" * 4095 + "\u00e9".encode() + b" more"
    assert file_kind("noext", content) == "text"


@pytest.mark.parametrize(
    ("doc", "block"),
    [
        (
            DocumentText("notes.md", "# Title"),
            '--- begin file "notes.md" ---\n# Title\n--- end file "notes.md" ---',
        ),
        (
            DocumentText("long.txt", "aaa", "only the first 3 of its 9 characters are included"),
            '--- begin file "long.txt" (only the first 3 of its 9 characters are included) ---'
            '\naaa\n--- end file "long.txt" ---',
        ),
        (
            DocumentText("cat.png", None, IMAGE_NOTE),
            '[The student shared the file "cat.png", but images cannot be read here.]',
        ),
        (
            DocumentText('my "best"\nfile.txt', "x"),
            "--- begin file \"my 'best' file.txt\" ---\nx\n--- end file \"my 'best' file.txt\" ---",
        ),
    ],
)
def test_for_model(doc, block):
    assert doc.for_model() == block


async def test_reading_runs_off_the_event_loop(monkeypatch):
    seen = []
    real = documents.extract_text

    def spy(*args, **kwargs):
        seen.append(threading.current_thread() is threading.main_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(documents, "extract_text", spy)
    doc, _ = await asyncio.gather(read_document("notes.pdf", ONE_PAGE), asyncio.sleep(0))
    assert doc.text == "Fractions (part 1)\nA half is 1/2."
    assert seen == [False]
