"""How the CLI talks to people (rich tables, progress on a terminal) and to machines (JSON/CSV)."""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

# Piped output is read by people too (CI logs, `| less`): don't squeeze tables into 80 columns.
# Data printed here comes from publishers: never read it as console markup or emoji codes.
out = Console(
    highlight=False,
    markup=False,
    emoji=False,
    soft_wrap=True,
    width=None if sys.stdout.isatty() else 160,
)
err = Console(stderr=True, highlight=False, markup=False, emoji=False, soft_wrap=True)

MAX_LISTED_REJECTS = 200


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def emit_rows(rows: Sequence[dict[str, Any]], fmt: Format, title: str | None = None) -> None:
    """Print rows as a table for people, or as a JSON array / CSV for machines (stdout only)."""
    if fmt is Format.json:
        sys.stdout.write(json.dumps(list(rows), default=str) + "\n")
        return
    if fmt is Format.csv:
        buffer = io.StringIO()
        if rows:
            writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        sys.stdout.write(buffer.getvalue())
        return
    table = Table(title=Text(title) if title else None, show_lines=False)
    columns = list(rows[0]) if rows else []
    for column in columns:
        numeric = rows and isinstance(rows[0][column], int | float)
        table.add_column(Text(column), justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*(Text(_cell(row[c])) for c in columns))
    out.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 1 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


class Ticker:
    """Progress of long work: a live status line on a terminal, a log line every 10 s otherwise."""

    LOG_EVERY_S = 10.0

    def __init__(self, label: str) -> None:
        self.label = label
        self.live = err.is_terminal
        self._last = time.monotonic()
        self._status: Any = None

    def update(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if self.live:
            if force or now - self._last > 0.25:
                self._last = now
                if self._status is not None:
                    self._status.update(f"{self.label}: {text}")
        elif force or now - self._last >= self.LOG_EVERY_S:
            self._last = now
            err.print(f"{self.label}: {text}", markup=False)

    @contextmanager
    def running(self) -> Iterator[Ticker]:
        if not self.live:
            yield self
            return
        with err.status(self.label) as status:
            self._status = status
            yield self


def report_rejects(messages: Sequence[str]) -> None:
    for message in messages[:MAX_LISTED_REJECTS]:
        err.print(message, markup=False)
    if len(messages) > MAX_LISTED_REJECTS:
        err.print(f"… and {len(messages) - MAX_LISTED_REJECTS:,} more rejected", markup=False)
