"""Table tests: a finished Responses API response -> the runtime-neutral RunResult."""

from __future__ import annotations

import base64
from types import SimpleNamespace as NS

import pytest

from bot.runtime._responses_items import result_from_response
from bot.runtime.base import RunStatus

PNG = b"\x89PNG\r\n\x1a\n123"
DATA_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()


def response(*output, status="completed", error=None, incomplete=None):
    return NS(
        id="resp_1", status=status, output=list(output), error=error, incomplete_details=incomplete
    )


def text(value, *annotations):
    return NS(
        type="message", content=[NS(type="output_text", text=value, annotations=list(annotations))]
    )


def code(source, *outputs):
    return NS(type="code_interpreter_call", code=source, outputs=list(outputs))


CITED_PLOT = NS(
    type="container_file_citation",
    file_id="cfile_1",
    filename="plot.png",
    container_id="cntr_1",
    start_index=0,
    end_index=0,
)


@pytest.mark.parametrize(
    ("resp", "status", "files"),
    [
        (response(text("hi")), RunStatus.COMPLETED, []),
        (
            response(NS(type="function_call", call_id="c1", name="display_quiz", arguments="{}")),
            RunStatus.REQUIRES_ACTION,
            [],
        ),
        (
            response(status="failed", error=NS(code="server_error", message="x")),
            RunStatus.FAILED,
            [],
        ),
        (
            response(status="incomplete", incomplete=NS(reason="max_output_tokens")),
            RunStatus.INCOMPLETE,
            [],
        ),
        (response(status="cancelled"), RunStatus.CANCELLED, []),
        # An image output with only a data: URL is shared from its bytes…
        (
            response(code("plot()", NS(type="image", url=DATA_URL)), text("done")),
            RunStatus.COMPLETED,
            ["plot-1.png"],
        ),
        # …unless the answer cites the plot as a container file (shared once, not twice).
        (
            response(code("plot()", NS(type="image", url=DATA_URL)), text("done", CITED_PLOT)),
            RunStatus.COMPLETED,
            ["plot.png"],
        ),
        (
            response(code("x", NS(type="image", url="data:image/png;base64,!!notbase64"))),
            RunStatus.COMPLETED,
            [],
        ),
    ],
)
def test_result_from_response(resp, status, files):
    result = result_from_response(resp)
    assert result.status is status
    assert [f.filename for f in result.files] == files
    for f in result.files:
        if f.filename.startswith("plot-"):
            assert f.content == PNG


def test_citations_become_markers_at_their_index():
    citation = NS(type="file_citation", file_id="file_1", filename="paper.pdf", index=5)
    result = result_from_response(response(text("Primes are neat.", citation)))
    [message] = result.messages
    [cited] = message.citations
    assert message.text.startswith("Prime") and message.text[5:].startswith(cited.marker)
    assert cited.filename == "paper.pdf"
