"""Instants and durations a person types (``--as-of``, ``?as_of=``, ``--horizon``): RFC 3339 with
an offset, or ``now``; ``48h``-style durations."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

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


_DURATION = re.compile(r"(\d{1,6})([mhd])")
_UNIT = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}


def parse_duration(text: str, flag: str) -> timedelta:
    """``90m``, ``48h`` or ``7d`` as a positive timedelta; ``ConfigError`` naming ``flag``."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or int(match[1]) == 0:
        raise ConfigError(
            f"{flag} {text!r} is not a duration: a positive whole number with m, h or d "
            "(e.g. 90m, 48h, 7d)"
        )
    return int(match[1]) * _UNIT[match[2]]


def format_duration(value: timedelta) -> str:
    """The shortest of ``parse_duration``'s spellings for ``value`` (a whole number of minutes)."""
    minutes = int(value.total_seconds() // 60)
    for unit, size in (("d", 1440), ("h", 60)):
        if minutes % size == 0:
            return f"{minutes // size}{unit}"
    return f"{minutes}m"


SEVERITIES = range(1, 6)


def parse_severity_targets(text: str, flag: str) -> dict[int, timedelta]:
    """``5:4h,4:8h,3:24h,2:48h,1:72h`` → {severity: target}, every severity 1–5 given once."""
    targets: dict[int, timedelta] = {}
    for part in text.split(","):
        severity, colon, duration = part.strip().partition(":")
        if not colon or severity.strip() not in {str(s) for s in SEVERITIES}:
            raise ConfigError(
                f"{flag} {part.strip()!r}: expected SEVERITY:DURATION with a severity 1–5, "
                "e.g. 5:4h"
            )
        if int(severity) in targets:
            raise ConfigError(f"{flag}: severity {int(severity)} is given twice")
        targets[int(severity)] = parse_duration(duration, f"{flag} severity {int(severity)}")
    missing = [str(s) for s in SEVERITIES if s not in targets]
    if missing:
        raise ConfigError(f"{flag}: no target for severity {', '.join(missing)}")
    return targets


_FIRST = datetime.min.replace(tzinfo=UTC)
_LAST = datetime.max.replace(tzinfo=UTC)


def shifted(instant: datetime, delta: timedelta) -> datetime:
    """``instant + delta``, held at the first or last instant Python can represent (an as-of
    near year 1 or 9999 plus a horizon is still an answer, not an overflow)."""
    try:
        return instant + delta
    except OverflowError:
        return _LAST if delta > timedelta(0) else _FIRST
