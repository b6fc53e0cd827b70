"""Table tests for the pure parts of bot/replies.py."""

from __future__ import annotations

import pytest

from bot.replies import retry_after_seconds


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "30"}, 30.0),  # slack_sdk's own handler would wait 3 s here
        ({"retry-after": ["7"]}, 7.0),
        ({"Retry-After": " 2 "}, 2.0),
        ({"Retry-After": "soon"}, 1.0),
        ({"Retry-After": "100000"}, 120.0),
        ({}, 1.0),
    ],
)
def test_retry_after_is_read_whole(headers, seconds):
    assert retry_after_seconds(headers) == seconds
