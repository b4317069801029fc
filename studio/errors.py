"""Errors worded for users, which every layer may raise and every caller (UI, API, CLI) shows as they are.

Owns: `StudioError` (bad input or a refused operation), `quote`, the only way a message or a log line
shows a value that came from outside (at most QUOTE_CHARS of it, so a 10 MB value never comes back), and
`reason`, a failure's words for a person. Configuration problems are `ConfigError` (studio.config) and
backend failures `BackendError` (studio.backends); both are ValueErrors too.
Ignores: how a caller displays the message.
"""

from __future__ import annotations


class StudioError(ValueError):
    """Bad input or a refused operation, worded for the user."""


# How much of a value from outside an error message or a log line may show.
QUOTE_CHARS = 200


def quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """`repr(value)` cut to about `limit` characters, saying how long the whole was when cut. A huge value
    is cut before repr runs, so quoting it costs no more than quoting a short one."""
    if isinstance(value, (str, bytes)) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value)} characters)"
    if isinstance(value, (list, tuple, dict, set)) and len(value) > 20:
        return f"a {type(value).__name__} of {len(value)} items"
    text = repr(value)
    if len(text) > limit:
        return f"{text[:limit]}... ({len(text)} characters)"
    return text


def reason(exc: BaseException) -> str:
    """A failure's reason for a person, never empty (an OSError's own words, else the exception's type),
    cut to QUOTE_CHARS."""
    # An OSError's strerror, without the errno and the full path str() adds.
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS] + "..."
