"""The trust gap by any mix of team, channel, kind, due month and customer, as of any instant."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb

from ledger.errors import ConfigError
from projections.promise_fold import classify_sql, fold_sql

DIMENSIONS = {
    "made_by": "made_by",
    "channel": "channel",
    "kind": "kind",
    "due_month": "strftime(due_month, '%Y-%m')",
    "customer": "customer_id",
}
MEASURES = ("made", "due", "kept_on_time", "kept_late", "broken", "overdue", "pending")


def parse_dimensions(by: str | None) -> list[str]:
    if not by:
        return []
    dims = [d.strip() for d in by.split(",") if d.strip()]
    unknown = [d for d in dims if d not in DIMENSIONS]
    if unknown:
        raise ConfigError(
            f"--by {', '.join(unknown)}: not a dimension; choose from {', '.join(DIMENSIONS)}"
        )
    return list(dict.fromkeys(dims))


def promise_rows_sql(con: duckdb.DuckDBPyConnection, as_of: datetime) -> str:
    """Folded promise rows as of ``$as_of``: the stored fold when nothing projected is later."""
    latest = con.execute("SELECT max(occurred_at) FROM promise_events").fetchone()
    if latest is None or latest[0] is None or latest[0] <= as_of:
        return "SELECT * FROM promises"
    return fold_sql("SELECT * FROM promise_events WHERE occurred_at <= $as_of")


def classified_promises_sql(con: duckdb.DuckDBPyConnection, as_of: datetime) -> str:
    return classify_sql(promise_rows_sql(con, as_of))


def trust_gap(
    con: duckdb.DuckDBPyConnection, as_of: datetime, by: list[str]
) -> list[dict[str, Any]]:
    """Rows of group keys plus weighted made/due/kept/broken/overdue/pending sums and the gap.

    With no dimensions, exactly one row. ``trust_gap`` is ``None`` where nothing is due.
    """
    keys = ", ".join(f"{DIMENSIONS[d]} AS {d}" for d in by)
    sums = ", ".join(f"round(coalesce(sum({m}_w), 0), 9) AS {m}" for m in MEASURES)
    sql = (
        f"SELECT {keys + ', ' if keys else ''}{sums}, "
        "CASE WHEN coalesce(sum(due_w), 0) = 0 THEN NULL "
        "ELSE round(1 - sum(kept_on_time_w) / sum(due_w), 9) END AS trust_gap "
        f"FROM ({classified_promises_sql(con, as_of)}) c"
    )
    if by:
        sql += f" GROUP BY {', '.join(DIMENSIONS[d] for d in by)} ORDER BY {', '.join(by)}"
    cursor = con.execute(sql, {"as_of": as_of})
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
