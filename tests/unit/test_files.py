"""Table tests for the pure parts of bot/files.py."""

from __future__ import annotations

import pytest

from bot.files import may_send_token

SLACK_API = "https://slack.com/api/"
FAKE_API = "http://127.0.0.1:8123/api/"


@pytest.mark.parametrize(
    ("url", "api_url", "allowed"),
    [
        ("https://files.slack.com/files-pri/T1-F1/download/a.pdf", SLACK_API, True),
        ("https://FILES.SLACK.COM/files-pri/T1-F1/a.pdf", SLACK_API, True),
        ("https://files.slack.com:443/files-pri/T1-F1/a.pdf", SLACK_API, True),
        ("https://files.slack-gov.com/files-pri/T1-F1/a.pdf", SLACK_API, True),
        ("https://slack.com/files-pri/T1-F1/a.pdf", SLACK_API, True),  # the API's own origin
        # Plain HTTP, another port, look-alike hosts, credentials: never.
        ("http://files.slack.com/files-pri/T1-F1/a.pdf", SLACK_API, False),
        ("https://files.slack.com:8443/files-pri/T1-F1/a.pdf", SLACK_API, False),
        ("https://files.slack.com.evil.example/a.pdf", SLACK_API, False),
        ("https://evilfiles.slack.com.example/a.pdf", SLACK_API, False),
        ("https://files.slack.com@evil.example/a.pdf", SLACK_API, False),
        ("https://user:pw@files.slack.com/a.pdf", SLACK_API, False),
        ("https://evil.example/?u=https://files.slack.com/a.pdf", SLACK_API, False),
        ("https://team.slack.com/files/U1/F1/a.pdf", SLACK_API, False),
        ("https://evil.example\\@files.slack.com/a.pdf", SLACK_API, False),
        ("ftp://files.slack.com/a.pdf", SLACK_API, False),
        ("/files-pri/T1-F1/a.pdf", SLACK_API, False),
        ("", SLACK_API, False),
        # An overridden API base (a fake in tests): its exact origin only.
        ("http://127.0.0.1:8123/files-pri/T1-F1/a.pdf", FAKE_API, True),
        ("http://127.0.0.1:8124/files-pri/T1-F1/a.pdf", FAKE_API, False),
        ("https://127.0.0.1:8123/files-pri/T1-F1/a.pdf", FAKE_API, False),
        ("http://localhost:8123/files-pri/T1-F1/a.pdf", FAKE_API, False),
        ("https://files.slack.com/files-pri/T1-F1/a.pdf", FAKE_API, True),
        ("http://127.0.0.1:8123/files-pri/T1-F1/a.pdf", SLACK_API, False),
    ],
)
def test_the_token_goes_only_to_slack(url: str, api_url: str, allowed: bool) -> None:
    assert may_send_token(url, api_url) is allowed
