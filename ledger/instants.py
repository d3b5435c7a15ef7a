"""Instants a person types (``--as-of``, ``?as_of=``): RFC 3339 with an offset, or ``now``."""

from __future__ import annotations

from datetime import UTC, datetime

from ledger.errors import ConfigError


def parse_instant(text: str | None, flag: str = "--as-of") -> datetime:
    """``text`` as an aware datetime (None or ``now``: now); ``ConfigError`` naming ``flag``
    when it is not RFC 3339 or has no offset."""
    if text is None or text == "now":
        return datetime.now(UTC)
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"{flag} {text!r} is not an RFC 3339 timestamp (e.g. 2026-06-30T23:59:59Z)"
        ) from None
    if instant.tzinfo is None:
        example = text if "T" in text else f"{text}T00:00:00"
        raise ConfigError(f"{flag} {text!r} needs a UTC offset, e.g. {example}Z or {example}+02:00")
    return instant
