"""Is this HTTP request from Slack? The one signature check of every ``/slack/events`` request.

slack_sdk's ``SignatureVerifier`` does the HMAC; its ``int(timestamp)`` raises on a header
like ``abc``, ``1e309`` or an empty one, and ``hmac.compare_digest`` raises on a non-ASCII
signature. Anyone who can reach the URL controls these headers, so they are screened here
first: a bad header is a bad signature (401), never an exception (500).
"""

from __future__ import annotations

from collections.abc import Mapping

from slack_sdk.signature import SignatureVerifier

# Seconds since the epoch: ten digits until the year 2286; more is not a timestamp.
_MAX_TIMESTAMP_DIGITS = 12


def is_signed_by_slack(verifier: SignatureVerifier, body: str, headers: Mapping[str, str]) -> bool:
    """Whether ``body`` carries a valid, fresh (5 min) Slack signature in ``headers``."""
    normalized = {key.lower(): value for key, value in headers.items()}
    timestamp = normalized.get("x-slack-request-timestamp") or ""
    signature = normalized.get("x-slack-signature") or ""
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > _MAX_TIMESTAMP_DIGITS:
        return False
    if not signature.isascii() or not signature.startswith("v0="):
        return False
    return verifier.is_valid(body=body, timestamp=timestamp, signature=signature)
